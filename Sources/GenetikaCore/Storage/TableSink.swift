import Foundation

/// Where the DB stage writes rows: the source tables plus the consumed offsets, both in one
/// transaction per batch, which is what makes each event land exactly once.
public protocol TableSink: AnyObject {
    /// Creates the tables (from the configuration) and the offsets table if missing.
    func prepare() throws
    /// The next offset to read for each partition that has one stored for `group`.
    func storedOffsets(group: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64]
    /// Upserts `rows` (by key) and stores `offsets` for `group`, atomically.
    func write(_ rows: [SinkRow], offsets: [TopicPartition: Int64], group: String) throws
    func close()
}

/// A typed row for the table of `sources[source]`.
public struct SinkRow: Sendable, Equatable {
    public var source: Int
    public var values: [FieldValue]

    public init(source: Int, values: [FieldValue]) {
        self.source = source
        self.values = values
    }
}

/// Opens the sink that a database URL names.
public enum TableSinks {
    public static func open(url: String, configuration: GenetikaConfiguration) throws -> TableSink {
        if url.hasPrefix("sqlite://") {
            let path = configuration.resolve(String(url.dropFirst("sqlite://".count)))
            return try SQLiteTableSink(path: path, sources: configuration.sources)
        }
        return try PostgresTableSink(url: url, sources: configuration.sources)
    }
}

/// SQLite tables: one per source, `id` (the key column) as primary key, columns typed from
/// the configuration (booleans as 0/1, dates and datetimes as ISO-8601 text).
public final class SQLiteTableSink: TableSink {
    let connection: SQLiteConnection
    let sources: [SourceConfiguration]
    private let upserts: [String]

    public init(path: String, sources: [SourceConfiguration]) throws {
        connection = try SQLiteConnection(path: path)
        self.sources = sources
        upserts = sources.map { source in
            let names = source.columns.map { quoteIdentifier($0.name) }
            let updates = source.columns.filter { $0.name != source.key }
                .map { "\(quoteIdentifier($0.name)) = excluded.\(quoteIdentifier($0.name))" }
            let conflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + updates.joined(separator: ", ")
            return "INSERT INTO \(quoteIdentifier(source.table)) (\(names.joined(separator: ", "))) VALUES (\(Array(repeating: "?", count: names.count).joined(separator: ", "))) ON CONFLICT(\(quoteIdentifier(source.key))) \(conflict)"
        }
    }

    public func prepare() throws {
        try connection.transaction {
            for source in sources {
                let columns = source.columns.map { column -> String in
                    let type: String = switch column.type {
                    case .integer, .boolean: "INTEGER"
                    case .real: "REAL"
                    case .text, .date, .datetime: "TEXT"
                    }
                    var definition = "\(quoteIdentifier(column.name)) \(type)"
                    if column.name == source.key { definition += " PRIMARY KEY NOT NULL" } else if !column.nullable { definition += " NOT NULL" }
                    return definition
                }
                try connection.execute("CREATE TABLE IF NOT EXISTS \(quoteIdentifier(source.table)) (\(columns.joined(separator: ", ")))")
            }
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS genetika_offsets (
                    consumer_group TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    next_offset INTEGER NOT NULL, PRIMARY KEY (consumer_group, topic, partition))
                """)
        }
    }

    public func storedOffsets(group: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for partition in partitions {
            let rows = try connection.query(
                "SELECT next_offset FROM genetika_offsets WHERE consumer_group = ? AND topic = ? AND partition = ?",
                [.text(group), .text(partition.topic), .integer(Int64(partition.partition))])
            if case .integer(let offset)? = rows.first?.first { result[partition] = offset }
        }
        return result
    }

    public func write(_ rows: [SinkRow], offsets: [TopicPartition: Int64], group: String) throws {
        try connection.transaction {
            for row in rows {
                try connection.run(upserts[row.source], row.values.map(\.sql))
            }
            for (partition, offset) in offsets {
                try connection.run("""
                    INSERT INTO genetika_offsets (consumer_group, topic, partition, next_offset) VALUES (?, ?, ?, ?)
                    ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset
                    """, [.text(group), .text(partition.topic), .integer(Int64(partition.partition)), .integer(offset)])
            }
        }
    }

    public func close() {
        connection.close()
    }
}

/// `"name"` with embedded quotes doubled (names are validated identifiers anyway).
func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
