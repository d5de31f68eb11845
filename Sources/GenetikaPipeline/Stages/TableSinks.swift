import GenetikaStorage

/// Opens the sink that a database URL names.
public enum TableSinks {
    /// The file a `sqlite://` URL names (nil for other databases).
    public static func sqlitePath(url: String, configuration: GenetikaConfiguration) -> String? {
        url.hasPrefix("sqlite://") ? configuration.resolve(String(url.dropFirst("sqlite://".count))) : nil
    }

    public static func open(url: String, configuration: GenetikaConfiguration) throws -> TableSink {
        if let path = sqlitePath(url: url, configuration: configuration) {
            return try SQLiteTableSink(path: path, tables: configuration.sources.map(\.schema))
        }
        return try PostgresTableSink(url: url, tables: configuration.sources.map(\.schema))
    }
}

extension SourceConfiguration {
    /// The table this source's events are written to.
    public var schema: TableSchema {
        TableSchema(table: table, columns: columns.map { TableSchema.Column(name: $0.name, type: $0.type, nullable: $0.nullable) },
                    key: key)
    }
}
