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
    // Prepared on the first write (the tables exist by then).
    private var upsertStatements: [SQLiteStatement] = []
    private var offsetStatement: SQLiteStatement?

    public init(path: String, sources: [SourceConfiguration]) throws {
        connection = try SQLiteConnection(path: path)
        self.sources = sources
        upserts = sources.map { $0.upsertSQL(values: "(" + Array(repeating: "?", count: $0.columns.count).joined(separator: ", ") + ")") }
    }

    public func prepare() throws {
        try connection.transaction {
            for source in sources {
                try connection.execute(source.createTableSQL { type in
                    switch type {
                    case .integer, .boolean: "INTEGER"
                    case .real: "REAL"
                    case .text, .date, .datetime: "TEXT"
                    }
                })
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
        if upsertStatements.isEmpty {
            upsertStatements = try upserts.map(connection.prepare)
            offsetStatement = try connection.prepare("""
                INSERT INTO genetika_offsets (consumer_group, topic, partition, next_offset) VALUES (?, ?, ?, ?)
                ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset
                """)
        }
        try connection.transaction {
            for row in rows {
                let statement = upsertStatements[row.source]
                for (index, value) in row.values.enumerated() {
                    let position = Int32(index + 1)
                    switch value {
                    case .null: statement.bindNull(position)
                    case .integer(let v): statement.bind(position, v)
                    case .real(let v): statement.bind(position, v)
                    case .text(let v), .temporal(let v): statement.bind(position, v)
                    case .boolean(let v): statement.bind(position, Int64(v ? 1 : 0))
                    }
                }
                try statement.run()
            }
            if let offsetStatement {
                for (partition, offset) in offsets {
                    offsetStatement.bind(1, group)
                    offsetStatement.bind(2, partition.topic)
                    offsetStatement.bind(3, Int64(partition.partition))
                    offsetStatement.bind(4, offset)
                    try offsetStatement.run()
                }
            }
        }
    }

    public func close() {
        connection.close()
    }
}

extension SourceConfiguration {
    /// `CREATE TABLE IF NOT EXISTS` for this source's table: each column with the SQL type
    /// `sqlType` gives it, the key column as primary key, non-nullable columns `NOT NULL`.
    func createTableSQL(_ sqlType: (ColumnType) -> String) -> String {
        let columns = columns.map { column -> String in
            var definition = "\(quoteIdentifier(column.name)) \(sqlType(column.type))"
            if column.name == key { definition += " PRIMARY KEY NOT NULL" } else if !column.nullable { definition += " NOT NULL" }
            return definition
        }
        return "CREATE TABLE IF NOT EXISTS \(quoteIdentifier(table)) (\(columns.joined(separator: ", ")))"
    }

    /// `INSERT … VALUES <values> ON CONFLICT (key) DO UPDATE SET …`: upsert by id, the row
    /// taking the latest event's values.
    func upsertSQL(values: String) -> String {
        let names = columns.map { quoteIdentifier($0.name) }
        let updates = columns.filter { $0.name != key }.map { "\(quoteIdentifier($0.name)) = excluded.\(quoteIdentifier($0.name))" }
        let conflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + updates.joined(separator: ", ")
        return "INSERT INTO \(quoteIdentifier(table)) (\(names.joined(separator: ", "))) VALUES \(values) ON CONFLICT (\(quoteIdentifier(key))) \(conflict)"
    }
}

/// `"name"` with embedded quotes doubled (names are validated identifiers anyway).
func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
