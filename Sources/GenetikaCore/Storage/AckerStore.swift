/// What the acker knows about one id: which source topics it has reached, when, and
/// whether its ack went out.
public struct AckerEntry: Sendable, Equatable {
    public var id: String
    public var partition: Int32
    /// Bit i set: the id reached `sources[i].topic`.
    public var seen: Int64
    /// Kafka timestamp (ms) of the id's event on each source topic (nil until it arrives).
    public var timestamps: [Int64?]
    public var acked: Bool
}

/// The acker's persistent state (SQLite in the state directory): one row per id, tagged with
/// its partition, the consumed offset of every source partition, and how far the acker has
/// read back its own `ack` partitions. Batches commit as one transaction.
public final class AckerStore {
    let connection: SQLiteConnection
    let topicCount: Int

    public init(path: String, topicCount: Int) throws {
        connection = try SQLiteConnection(path: path)
        self.topicCount = topicCount
        let timestampColumns = (0..<topicCount).map { ", t\($0) INTEGER" }.joined()
        try connection.transaction {
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS acker_ids (
                    id TEXT PRIMARY KEY NOT NULL, partition INTEGER NOT NULL, seen INTEGER NOT NULL,
                    acked INTEGER NOT NULL DEFAULT 0\(timestampColumns));
                CREATE INDEX IF NOT EXISTS acker_ids_partition ON acker_ids (partition);
                CREATE TABLE IF NOT EXISTS acker_offsets (
                    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                    PRIMARY KEY (topic, partition));
                """)
        }
    }

    public func close() { connection.close() }

    public func transaction<T>(_ body: () throws -> T) throws -> T { try connection.transaction(body) }

    public func entry(_ id: String) throws -> AckerEntry? {
        let columns = (0..<topicCount).map { ", t\($0)" }.joined()
        guard let row = try connection.query("SELECT partition, seen, acked\(columns) FROM acker_ids WHERE id = ?", [.text(id)]).first else {
            return nil
        }
        guard case .integer(let partition) = row[0], case .integer(let seen) = row[1], case .integer(let acked) = row[2] else {
            return nil
        }
        let timestamps: [Int64?] = row[3...].map { if case .integer(let v) = $0 { v } else { nil } }
        return AckerEntry(id: id, partition: Int32(partition), seen: seen, timestamps: timestamps, acked: acked != 0)
    }

    public func save(_ entry: AckerEntry) throws {
        let columns = (0..<topicCount).map { ", t\($0)" }.joined()
        let placeholders = String(repeating: ", ?", count: topicCount)
        let updates = (0..<topicCount).map { ", t\($0) = excluded.t\($0)" }.joined()
        var values: [SQLValue] = [.text(entry.id), .integer(Int64(entry.partition)), .integer(entry.seen), .integer(entry.acked ? 1 : 0)]
        values += entry.timestamps.map { $0.map(SQLValue.integer) ?? .null }
        try connection.run("""
            INSERT INTO acker_ids (id, partition, seen, acked\(columns)) VALUES (?, ?, ?, ?\(placeholders))
            ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, seen = excluded.seen, acked = excluded.acked\(updates)
            """, values)
    }

    /// Marks an id acked (found in the ack topic), creating its row if needed.
    public func markAcked(_ id: String, partition: Int32) throws {
        try connection.run("""
            INSERT INTO acker_ids (id, partition, seen, acked) VALUES (?, ?, 0, 1)
            ON CONFLICT (id) DO UPDATE SET acked = 1
            """, [.text(id), .integer(Int64(partition))])
    }

    public func offsets(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for partition in partitions {
            let rows = try connection.query("SELECT next_offset FROM acker_offsets WHERE topic = ? AND partition = ?",
                                            [.text(partition.topic), .integer(Int64(partition.partition))])
            if case .integer(let offset)? = rows.first?.first { result[partition] = offset }
        }
        return result
    }

    public func setOffsets(_ offsets: [TopicPartition: Int64]) throws {
        for (partition, offset) in offsets {
            try connection.run("""
                INSERT INTO acker_offsets (topic, partition, next_offset) VALUES (?, ?, ?)
                ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset
                """, [.text(partition.topic), .integer(Int64(partition.partition)), .integer(offset)])
        }
    }

    /// Ids acked so far (for tests and reports).
    public func ackedCount() throws -> Int {
        if case .integer(let n)? = try connection.query("SELECT count(*) FROM acker_ids WHERE acked = 1").first?.first { return Int(n) }
        return 0
    }
}
