import GenetikaSupport
/// PostgreSQL tables: the same scheme as SQLite — a batch's rows and its offsets in one
/// transaction — with native column types. A batch's rows reach each table by `COPY` straight
/// into it while none of their ids is stored, and otherwise by `COPY` into a temporary staging
/// table and one `INSERT … SELECT … ON CONFLICT (id) DO UPDATE` from it (`DirectCopy`;
/// docs/architecture.md, "Databases", says why and what else was measured).
/// Several Genetika processes may share one database: offsets are per consumer group and
/// partition, and a partition has one owner at a time.
package final class PostgresTableSink: TableSink {
    /// How a batch's rows reach their tables. All three leave the same tables; `copy` is the
    /// one Genetika runs, the others stay to measure it against (`GENETIKA_PG_WRITE_PATH`) and
    /// to test it against.
    package enum WritePath: String, Sendable, CaseIterable {
        /// `COPY` (text format) straight into the table, or, once an id of the batch is stored,
        /// into a staging table and then one `INSERT … SELECT … ON CONFLICT` (`DirectCopy`).
        case copy
        /// Always the staging table and the upsert (`copy` before it tried the direct `COPY`).
        case staged
        /// Multi-row `INSERT … VALUES (…), (…) … ON CONFLICT` with text parameters.
        case insert
        /// One `INSERT … ON CONFLICT` per row, in the batch's order: the plain semantics.
        case rowAtATime = "row"

        /// The path `name` names (`copy` when nil or empty); throws for any other name.
        package static func named(_ name: String?) throws -> WritePath {
            guard let name, !name.isEmpty else { return .copy }
            guard let path = WritePath(rawValue: name) else {
                throw PostgresError(message: "expected one of \(allCases.map(\.rawValue).joined(separator: ", "))", context: "write path \(name)")
            }
            return path
        }
    }

    let connection: PostgresConnection
    let sources: [TableSchema]
    let owners: PartitionOwners
    let writePath: WritePath
    /// Each source's key column (its index in the row's values).
    private let keyIndexes: [Int]
    /// Each source's `COPY` (straight in, or into its staging table and upsert from it).
    private var copies: [DirectCopy]
    /// Batches written by `COPY` straight into their table, and through the staging table.
    package var directBatches: Int { copies.reduce(0) { $0 + $1.directBatches } }
    package var stagedBatches: Int { copies.reduce(0) { $0 + $1.stagedBatches } }
    /// Whether this session has its staging tables yet (temporary: one set per connection).
    private var staged = false
    /// PostgreSQL allows 65,535 parameters per statement.
    static let maxParameters = 65_000

    package init(url: String, tables sources: [TableSchema], writePath: WritePath = .copy) throws {
        connection = try PostgresConnection(url: url)
        owners = PartitionOwners(connection: connection)
        self.sources = sources
        self.writePath = writePath
        keyIndexes = sources.map { source in source.columns.firstIndex { $0.name == source.key } ?? 0 }
        copies = sources.indices.map { index in
            let source = sources[index]
            let names = source.columns.map { quoteIdentifier($0.name) }.joined(separator: ", ")
            let staging = "pg_temp." + Self.stagingTable(index)
            return DirectCopy(directSQL: "COPY \(quoteIdentifier(source.table)) (\(names)) FROM STDIN",
                              stagedSQL: "COPY \(staging) (\(names)) FROM STDIN",
                              upsertSQL: source.upsertSQL(from: "SELECT \(names) FROM \(staging)"))
        }
    }

    /// The staging table of source `index`: the source's columns and types, no constraints
    /// (the target table checks them), emptied at each commit.
    static func stagingTable(_ index: Int) -> String {
        quoteIdentifier("genetika_stage_\(index)")
    }

    static func sqlType(_ type: ColumnType) -> String {
        switch type {
        case .integer: "BIGINT"
        case .real: "DOUBLE PRECISION"
        case .text: "TEXT"
        case .boolean: "BOOLEAN"
        case .date: "DATE"
        case .datetime: "TIMESTAMP"
        }
    }

    /// How `information_schema.columns.data_type` names each type.
    static func dataType(_ type: ColumnType) -> String {
        switch type {
        case .integer: "bigint"
        case .real: "double precision"
        case .text: "text"
        case .boolean: "boolean"
        case .date: "date"
        case .datetime: "timestamp without time zone"
        }
    }

    /// The columns of `table` (in the current schema) and its primary key's column, if one.
    func describe(_ table: String) throws -> (columns: [ExistingColumn], key: String?) {
        let columns = try connection.query("""
            SELECT column_name, data_type, is_nullable FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position
            """, [table]).compactMap { row -> ExistingColumn? in
            guard let name = row[0], let type = row[1] else { return nil }
            return ExistingColumn(name: name, type: type, notNull: row[2] == "NO")
        }
        guard !columns.isEmpty else { return ([], nil) }
        let keys = try connection.query("""
            SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisprimary
            """, [table]).compactMap { $0[0] }
        return (columns, keys.count == 1 ? keys[0] : nil)
    }

    @discardableResult
    package func prepare() throws -> [SchemaChange] {
        // Concurrent starters: serialize schema creation on an advisory lock.
        return try connection.transaction {
            try connection.lockSchema()
            let plan = try SchemaPlan(sources: sources, database: connection.displayURL, comparedAs: Self.dataType) {
                try describe($0.table)
            }
            let changes = try plan.apply(sqlType: Self.sqlType) { try connection.execute($0) }
            for source in sources {
                try connection.execute(source.createTableSQL(keyConstraint: "PRIMARY KEY NOT NULL", Self.sqlType))
            }
            try connection.createSharedTables()
            return changes
        }
    }

    package func claim(group: String, member: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        try owners.claim(group: group, member: member, partitions: partitions).epochs
    }

    package func topicIds(group: String) throws -> [String: String] {
        var ids: [String: String] = [:]
        for row in try connection.query("SELECT topic, topic_id FROM genetika_topic_ids WHERE consumer_group = $1", [group]) {
            if let topic = row[0], let id = row[1] { ids[topic] = id }
        }
        return ids
    }

    package func recordTopicIds(_ ids: [String: String], resetting reset: [String], group: String) throws {
        try connection.transaction {
            for topic in reset {
                _ = try connection.query("DELETE FROM genetika_offsets WHERE consumer_group = $1 AND topic = $2", [group, topic])
            }
            for (topic, id) in ids {
                _ = try connection.query("""
                    INSERT INTO genetika_topic_ids (consumer_group, topic, topic_id) VALUES ($1, $2, $3)
                    ON CONFLICT (consumer_group, topic) DO UPDATE SET topic_id = excluded.topic_id
                    """, [group, topic, id])
            }
        }
    }

    package func forgetOffsets(group: String, partitions: [TopicPartition]) throws {
        try connection.transaction {
            for partition in partitions {
                _ = try connection.query("DELETE FROM genetika_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
                                         [group, partition.topic, String(partition.partition)])
            }
        }
    }

    package func storedOffsets(group: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        try connection.storedOffsets(group: group, partitions: partitions)
    }

    package func write(_ rows: [SinkRow], offsets: [TopicPartition: Int64], group: String, fence: [TopicPartition: Int64]) throws {
        if (writePath == .copy || writePath == .staged) && !staged {
            // Outside the batch's transaction: a rolled-back CREATE would take the tables with it.
            for (index, source) in sources.enumerated() {
                let columns = source.columns.map { "\(quoteIdentifier($0.name)) \(Self.sqlType($0.type))" }
                try connection.execute("CREATE TEMPORARY TABLE IF NOT EXISTS \(Self.stagingTable(index)) (\(columns.joined(separator: ", "))) ON COMMIT DELETE ROWS")
            }
            staged = true
        }
        try connection.transaction {
            // First, and locked until the commit: a claim by another member waits for this batch.
            let fenced = try owners.fenced(group: group, epochs: fence)
            if !fenced.isEmpty { throw FencedPartitions(partitions: fenced) }
            switch writePath {
            case .copy: try copyRows(rows, direct: true)
            case .staged: try copyRows(rows, direct: false)
            case .insert: try insertRows(rows)
            case .rowAtATime:
                for row in rows {
                    let source = sources[row.source]
                    let values = "(" + (1...source.columns.count).map { "$\($0)" }.joined(separator: ", ") + ")"
                    try connection.query(source.upsertSQL(from: "VALUES " + values), row.values.map(\.postgresText))
                }
            }
            if !offsets.isEmpty {
                let sorted = offsets.sorted { $0.key < $1.key }
                let values = sorted.indices.map { i in "($1, $\(i * 3 + 2), $\(i * 3 + 3)::INTEGER, $\(i * 3 + 4)::BIGINT)" }
                try connection.query("""
                    INSERT INTO genetika_offsets (consumer_group, topic, partition, next_offset) VALUES \(values.joined(separator: ", "))
                    ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
                    """, [group] + sorted.flatMap { [$0.key.topic, String($0.key.partition), String($0.value)] })
            }
        }
    }

    /// Each source's rows, its latest event per id (one statement may not touch a row twice),
    /// in first-seen order.
    private func latestPerId(_ rows: [SinkRow], source index: Int) -> [[FieldValue]] {
        let keyIndex = keyIndexes[index]
        var latest: [FieldValue: Int] = [:]
        var unique: [[FieldValue]] = []
        for row in rows where row.source == index {
            if let at = latest[row.values[keyIndex]] {
                unique[at] = row.values
            } else {
                latest[row.values[keyIndex]] = unique.count
                unique.append(row.values)
            }
        }
        return unique
    }

    private func copyRows(_ rows: [SinkRow], direct: Bool) throws {
        for index in sources.indices {
            let unique = latestPerId(rows, source: index)
            guard !unique.isEmpty else { continue }
            var data: [UInt8] = []
            data.reserveCapacity(unique.count * sources[index].columns.count * 12)
            for values in unique {
                for (column, value) in values.enumerated() {
                    if column > 0 { data.append(0x09) }
                    value.appendCopyText(to: &data)
                }
                data.append(0x0A)
            }
            if direct {
                try copies[index].write(data, on: connection)
            } else {
                try copies[index].writeStaged(data, on: connection)
            }
        }
    }

    private func insertRows(_ rows: [SinkRow]) throws {
        for (index, source) in sources.enumerated() {
            let unique = latestPerId(rows, source: index)
            for chunk in unique.chunks(of: max(1, Self.maxParameters / source.columns.count)) {
                try connection.query(upsert(source, rows: chunk.count), chunk.flatMap { $0.map(\.postgresText) })
            }
        }
    }

    private func upsert(_ source: TableSchema, rows: Int) -> String {
        let width = source.columns.count
        let tuples = (0..<rows).map { row in "(" + (1...width).map { "$\(row * width + $0)" }.joined(separator: ", ") + ")" }
        return source.upsertSQL(from: "VALUES " + tuples.joined(separator: ", "))
    }

    package func close() {
        connection.close()
    }
}

extension FieldValue {
    /// The value as PostgreSQL text input (nil for NULL); the column type gives it meaning.
    var postgresText: String? {
        switch self {
        case .null: nil
        case .integer(let v): String(v)
        case .real(let v): v.description
        case .text(let v), .temporal(let v): v
        case .boolean(let v): v ? "true" : "false"
        }
    }
}

extension FieldValue {
    /// Appends the value in `COPY`'s text format: `\N` for NULL, and in text a backslash, tab,
    /// newline and carriage return escaped (the format's delimiters); everything else verbatim
    /// UTF-8.
    func appendCopyText(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: [0x5C, 0x4E])
        case .integer(let v): out.append(contentsOf: String(v).utf8)
        case .real(let v): out.append(contentsOf: v.description.utf8)
        case .boolean(let v): out.append(v ? 0x74 : 0x66)
        case .text(let v), .temporal(let v):
            for byte in v.utf8 {
                switch byte {
                case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
                case 0x09: out.append(contentsOf: [0x5C, 0x74])
                case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
                case 0x0D: out.append(contentsOf: [0x5C, 0x72])
                default: out.append(byte)
                }
            }
        }
    }
}
