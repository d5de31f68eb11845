import GenetikaSupport
/// PostgreSQL tables: the same scheme as SQLite — a batch's rows (multi-row `INSERT … ON
/// CONFLICT (id) DO UPDATE`) and its offsets in one transaction — with native column types.
/// Several Genetika processes may share one database: offsets are per consumer group and
/// partition, and a partition has one owner at a time.
public final class PostgresTableSink: TableSink {
    let connection: PostgresConnection
    let sources: [TableSchema]
    let owners: PartitionOwners
    /// PostgreSQL allows 65,535 parameters per statement.
    static let maxParameters = 65_000

    public init(url: String, tables sources: [TableSchema]) throws {
        connection = try PostgresConnection(url: url)
        owners = PartitionOwners(connection: connection)
        self.sources = sources
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
    public func prepare() throws -> [SchemaChange] {
        // Concurrent starters: serialize schema creation on an advisory lock.
        return try connection.transaction {
            try connection.execute("SELECT pg_advisory_xact_lock(7411)")
            var additions: [(TableSchema, [TableSchema.Column])] = []
            var refused: [ColumnDifference] = []
            for source in sources {
                let (existing, key) = try describe(source.table)
                guard !existing.isEmpty else { continue }
                let (added, differences) = source.evolution(existing: existing, key: key, sqlType: Self.dataType)
                refused += differences
                if !added.isEmpty { additions.append((source, added)) }
            }
            if !refused.isEmpty { throw SchemaMismatch(database: connection.displayURL, differences: refused) }
            var changes: [SchemaChange] = []
            for (source, added) in additions {
                for column in added {
                    try connection.execute("ALTER TABLE \(quoteIdentifier(source.table)) ADD COLUMN \(quoteIdentifier(column.name)) \(Self.sqlType(column.type))")
                    changes.append(SchemaChange(table: source.table, column: column.name, type: Self.sqlType(column.type)))
                }
            }
            for source in sources {
                try connection.execute(source.createTableSQL(keyConstraint: "PRIMARY KEY NOT NULL", Self.sqlType))
            }
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS genetika_offsets (
                    consumer_group TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    next_offset BIGINT NOT NULL, PRIMARY KEY (consumer_group, topic, partition))
                """)
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS genetika_topic_ids (
                    consumer_group TEXT NOT NULL, topic TEXT NOT NULL, topic_id TEXT NOT NULL,
                    PRIMARY KEY (consumer_group, topic))
                """)
            try connection.execute(PartitionOwners.createSQL)
            return changes
        }
    }

    public func claim(group: String, member: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        try owners.claim(group: group, member: member, partitions: partitions).epochs
    }

    public func topicIds(group: String) throws -> [String: String] {
        var ids: [String: String] = [:]
        for row in try connection.query("SELECT topic, topic_id FROM genetika_topic_ids WHERE consumer_group = $1", [group]) {
            if let topic = row[0], let id = row[1] { ids[topic] = id }
        }
        return ids
    }

    public func recordTopicIds(_ ids: [String: String], resetting reset: [String], group: String) throws {
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

    public func forgetOffsets(group: String, partitions: [TopicPartition]) throws {
        try connection.transaction {
            for partition in partitions {
                _ = try connection.query("DELETE FROM genetika_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
                                         [group, partition.topic, String(partition.partition)])
            }
        }
    }

    public func storedOffsets(group: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        let wanted = Set(partitions)
        var result: [TopicPartition: Int64] = [:]
        for row in try connection.query("SELECT topic, partition, next_offset FROM genetika_offsets WHERE consumer_group = $1", [group]) {
            guard let topic = row[0], let partition = row[1].flatMap({ Int32($0) }), let offset = row[2].flatMap({ Int64($0) }) else { continue }
            let key = TopicPartition(topic, partition)
            if wanted.contains(key) { result[key] = offset }
        }
        return result
    }

    public func write(_ rows: [SinkRow], offsets: [TopicPartition: Int64], group: String, fence: [TopicPartition: Int64]) throws {
        try connection.transaction {
            // First, and locked until the commit: a claim by another member waits for this batch.
            let fenced = try owners.fenced(group: group, epochs: fence)
            if !fenced.isEmpty { throw FencedPartitions(partitions: fenced) }
            for (index, source) in sources.enumerated() {
                // One statement may not touch an id twice: keep each id's latest event.
                let keyIndex = source.columns.firstIndex { $0.name == source.key } ?? 0
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
                let perStatement = max(1, Self.maxParameters / source.columns.count)
                var start = 0
                while start < unique.count {
                    let chunk = unique[start..<min(start + perStatement, unique.count)]
                    try connection.query(upsert(source, rows: chunk.count), chunk.flatMap { $0.map(\.postgresText) })
                    start += chunk.count
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

    private func upsert(_ source: TableSchema, rows: Int) -> String {
        let width = source.columns.count
        let tuples = (0..<rows).map { row in "(" + (1...width).map { "$\(row * width + $0)" }.joined(separator: ", ") + ")" }
        return source.upsertSQL(values: tuples.joined(separator: ", "))
    }

    public func close() {
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
