import Foundation
import GenetikaStorage

/// Opens the sink that a database URL names.
enum TableSinks {
    /// The file a `sqlite://` URL names (nil for other databases).
    static func sqlitePath(url: String, configuration: GenetikaConfiguration) -> String? {
        url.hasPrefix("sqlite://") ? configuration.resolve(String(url.dropFirst("sqlite://".count))) : nil
    }

    static func open(url: String, configuration: GenetikaConfiguration) throws -> TableSink {
        if let path = sqlitePath(url: url, configuration: configuration) {
            return try SQLiteTableSink(path: path, tables: configuration.sources.map(\.schema))
        }
        // A measurement knob, not configuration: `make bench` times the write paths against
        // each other with it (docs/benchmarks.md). Unknown values are refused, not ignored.
        let path = try PostgresTableSink.WritePath.named(ProcessInfo.processInfo.environment["GENETIKA_PG_WRITE_PATH"])
        return try PostgresTableSink(url: url, tables: configuration.sources.map(\.schema), writePath: path)
    }
}

extension SourceConfiguration {
    /// The table this source's events are written to.
    var schema: TableSchema {
        TableSchema(table: table, columns: columns.map { TableSchema.Column(name: $0.name, type: $0.type, nullable: $0.nullable) },
                    key: key)
    }
}
