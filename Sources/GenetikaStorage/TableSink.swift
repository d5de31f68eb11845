import Foundation
import CSQLite
import GenetikaSupport

/// Where the DB stage writes rows: the source tables plus the consumed offsets, both in one
/// transaction per batch, which is what makes each event land exactly once.
package protocol TableSink: AnyObject {
    /// Creates the tables and the offsets table if missing, and adds configured columns a table
    /// lacks (nullable); returns what it added. Throws `SchemaMismatch`, changing nothing, when a
    /// table differs otherwise (a type, the key, NOT NULL).
    @discardableResult
    func prepare() throws -> [SchemaChange]
    /// The next offset to read for each partition that has one stored for `group`.
    func storedOffsets(group: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64]
    /// The topic ids `group`'s stored offsets belong to (by topic).
    func topicIds(group: String) throws -> [String: String]
    /// Records `ids` as the topics' ids for `group`, and forgets `group`'s stored offsets
    /// of the topics in `reset` (recreated: their offsets point into a log that is gone).
    func recordTopicIds(_ ids: [String: String], resetting reset: [String], group: String) throws
    /// Forgets `group`'s stored offsets of `partitions`.
    func forgetOffsets(group: String, partitions: [TopicPartition]) throws
    /// Claims `partitions` for `member` (a shared database: fencing tokens, see
    /// `PartitionOwners`); returns each one's epoch, to hand to `write`. A database only one
    /// process can open (SQLite) needs no fencing and returns none.
    func claim(group: String, member: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64]
    /// Upserts `rows` (by key) and stores `offsets` for `group`, atomically; with `fence`
    /// (the epochs `claim` gave), throws `FencedPartitions` and writes nothing when another
    /// member claimed one of them since.
    func write(_ rows: [SinkRow], offsets: [TopicPartition: Int64], group: String, fence: [TopicPartition: Int64]) throws
    func close()
}

extension TableSink {
    /// Unfenced (one writer).
    package func write(_ rows: [SinkRow], offsets: [TopicPartition: Int64], group: String) throws {
        try write(rows, offsets: offsets, group: group, fence: [:])
    }
}

/// A typed row for the table `tables[source]`.
package struct SinkRow: Sendable, Equatable {
    package var source: Int
    package var values: [FieldValue]

    package init(source: Int, values: [FieldValue]) {
        self.source = source
        self.values = values
    }
}

/// A table the DB stage writes: its name, typed columns and key column (the primary key).
package struct TableSchema: Sendable, Equatable {
    package struct Column: Sendable, Equatable {
        package var name: String
        package var type: ColumnType
        package var nullable: Bool

        package init(name: String, type: ColumnType, nullable: Bool) {
            self.name = name
            self.type = type
            self.nullable = nullable
        }
    }

    package var table: String
    package var columns: [Column]
    package var key: String

    package init(table: String, columns: [Column], key: String) {
        self.table = table
        self.columns = columns
        self.key = key
    }
}

/// SQLite tables: one per source, `id` (the key column) unique, rows in arrival order, columns typed from
/// the configuration (booleans as 0/1, dates and datetimes as ISO-8601 text).
package final class SQLiteTableSink: TableSink {
    let connection: SQLiteConnection
    let sources: [TableSchema]
    /// Each source's upsert and the offsets upsert, prepared by `prepare()` once the tables exist.
    private var statements: (upserts: [SQLiteStatement], offsets: SQLiteStatement)?

    /// Each source's key column (its index in the row's values).
    private let keyIndexes: [Int]

    /// The page size of a database the sink creates. A batch upserts rows at random ids, so
    /// once a key index outgrows what one batch covers, each commit writes about as many index
    /// pages as the batch has rows in that table, and SQLite writes each page of the WAL with two
    /// system calls (frame header, page). 16 KiB pages hold four times the keys, so a batch
    /// dirties a quarter of the pages (the measurement: docs/benchmarks.md, "Tuning
    /// decisions"). Databases created with another page size keep it.
    package static let pageSize = 16_384
    /// Bytes of WAL after which SQLite checkpoints (`PRAGMA wal_autocheckpoint`, set in pages).
    static let checkpointBytes = 64 << 20

    package init(path: String, tables sources: [TableSchema]) throws {
        connection = try SQLiteConnection(path: path, pageSize: Self.pageSize)
        // Because a batch dirties key-index pages all over the indexes, with SQLite's default
        // (a checkpoint once the WAL holds 1,000 pages) nearly every batch is followed by a
        // checkpoint writing those pages into the database again. At 64 MB of WAL (on disk) a
        // checkpoint covers many batches and writes each page once, in its latest version.
        // Durability is unchanged (synchronous=FULL: each commit's WAL frames are on disk when
        // it returns).
        try connection.checkpointEvery(bytes: Self.checkpointBytes)
        self.sources = sources
        keyIndexes = sources.map { source in source.columns.firstIndex { $0.name == source.key } ?? 0 }
    }

    static func sqlType(_ type: ColumnType) -> String {
        switch type {
        case .integer, .boolean: "INTEGER"
        case .real: "REAL"
        case .text, .date, .datetime: "TEXT"
        }
    }

    /// The columns of `table` and its key column (the primary key, or a one-column unique
    /// index, the configured key preferred); no columns when the table does not exist.
    func describe(_ table: String, preferring key: String) throws -> (columns: [ExistingColumn], key: String?) {
        var columns: [ExistingColumn] = []
        var primary: String?
        try connection.forEachRow("PRAGMA table_info(\(quoteIdentifier(table)))") { row in
            let name = row.text(1)
            columns.append(ExistingColumn(name: name, type: row.text(2), notNull: row.int64(3) != 0))
            if row.int64(5) == 1 { primary = name }
        }
        if let primary { return (columns, primary) }
        var unique: [String] = []
        for index in try connection.query("PRAGMA index_list(\(quoteIdentifier(table)))") {
            guard case .text(let name) = index[1], case .integer(1) = index[2] else { continue }
            let parts = try connection.query("PRAGMA index_info(\(quoteIdentifier(name)))")
            if parts.count == 1, case .text(let column) = parts[0][2] { unique.append(column) }
        }
        return (columns, unique.first { $0.lowercased() == key.lowercased() } ?? unique.first)
    }

    @discardableResult
    package func prepare() throws -> [SchemaChange] {
        // First every table is compared with its configuration; nothing changes if one differs.
        let plan = try SchemaPlan(sources: sources, database: connection.path, comparedAs: Self.sqlType) {
            try describe($0.table, preferring: $0.key)
        }
        let changes = try connection.transaction {
            let changes = try plan.apply(sqlType: Self.sqlType) { try connection.execute($0) }
            for source in sources {
                // The key is a unique column, not the primary key: rows are stored in the order
                // they arrive (SQLite's rowid) and only the key's index takes inserts at random
                // ids. An `INTEGER PRIMARY KEY` would be the rowid itself, so every row would go
                // to a random place in the table's B-tree: once the table outgrows the page cache,
                // each batch rewrites about as many table pages as it has rows (docs/benchmarks.md,
                // "Tuning decisions"). Tables created by earlier versions keep their key as
                // primary key; the upsert works on both.
                try connection.execute(source.createTableSQL(keyConstraint: "NOT NULL UNIQUE", Self.sqlType))
            }
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS genetika_offsets (
                    consumer_group TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    next_offset INTEGER NOT NULL, PRIMARY KEY (consumer_group, topic, partition));
                CREATE TABLE IF NOT EXISTS genetika_topic_ids (
                    consumer_group TEXT NOT NULL, topic TEXT NOT NULL, topic_id TEXT NOT NULL,
                    PRIMARY KEY (consumer_group, topic));
                """)
            return changes
        }
        statements = (
            upserts: try sources.map {
                try connection.prepare($0.upsertSQL(from: "VALUES (" + Array(repeating: "?", count: $0.columns.count).joined(separator: ", ") + ")"))
            },
            offsets: try connection.prepare("""
                INSERT INTO genetika_offsets (consumer_group, topic, partition, next_offset) VALUES (?, ?, ?, ?)
                ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset
                """))
        return changes
    }

    package func storedOffsets(group: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for partition in partitions {
            let rows = try connection.query(
                "SELECT next_offset FROM genetika_offsets WHERE consumer_group = ? AND topic = ? AND partition = ?",
                [.text(group), .text(partition.topic), .integer(Int64(partition.partition))])
            if case .integer(let offset)? = rows.first?.first { result[partition] = offset }
        }
        return result
    }

    package func topicIds(group: String) throws -> [String: String] {
        var ids: [String: String] = [:]
        for row in try connection.query("SELECT topic, topic_id FROM genetika_topic_ids WHERE consumer_group = ?", [.text(group)]) {
            if case .text(let topic) = row[0], case .text(let id) = row[1] { ids[topic] = id }
        }
        return ids
    }

    package func recordTopicIds(_ ids: [String: String], resetting reset: [String], group: String) throws {
        try connection.transaction {
            for topic in reset {
                try connection.run("DELETE FROM genetika_offsets WHERE consumer_group = ? AND topic = ?", [.text(group), .text(topic)])
            }
            for (topic, id) in ids {
                try connection.run("""
                    INSERT INTO genetika_topic_ids (consumer_group, topic, topic_id) VALUES (?, ?, ?)
                    ON CONFLICT (consumer_group, topic) DO UPDATE SET topic_id = excluded.topic_id
                    """, [.text(group), .text(topic), .text(id)])
            }
        }
    }

    package func forgetOffsets(group: String, partitions: [TopicPartition]) throws {
        try connection.transaction {
            for partition in partitions {
                try connection.run("DELETE FROM genetika_offsets WHERE consumer_group = ? AND topic = ? AND partition = ?",
                                   [.text(group), .text(partition.topic), .integer(Int64(partition.partition))])
            }
        }
    }

    /// One process owns a SQLite database (`InstanceLock`): nothing to fence.
    package func claim(group: String, member: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] { [:] }

    package func write(_ rows: [SinkRow], offsets: [TopicPartition: Int64], group: String, fence: [TopicPartition: Int64]) throws {
        guard let statements else {
            throw SQLiteError(code: SQLITE_MISUSE, message: "prepare() was not called", context: "\(connection.path): write")
        }
        // In table and key order: each table's B-tree is walked once from left to right, so the
        // rows that share a page are written together and the path to it stays cached. Rows
        // with the same key keep their order (the latest event wins).
        let order = rows.indices.sorted { a, b in
            let left = rows[a], right = rows[b]
            if left.source != right.source { return left.source < right.source }
            let ordered = Self.keyOrder(left.values[keyIndexes[left.source]], right.values[keyIndexes[right.source]])
            return ordered ?? (a < b)
        }
        try connection.transaction {
            for position in order {
                let row = rows[position]
                let statement = statements.upserts[row.source]
                for (index, value) in row.values.enumerated() { try statement.bind(Int32(index + 1), value.sql) }
                try statement.run()
            }
            for (partition, offset) in offsets {
                try statements.offsets.bind(1, .text(group))
                try statements.offsets.bind(2, .text(partition.topic))
                try statements.offsets.bind(3, .integer(Int64(partition.partition)))
                try statements.offsets.bind(4, .integer(offset))
                try statements.offsets.run()
            }
        }
    }

    package func close() {
        connection.close()
    }

    /// Whether key `a` sorts before key `b`; nil when they are equal. A total order (integers,
    /// then texts, then anything else as equal), so that the sort's comparison is consistent.
    private static func keyOrder(_ a: FieldValue, _ b: FieldValue) -> Bool? {
        switch (a, b) {
        case (.integer(let x), .integer(let y)): x == y ? nil : x < y
        case (.text(let x), .text(let y)), (.temporal(let x), .temporal(let y)): x == y ? nil : x < y
        default:
            rank(a) == rank(b) ? nil : rank(a) < rank(b)
        }
    }

    private static func rank(_ value: FieldValue) -> Int {
        switch value {
        case .integer: 0
        case .text: 1
        case .temporal: 2
        default: 3
        }
    }
}

extension TableSchema {
    /// `CREATE TABLE IF NOT EXISTS` for this source's table: each column with the SQL type
    /// `sqlType` gives it, the key column with `keyConstraint` (each sink says how its key is
    /// stored), non-nullable columns `NOT NULL`.
    func createTableSQL(keyConstraint: String, _ sqlType: (ColumnType) -> String) -> String {
        let columns = columns.map { column -> String in
            var definition = "\(quoteIdentifier(column.name)) \(sqlType(column.type))"
            if column.name == key { definition += " " + keyConstraint } else if !column.nullable { definition += " NOT NULL" }
            return definition
        }
        return "CREATE TABLE IF NOT EXISTS \(quoteIdentifier(table)) (\(columns.joined(separator: ", ")))"
    }

    /// `INSERT … <rows> ON CONFLICT (key) DO UPDATE SET …`, `rows` a `VALUES` list or a
    /// `SELECT`: upsert by id, the row taking the latest event's values.
    func upsertSQL(from rows: String) -> String {
        let names = columns.map { quoteIdentifier($0.name) }
        let updates = columns.filter { $0.name != key }.map { "\(quoteIdentifier($0.name)) = excluded.\(quoteIdentifier($0.name))" }
        let conflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET " + updates.joined(separator: ", ")
        return "INSERT INTO \(quoteIdentifier(table)) (\(names.joined(separator: ", "))) \(rows) ON CONFLICT (\(quoteIdentifier(key))) \(conflict)"
    }
}

/// `"name"` with embedded quotes doubled (names are validated identifiers anyway).
func quoteIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
