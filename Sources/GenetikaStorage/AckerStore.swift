import GenetikaSupport

/// The id as an integer when the text is that integer's canonical form ("42"; not "042" or
/// "+42"): such an id can be keyed as an integer and turned back into the same text.
package func integerId(_ id: String) -> Int64? {
    guard let number = Int64(id), String(number) == id else { return nil }
    return number
}

/// What the acker knows about one id: which source topics it has reached, when, and
/// whether its ack went out.
package struct AckerEntry: Sendable, Equatable {
    package var id: String
    package var partition: Int32
    /// Bit i set: the id reached `sources[i].topic`.
    package var seen: Int64
    /// Kafka timestamp (ms) of the id's event on each source topic (nil until it arrives).
    package var timestamps: [Int64?]
    package var acked: Bool

    package init(id: String, partition: Int32, seen: Int64, timestamps: [Int64?], acked: Bool) {
        self.id = id
        self.partition = partition
        self.seen = seen
        self.timestamps = timestamps
        self.acked = acked
    }
}

/// The acker's persistent state (SQLite in the state directory), laid out for its access
/// pattern, and committed one transaction per batch:
/// - `acker_pending`, an append-only log: each batch appends the new state of the ids it
///   changed (sequential pages, however the ids are spread), an acked id included (a row with
///   `acked = 1`). The acker holds the waiting ids in memory and reads the log only when it
///   opens the store (latest row per id wins).
/// - `acker_ids`, keyed by id: the ids that are done (acked) or set aside (reported
///   incomplete, or evicted from memory). An id in `acker_ids` is described there and
///   nowhere else. The acker moves acked ids from the log into it in batches, in id order
///   (`mergeAcked`): each B-tree page is then written once per merge rather than once per id.
///   It rewrites the log, dropping superseded rows, once they outnumber the live ones three
///   times (`clearPending`, then `appendPending`).
/// - the view `acker_acked`: every acked id, wherever it is recorded (for operators and tests).
/// - the consumed offset of every source partition, and how far the acker has read back its
///   own ack and incomplete partitions.
/// An in-memory filter of the ids in `acker_ids` answers "never stored" without a read, so a
/// new id costs no random read of a table that grows with the data.
package final class AckerStore {
    let connection: SQLiteConnection
    let topicCount: Int
    private let selectEntry: SQLiteStatement
    private let upsertEntry: SQLiteStatement
    private let upsertAcked: SQLiteStatement
    private let upsertReported: SQLiteStatement
    private let selectUnacked: SQLiteStatement
    private let insertPending: SQLiteStatement
    /// Every id with a row in `acker_ids` (plus, rarely, ids whose row was rolled back or
    /// deleted): no false negatives. Built from the table on first use, so that opening the
    /// store (the start-up check) does not read every id.
    private var stored: IdFilter?
    /// Rows in `acker_pending` (as appended by this connection; recounted on open).
    package private(set) var pendingRows: Int

    /// `integerIds`: every source's key column is an integer, so ids are kept as integers
    /// (a rowid table: smaller and faster than text keys). A state file created either way
    /// works either way: SQLite converts the bound id to the column's type.
    package init(path: String, topicCount: Int, integerIds: Bool = false) throws {
        // The state and its offsets commit atomically, and the ack topic is read back on
        // assignment, so commits lost to a power failure are redone without a second ack:
        // no fsync per batch is needed.
        let connection = try SQLiteConnection(path: path, durability: .normal)
        // A batch of upserts at random ids dirties about as many pages as it has events: with
        // SQLite's default (a checkpoint once the WAL holds 1,000 pages) nearly every batch is
        // followed by a checkpoint that writes its pages into the database again, with an
        // fsync. At 16,384 pages (64 MB of WAL on disk, not in memory) a checkpoint covers many
        // batches and writes each page once, in its latest version.
        try connection.checkpointEvery(bytes: 64 << 20)
        self.connection = connection
        self.topicCount = topicCount
        let timestampColumns = (0..<topicCount).map { ", t\($0) INTEGER" }.joined()
        try connection.transaction {
            // Text ids: WITHOUT ROWID, so that the id is the only key (one B-tree per write).
            let idColumn = integerIds ? "id INTEGER PRIMARY KEY NOT NULL" : "id TEXT PRIMARY KEY NOT NULL"
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS acker_ids (
                    \(idColumn), partition INTEGER NOT NULL, seen INTEGER NOT NULL,
                    acked INTEGER NOT NULL DEFAULT 0\(timestampColumns))\(integerIds ? "" : " WITHOUT ROWID");
                CREATE TABLE IF NOT EXISTS acker_offsets (
                    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                    PRIMARY KEY (topic, partition));
                CREATE TABLE IF NOT EXISTS acker_topic_ids (topic TEXT PRIMARY KEY NOT NULL, topic_id TEXT NOT NULL);
                """)
            // `reported`: the id was reported incomplete (added in 0.5; older state files gain it).
            let columns = try connection.query("SELECT name FROM pragma_table_info('acker_ids')")
            if !columns.contains(where: { $0.first == .text("reported") }) {
                try connection.execute("ALTER TABLE acker_ids ADD COLUMN reported INTEGER NOT NULL DEFAULT 0")
            }
        }
        // The log's id column takes the affinity `acker_ids` has (a state file keeps its kind).
        let idType = try connection.query("SELECT type FROM pragma_table_info('acker_ids') WHERE name = 'id'").first?.first
        let pendingIdType = idType == .text("INTEGER") ? "INTEGER" : "TEXT"
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS acker_pending (
                seq INTEGER PRIMARY KEY, id \(pendingIdType) NOT NULL, partition INTEGER NOT NULL,
                seen INTEGER NOT NULL, acked INTEGER NOT NULL DEFAULT 0\(timestampColumns));
            CREATE VIEW IF NOT EXISTS acker_acked AS
                SELECT id, partition FROM acker_ids WHERE acked = 1
                UNION SELECT id, partition FROM acker_pending WHERE acked = 1;
            """)
        let columns = (0..<topicCount).map { ", t\($0)" }.joined()
        let placeholders = String(repeating: ", ?", count: topicCount)
        let updates = (0..<topicCount).map { ", t\($0) = excluded.t\($0)" }.joined()
        selectEntry = try connection.prepare("SELECT partition, seen, acked\(columns) FROM acker_ids WHERE id = ?")
        upsertEntry = try connection.prepare("""
            INSERT INTO acker_ids (id, partition, seen, acked\(columns)) VALUES (?, ?, ?, ?\(placeholders))
            ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, seen = excluded.seen, acked = excluded.acked\(updates)
            """)
        upsertAcked = try connection.prepare("""
            INSERT INTO acker_ids (id, partition, seen, acked) VALUES (?, ?, 0, 1)
            ON CONFLICT (id) DO UPDATE SET acked = 1
            """)
        upsertReported = try connection.prepare("""
            INSERT INTO acker_ids (id, partition, seen, acked, reported) VALUES (?, ?, 0, 0, 1)
            ON CONFLICT (id) DO UPDATE SET reported = 1
            """)
        selectUnacked = try connection.prepare("SELECT id, partition, seen, reported\(columns) FROM acker_ids WHERE acked = 0")
        insertPending = try connection.prepare("INSERT INTO acker_pending (id, partition, seen, acked\(columns)) VALUES (?, ?, ?, ?\(placeholders))")
        pendingRows = 0
        if case .integer(let rows)? = try connection.query("SELECT count(*) FROM acker_pending").first?.first { pendingRows = Int(rows) }
    }

    /// Builds the filter of stored ids again, with room for twice as many as there are.
    private func rebuildFilter() throws {
        var count = 0
        if case .integer(let rows)? = try connection.query("SELECT count(*) FROM acker_ids").first?.first { count = Int(rows) }
        var filter = IdFilter(capacity: max(1 << 16, 2 * count))
        try connection.forEachRow("SELECT id FROM acker_ids") { row in filter.insert(row.text(0)) }
        stored = filter
    }

    /// Whether `id` may have a row in `acker_ids` (false: it certainly has none).
    private func mayBeStored(_ id: String) throws -> Bool {
        if stored == nil { try rebuildFilter() }
        return stored?.mayContain(id) ?? true
    }

    /// Records that `id` now has a row (a filter not built yet will read it from the table).
    private func noteStored(_ id: String) throws {
        guard stored != nil else { return }
        stored?.insert(id)
        if stored?.isFull == true { try rebuildFilter() }
    }

    package func close() { connection.close() }

    package func transaction<T>(_ body: () throws -> T) throws -> T { try connection.transaction(body) }

    private var reading = false

    /// Starts a read transaction for a run of `entry` lookups (`endRead` ends it; safe to
    /// call twice).
    package func beginRead() throws {
        try connection.execute("BEGIN")
        reading = true
    }

    package func endRead() {
        if reading { try? connection.execute("COMMIT") }
        reading = false
    }

    /// The id's row in `acker_ids`, if it has one (ids in the pending log are the caller's).
    package func entry(_ id: String) throws -> AckerEntry? {
        guard try mayBeStored(id) else { return nil }
        try selectEntry.bind(1, .text(id))
        guard try selectEntry.next() else { return nil }
        defer { selectEntry.reset() }
        let timestamps: [Int64?] = (0..<Int32(topicCount)).map { column in
            selectEntry.isNull(3 + column) ? nil : selectEntry.int64(3 + column)
        }
        return AckerEntry(id: id, partition: Int32(truncatingIfNeeded: selectEntry.int64(0)), seen: selectEntry.int64(1),
                          timestamps: timestamps, acked: selectEntry.int64(2) != 0)
    }

    package func save(_ entry: AckerEntry) throws {
        try upsertEntry.bind(1, .text(entry.id))
        try upsertEntry.bind(2, .integer(Int64(entry.partition)))
        try upsertEntry.bind(3, .integer(entry.seen))
        try upsertEntry.bind(4, .integer(entry.acked ? 1 : 0))
        for (index, timestamp) in entry.timestamps.enumerated() {
            try upsertEntry.bind(Int32(5 + index), timestamp.map(SQLValue.integer) ?? .null)
        }
        try upsertEntry.run()
        try noteStored(entry.id)
    }

    /// Appends the state of an id without a row in `acker_ids` (waiting, or just acked) to
    /// the pending log.
    package func appendPending(_ entry: AckerEntry) throws {
        try insertPending.bind(1, .text(entry.id))
        try insertPending.bind(2, .integer(Int64(entry.partition)))
        try insertPending.bind(3, .integer(entry.seen))
        try insertPending.bind(4, .integer(entry.acked ? 1 : 0))
        for (index, timestamp) in entry.timestamps.enumerated() {
            try insertPending.bind(Int32(5 + index), timestamp.map(SQLValue.integer) ?? .null)
        }
        try insertPending.run()
        pendingRows += 1
    }

    /// Empties the pending log (inside a transaction that appends the live ids again).
    package func clearPending() throws {
        try connection.execute("DELETE FROM acker_pending")
        pendingRows = 0
    }

    /// The ids recorded in the pending log, each with its latest state (waiting or acked), in
    /// log order (an id may come more than once: the last one counts); ids with a row in
    /// `acker_ids` are left out.
    package func forEachPending(_ body: (AckerEntry) throws -> Void) throws {
        let columns = (0..<topicCount).map { ", p.t\($0)" }.joined()
        let sql = """
            SELECT p.id, p.partition, p.seen, p.acked\(columns) FROM acker_pending p
            WHERE NOT EXISTS (SELECT 1 FROM acker_ids a WHERE a.id = p.id) ORDER BY p.seq
            """
        try connection.forEachRow(sql) { row in
            let timestamps: [Int64?] = (0..<Int32(topicCount)).map { column in
                row.isNull(4 + column) ? nil : row.int64(4 + column)
            }
            try body(AckerEntry(id: row.text(0), partition: Int32(truncatingIfNeeded: row.int64(1)), seen: row.int64(2),
                                timestamps: timestamps, acked: row.int64(3) != 0))
        }
    }

    /// Marks an id acked (found in the ack topic), creating its row if needed.
    package func markAcked(_ id: String, partition: Int32) throws {
        try upsertAcked.bind(1, .text(id))
        try upsertAcked.bind(2, .integer(Int64(partition)))
        try upsertAcked.run()
        try noteStored(id)
    }

    /// Records acked ids of the pending log in `acker_ids` (inside the transaction that
    /// empties the log, or before it), in the order of the table's key: integers by value,
    /// then texts.
    package func mergeAcked(_ ids: [String: Int32]) throws {
        var numbers: [(Int64, String, Int32)] = []
        var texts: [(String, Int32)] = []
        for (id, partition) in ids {
            if let number = integerId(id) { numbers.append((number, id, partition)) } else { texts.append((id, partition)) }
        }
        numbers.sort { $0.0 < $1.0 }
        texts.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        for (_, id, partition) in numbers { try markAcked(id, partition: partition) }
        for (id, partition) in texts { try markAcked(id, partition: partition) }
    }

    /// Marks an id reported incomplete (found in the incomplete topic, or just reported),
    /// creating its row if needed. The flag survives the id's later events (`save` keeps it).
    package func markReported(_ id: String, partition: Int32) throws {
        try upsertReported.bind(1, .text(id))
        try upsertReported.bind(2, .integer(Int64(partition)))
        try upsertReported.run()
        try noteStored(id)
    }

    /// Ids of `partitions` without an ack: how many of them were reported incomplete, and
    /// those not reported yet whose earliest event is older than `cutoff` (ms since the epoch).
    /// One pass over the table: meant for a periodic check, not for every batch.
    package func incomplete(in partitions: Set<Int32>, olderThan cutoff: Int64) throws -> (reported: Int, overdue: [AckerEntry]) {
        var reported = 0
        var overdue: [AckerEntry] = []
        while try selectUnacked.next() {
            let partition = Int32(truncatingIfNeeded: selectUnacked.int64(1))
            guard partitions.contains(partition) else { continue }
            if selectUnacked.int64(3) != 0 {
                reported += 1
                continue
            }
            let seen = selectUnacked.int64(2)
            guard seen != 0 else { continue }
            let timestamps: [Int64?] = (0..<Int32(topicCount)).map { column in
                selectUnacked.isNull(4 + column) ? nil : selectUnacked.int64(4 + column)
            }
            guard let first = timestamps.compactMap({ $0 }).min(), first < cutoff else { continue }
            overdue.append(AckerEntry(id: selectUnacked.text(0), partition: partition, seen: seen, timestamps: timestamps, acked: false))
        }
        return (reported, overdue)
    }

    package func offsets(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        var result: [TopicPartition: Int64] = [:]
        for partition in partitions {
            let rows = try connection.query("SELECT next_offset FROM acker_offsets WHERE topic = ? AND partition = ?",
                                            [.text(partition.topic), .integer(Int64(partition.partition))])
            if case .integer(let offset)? = rows.first?.first { result[partition] = offset }
        }
        return result
    }

    package func setOffsets(_ offsets: [TopicPartition: Int64]) throws {
        for (partition, offset) in offsets {
            try connection.run("""
                INSERT INTO acker_offsets (topic, partition, next_offset) VALUES (?, ?, ?)
                ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset
                """, [.text(partition.topic), .integer(Int64(partition.partition)), .integer(offset)])
        }
    }

    /// The topic ids the state was built from (by topic).
    package func topicIds() throws -> [String: String] {
        var ids: [String: String] = [:]
        for row in try connection.query("SELECT topic, topic_id FROM acker_topic_ids") {
            if case .text(let topic) = row[0], case .text(let id) = row[1] { ids[topic] = id }
        }
        return ids
    }

    /// Records the topics' ids; with `forgetAll`, first drops every id and offset (the
    /// topics were recreated: the state describes logs that are gone).
    package func recordTopicIds(_ ids: [String: String], forgetAll: Bool) throws {
        try connection.transaction {
            if forgetAll {
                try connection.execute("DELETE FROM acker_ids; DELETE FROM acker_offsets; DELETE FROM acker_pending;")
                pendingRows = 0
            }
            for (topic, id) in ids {
                try connection.run("INSERT INTO acker_topic_ids (topic, topic_id) VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET topic_id = excluded.topic_id",
                                   [.text(topic), .text(id)])
            }
        }
    }

    /// Drops what is known of partition number `partition`: its ids and the offsets of every
    /// topic's partition with that number (read again from the beginning).
    package func forget(partition: Int32) throws {
        try connection.transaction {
            try connection.run("DELETE FROM acker_ids WHERE partition = ?", [.integer(Int64(partition))])
            pendingRows -= try connection.run("DELETE FROM acker_pending WHERE partition = ?", [.integer(Int64(partition))])
            try connection.run("DELETE FROM acker_offsets WHERE partition = ?", [.integer(Int64(partition))])
        }
    }
}
