import GenetikaSupport

/// The acker's state in the shared PostgreSQL, keyed by partition, for members that share the
/// work (`database.url` is PostgreSQL). A member that is given partition *p* loads the ids of
/// *p* still waiting for a topic and resumes from the offsets stored for *p*: a failover costs
/// time in proportion to the waiting ids and to what the previous owner had not committed, not
/// to the partition's history (the SQLite store is local: a member that never had *p* reads
/// *p* of every topic from the beginning).
///
/// ```sql
/// genetika_acker_journal (consumer_group, partition, entries, body BYTEA)  -- append-only
/// genetika_acker_ids (consumer_group, id, partition, seen, times BIGINT[], acked, reported, aside)
/// genetika_offsets   (consumer_group, topic, partition, next_offset)    -- the acker's group
/// genetika_topic_ids (consumer_group, topic, topic_id)
/// ```
/// Laid out like the SQLite store, for the same reason (an id changes up to once per topic, in
/// different batches): a waiting id's changes are *appended* to a journal — one row per batch
/// and partition holding all of the batch's changes there (`AckerJournal`), no key, no upsert:
/// an id's state only grows (topics seen are OR-ed, each topic's time is the latest), so its
/// entries merge in any order on load — and an id gets a row in `genetika_acker_ids` once, when
/// it is acked or set aside (`aside`: reported incomplete, or evicted from memory); there it is
/// described and its journal entries are superseded. The journal of the partitions a member
/// owns is rewritten with their live entries once it holds four times as many
/// (`clearPending`). A batch's changes are written when its transaction commits, after the
/// fencing check; lookups are batched (`prefetch` reads the `acker_ids` rows of a batch's
/// unknown ids in one query). Commits wait for the server's disk (the server's default): a
/// commit the server acknowledged survives its crash, so a partition's stored offsets never
/// move back (why not `synchronous_commit = off`: docs/architecture.md, "Databases").
package final class PostgresAckerStore: AckerStateStore {
    let connection: PostgresConnection
    let owners: PartitionOwners
    let group: String
    let topicCount: Int
    /// Rows of the batch in hand (by id), from `prefetch`.
    private var cache: [String: AckerEntry] = [:]
    /// Changes of the open transaction, by id (the last one wins), written at commit.
    private var changes: [String: (entry: AckerEntry, aside: Bool)] = [:]
    private var changeOrder: [String] = []
    private var depth = 0
    /// An acked or set-aside id's row: `COPY` straight into `genetika_acker_ids`, or through the
    /// staging table and an upsert once an id of the batch has a row there.
    private var idsCopy = DirectCopy(
        directSQL: "COPY genetika_acker_ids (consumer_group, id, partition, seen, times, acked, aside) FROM STDIN",
        stagedSQL: "COPY pg_temp.genetika_acker_stage (consumer_group, id, partition, seen, times, acked, aside) FROM STDIN",
        upsertSQL: """
            INSERT INTO genetika_acker_ids (consumer_group, id, partition, seen, times, acked, aside)
            SELECT consumer_group, id, partition, seen, times, acked, aside FROM pg_temp.genetika_acker_stage
            ON CONFLICT (consumer_group, id) DO UPDATE SET partition = EXCLUDED.partition, seen = EXCLUDED.seen,
                times = EXCLUDED.times, acked = genetika_acker_ids.acked OR EXCLUDED.acked, aside = EXCLUDED.aside
            """)
    /// Batches whose id rows went straight into `genetika_acker_ids`, and through the staging table.
    package var directBatches: Int { idsCopy.directBatches }
    package var stagedBatches: Int { idsCopy.stagedBatches }
    /// Journal entries of each partition this member loaded (owns), counted on load and on append.
    private var logRows: [Int32: Int] = [:]
    /// Rows this member wrote to `genetika_acker_ids` since it last analyzed it, and since it
    /// last asked whether its statistics are stale (`keepStatisticsFresh`).
    private var writtenSinceAnalyze = 0
    private var writtenSinceCheck = 0
    package var pendingRows: Int { logRows.values.reduce(0, +) }
    package var shared: Bool { true }

    package init(url: String, group: String, topicCount: Int) throws {
        connection = try PostgresConnection(url: url)
        owners = PartitionOwners(connection: connection)
        self.group = group
        self.topicCount = topicCount
        try connection.transaction {
            try connection.lockSchema()
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS genetika_acker_ids (
                    consumer_group TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, partition INTEGER NOT NULL,
                    seen BIGINT NOT NULL, times BIGINT[] NOT NULL, acked BOOLEAN NOT NULL, reported BOOLEAN NOT NULL DEFAULT false,
                    aside BOOLEAN NOT NULL DEFAULT false, PRIMARY KEY (consumer_group, id))
                """)
            try connection.execute("""
                CREATE INDEX IF NOT EXISTS genetika_acker_waiting ON genetika_acker_ids (consumer_group, partition) WHERE NOT acked
                """)
            // One row per batch and partition (`AckerJournal`); the value stored out of line and
            // uncompressed (EXTERNAL): the server neither compresses nor decompresses it.
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS genetika_acker_journal (
                    consumer_group TEXT COLLATE "C" NOT NULL, partition INTEGER NOT NULL, entries INTEGER NOT NULL, body BYTEA NOT NULL)
                """)
            try connection.execute("ALTER TABLE genetika_acker_journal ALTER COLUMN body SET STORAGE EXTERNAL")
            try connection.execute("""
                CREATE INDEX IF NOT EXISTS genetika_acker_journal_partition ON genetika_acker_journal (consumer_group, partition)
                """)
            try connection.createSharedTables()
        }
        // This session's staging table for a batch's changes (see `flush`), emptied at each commit.
        try connection.execute("""
            CREATE TEMPORARY TABLE IF NOT EXISTS genetika_acker_stage (
                consumer_group TEXT, id TEXT, partition INTEGER, seen BIGINT, times BIGINT[], acked BOOLEAN, aside BOOLEAN)
                ON COMMIT DELETE ROWS
            """)
    }

    package func close() { connection.close() }

    package func transaction<T>(_ body: () throws -> T) throws -> T {
        if depth > 0 { return try body() }
        depth += 1
        defer { depth -= 1; changes = [:]; changeOrder = [] }
        let (value, written) = try connection.transaction {
            let value = try body()
            return (value, try flush())
        }
        // Counted once committed: a rolled-back transaction appended nothing.
        for (partition, count) in written.log where logRows[partition] != nil { logRows[partition, default: 0] += count }
        writtenSinceAnalyze += written.ids
        writtenSinceCheck += written.ids
        keepStatisticsFresh()
        return value
    }

    /// The statistics the planner judges `prefetch` by, gathered again once `genetika_acker_ids`
    /// has had more rows written since its last `ANALYZE` than it held then (10,000 at least) —
    /// counted by the server (every member's writes, flushed to its counters about once a
    /// second) or by this member, whichever is more: so about once each time the table doubles.
    /// Without it, a table that grew from empty before autovacuum's first look keeps the
    /// statistics of an empty one, the planner puts the group at 0.5 % of the rows, and the
    /// lookup of a batch's ids reads every row of the group instead of probing the key per id,
    /// a cost that grows with the table (docs/benchmarks.md, "Tuning decisions"). Asked every 10,000 rows
    /// written: one catalog read. (The journal's statistics are left to autovacuum: a
    /// partition's load reads all of that partition's rows whatever the plan.)
    private func keepStatisticsFresh() {
        guard writtenSinceCheck >= 10_000 else { return }
        writtenSinceCheck = 0
        // Failing here costs only estimates (the batch is committed): the next check asks again.
        guard let stale = try? connection.query("""
            SELECT 1 FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
            WHERE s.relid = 'genetika_acker_ids'::regclass
              AND greatest(s.n_mod_since_analyze, $1::bigint) > greatest(10000, c.reltuples)
            """, [String(writtenSinceAnalyze)]), !stale.isEmpty else { return }
        writtenSinceAnalyze = 0
        _ = try? connection.execute("ANALYZE genetika_acker_ids")
    }

    package func fence(_ epochs: [TopicPartition: Int64]) throws {
        let fenced = try owners.fenced(group: group, epochs: epochs)
        if !fenced.isEmpty { throw FencedPartitions(partitions: fenced) }
    }

    package func beginRead() throws {}

    package func endRead() { cache = [:] }

    package func prefetch(_ ids: [String]) throws {
        cache = [:]
        guard !ids.isEmpty else { return }
        for row in try connection.query("""
            SELECT id, partition, seen, times, acked FROM genetika_acker_ids
            WHERE consumer_group = $1 AND id = ANY($2::text[])
            """, [group, Self.textArray(ids)]) {
            if let entry = entry(row) { cache[entry.id] = entry }
        }
    }

    package func entry(_ id: String) throws -> AckerEntry? { cache[id] }

    private func entry(_ row: [String?]) -> AckerEntry? {
        guard let id = row[0], let partition = row[1].flatMap({ Int32($0) }), let seen = row[2].flatMap({ Int64($0) }),
              let times = row[3] else { return nil }
        var timestamps = Self.parseArray(times)
        timestamps += Array(repeating: nil, count: max(0, topicCount - timestamps.count))
        return AckerEntry(id: id, partition: partition, seen: seen, timestamps: Array(timestamps.prefix(topicCount)), acked: row[4] == "t")
    }

    private func record(_ entry: AckerEntry, aside: Bool) {
        if changes[entry.id] == nil { changeOrder.append(entry.id) }
        changes[entry.id] = (entry, aside)
    }

    package func save(_ entry: AckerEntry) throws { record(entry, aside: true) }

    package func appendPending(_ entry: AckerEntry) throws { record(entry, aside: false) }

    package func mergeAcked(_ ids: [String: Int32]) throws {}

    /// Writes the open transaction's changes: the waiting ids' to the journal (one row per
    /// partition), an acked or set-aside id's to `genetika_acker_ids` by `COPY` (straight in
    /// while none of the batch's ids has a row there, else into the session's staging table and
    /// one upsert from it: `DirectCopy`; the server parses COPY's rows far faster than a
    /// statement's parameters). Returns how many journal entries it appended, by partition, and how
    /// many id rows it wrote.
    private func flush() throws -> (log: [Int32: Int], ids: Int) {
        guard !changeOrder.isEmpty else { return ([:], 0) }
        var idRows = 0
        var ids: [UInt8] = []
        var waiting: [Int32: [AckerEntry]] = [:]
        var groupText: [UInt8] = []
        FieldValue.text(group).appendCopyText(to: &groupText)
        for id in changeOrder {
            guard let (entry, aside) = changes[id] else { continue }
            if entry.acked || aside {
                ids.append(contentsOf: groupText)
                ids.append(0x09)
                FieldValue.text(entry.id).appendCopyText(to: &ids)
                ids.append(0x09)
                ids.append(contentsOf: String(entry.partition).utf8)
                ids.append(0x09)
                ids.append(contentsOf: String(entry.seen).utf8)
                ids.append(0x09)
                ids.append(contentsOf: Self.timesArray(entry.timestamps).utf8)
                ids.append(0x09)
                ids.append(entry.acked ? 0x74 : 0x66)
                ids.append(0x09)
                ids.append(aside ? 0x74 : 0x66)
                ids.append(0x0A)
                idRows += 1
            } else {
                waiting[entry.partition, default: []].append(entry)
            }
        }
        var appended: [Int32: Int] = [:]
        for (partition, entries) in waiting {
            try appendJournal(entries, partition: partition)
            appended[partition] = entries.count
        }
        if !ids.isEmpty {
            try idsCopy.write(ids, on: connection)
        }
        return (appended, idRows)
    }

    /// Appends `entries` (all of `partition`) to the journal, in rows of at most
    /// `AckerJournal.entriesPerRow` entries.
    private func appendJournal(_ entries: [AckerEntry], partition: Int32) throws {
        for chunk in entries.chunks(of: AckerJournal.entriesPerRow) {
            try connection.query("""
                INSERT INTO genetika_acker_journal (consumer_group, partition, entries, body) VALUES ($1, $2::INTEGER, $3::INTEGER, $4::bytea)
                """, [group, String(partition), String(chunk.count), AckerJournal.hex(AckerJournal.encode(chunk, topicCount: topicCount))])
        }
    }

    /// The waiting ids of `partitions`: their journal entries merged (an id's entries in any
    /// order give its state), less the ids `genetika_acker_ids` describes as acked or set aside;
    /// plus, from a store written before the journal existed, `genetika_acker_ids`' own waiting rows.
    package func loadPending(partitions: Set<Int32>, _ body: (AckerEntry) throws -> Void) throws {
        guard !partitions.isEmpty else { return }
        let numbers = Self.intArray(partitions)
        var merged: [String: AckerEntry] = [:]
        var order: [String] = []
        func merge(_ entry: AckerEntry) {
            guard var known = merged[entry.id] else {
                merged[entry.id] = entry
                order.append(entry.id)
                return
            }
            known.seen |= entry.seen
            for index in known.timestamps.indices {
                if let time = entry.timestamps[index] { known.timestamps[index] = max(known.timestamps[index] ?? time, time) }
            }
            merged[entry.id] = known
        }
        for partition in partitions { logRows[partition] = 0 }
        for row in try connection.query("""
            SELECT partition, entries, body FROM genetika_acker_journal WHERE consumer_group = $1 AND partition = ANY($2::int[])
            """, [group, numbers]) {
            guard let partition = row[0].flatMap({ Int32($0) }), let count = row[1].flatMap({ Int($0) }), let body = row[2] else { continue }
            logRows[partition, default: 0] += count
            try AckerJournal.decode(try AckerJournal.unhex(body), partition: partition, topicCount: topicCount, merge)
        }
        // Less the ids acked or set aside since: asked of `genetika_acker_ids` for the ids the
        // journal names only (a probe each), not for the partitions' whole history.
        var done = Set<String>()
        for chunk in order.chunks(of: 10_000) {
            for row in try connection.query("""
                SELECT id FROM genetika_acker_ids WHERE consumer_group = $1 AND id = ANY($2::text[]) AND (acked OR aside)
                """, [group, Self.textArray(Array(chunk))]) {
                if let id = row[0] { done.insert(id) }
            }
        }
        if !done.isEmpty {
            for id in done { merged[id] = nil }
            order.removeAll { done.contains($0) }
        }
        for row in try connection.query("""
            SELECT id, partition, seen, times, acked FROM genetika_acker_ids
            WHERE consumer_group = $1 AND partition = ANY($2::int[]) AND NOT acked AND NOT aside
            """, [group, numbers]) {
            if let entry = entry(row) { merge(entry) }
        }
        for id in order { try body(merged[id]!) }
    }

    /// Rewrites the journal of the partitions this member owns (inside a transaction, before it
    /// appends their live entries again): their rows, and any waiting rows a store written
    /// before the journal left in `genetika_acker_ids`, are deleted.
    package func clearPending() throws {
        guard !logRows.isEmpty else { return }
        let numbers = Self.intArray(logRows.keys)
        try connection.query("DELETE FROM genetika_acker_journal WHERE consumer_group = $1 AND partition = ANY($2::int[])", [group, numbers])
        try connection.query("""
            DELETE FROM genetika_acker_ids WHERE consumer_group = $1 AND partition = ANY($2::int[]) AND NOT acked AND NOT aside
            """, [group, numbers])
        for partition in logRows.keys { logRows[partition] = 0 }
    }

    /// This member no longer owns `partitions`: their journal is no longer its to count or rewrite.
    package func release(partitions: Set<Int32>) {
        for partition in partitions { logRows[partition] = nil }
    }

    package func markAcked(_ id: String, partition: Int32) throws {
        try connection.query("""
            INSERT INTO genetika_acker_ids (consumer_group, id, partition, seen, times, acked, aside)
            VALUES ($1, $2, $3::INTEGER, 0, '{}', true, true)
            ON CONFLICT (consumer_group, id) DO UPDATE SET acked = true, aside = true
            """, [group, id, String(partition)])
    }

    package func markReported(_ id: String, partition: Int32) throws {
        try connection.query("""
            INSERT INTO genetika_acker_ids (consumer_group, id, partition, seen, times, acked, reported, aside)
            VALUES ($1, $2, $3::INTEGER, 0, '{}', false, true, true)
            ON CONFLICT (consumer_group, id) DO UPDATE SET reported = true, aside = true
            """, [group, id, String(partition)])
    }

    /// The set-aside ids of `partitions` without an ack: how many were reported, and those not
    /// reported yet whose earliest event is older than `cutoff` (the waiting ones are in memory).
    package func incomplete(in partitions: Set<Int32>, olderThan cutoff: Int64) throws -> (reported: Int, overdue: [AckerEntry]) {
        guard !partitions.isEmpty else { return (0, []) }
        var reported = 0
        var overdue: [AckerEntry] = []
        for row in try connection.query("""
            SELECT id, partition, seen, times, acked, reported FROM genetika_acker_ids
            WHERE consumer_group = $1 AND partition = ANY($2::int[]) AND NOT acked AND aside
            """, [group, Self.intArray(partitions)]) {
            if row[5] == "t" {
                reported += 1
                continue
            }
            guard let entry = entry(row), entry.seen != 0, let first = entry.timestamps.compactMap({ $0 }).min(), first < cutoff else { continue }
            overdue.append(entry)
        }
        return (reported, overdue)
    }

    package func offsets(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        try connection.storedOffsets(group: group, partitions: partitions)
    }

    package func setOffsets(_ offsets: [TopicPartition: Int64]) throws {
        guard !offsets.isEmpty else { return }
        let sorted = offsets.sorted { $0.key < $1.key }
        let values = sorted.indices.map { i in "($1, $\(i * 3 + 2), $\(i * 3 + 3)::INTEGER, $\(i * 3 + 4)::BIGINT)" }
        try connection.query("""
            INSERT INTO genetika_offsets (consumer_group, topic, partition, next_offset) VALUES \(values.joined(separator: ", "))
            ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset
            """, [group] + sorted.flatMap { [$0.key.topic, String($0.key.partition), String($0.value)] })
    }

    package func topicIds() throws -> [String: String] {
        var ids: [String: String] = [:]
        for row in try connection.query("SELECT topic, topic_id FROM genetika_topic_ids WHERE consumer_group = $1", [group]) {
            if let topic = row[0], let id = row[1] { ids[topic] = id }
        }
        return ids
    }

    package func recordTopicIds(_ ids: [String: String], forgetAll: Bool) throws {
        try connection.transaction {
            if forgetAll {
                try connection.query("DELETE FROM genetika_acker_ids WHERE consumer_group = $1", [group])
                try connection.query("DELETE FROM genetika_acker_journal WHERE consumer_group = $1", [group])
                for partition in logRows.keys { logRows[partition] = 0 }
                try connection.query("DELETE FROM genetika_offsets WHERE consumer_group = $1", [group])
            }
            for (topic, id) in ids {
                try connection.query("""
                    INSERT INTO genetika_topic_ids (consumer_group, topic, topic_id) VALUES ($1, $2, $3)
                    ON CONFLICT (consumer_group, topic) DO UPDATE SET topic_id = excluded.topic_id
                    """, [group, topic, id])
            }
        }
    }

    package func forget(partition: Int32) throws {
        try connection.transaction {
            try connection.query("DELETE FROM genetika_acker_ids WHERE consumer_group = $1 AND partition = $2::INTEGER", [group, String(partition)])
            try connection.query("DELETE FROM genetika_acker_journal WHERE consumer_group = $1 AND partition = $2::INTEGER", [group, String(partition)])
            if logRows[partition] != nil { logRows[partition] = 0 }
            try connection.query("DELETE FROM genetika_offsets WHERE consumer_group = $1 AND partition = $2::INTEGER", [group, String(partition)])
        }
    }

    // PostgreSQL array literals. Ids are quoted (any text); times are integers or NULL.
    static func textArray(_ values: [String]) -> String {
        var text = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { text += "," }
            text += "\""
            for character in value {
                if character == "\\" || character == "\"" { text += "\\" }
                text.append(character)
            }
            text += "\""
        }
        return text + "}"
    }

    static func intArray(_ values: some Sequence<Int32>) -> String {
        "{" + values.sorted().map(String.init).joined(separator: ",") + "}"
    }

    static func timesArray(_ values: [Int64?]) -> String {
        "{" + values.map { $0.map(String.init) ?? "NULL" }.joined(separator: ",") + "}"
    }

    static func parseArray(_ text: String) -> [Int64?] {
        let inner = text.dropFirst().dropLast()
        guard !inner.isEmpty else { return [] }
        return inner.split(separator: ",", omittingEmptySubsequences: false).map { Int64($0) }
    }
}

/// What the acker keeps between batches, in SQLite (`AckerStore`, local to one process) or in
/// the shared PostgreSQL (`PostgresAckerStore`, keyed by partition).
package protocol AckerStateStore: AnyObject {
    /// Whether members share the state (then a member loads a partition's waiting ids when it
    /// is assigned it, and drops them when it loses it).
    var shared: Bool { get }
    var pendingRows: Int { get }
    func close()
    func transaction<T>(_ body: () throws -> T) throws -> T
    /// Inside `transaction`: throws `FencedPartitions` when another member claimed one of
    /// `epochs`' partitions since (nothing of the transaction is then written).
    func fence(_ epochs: [TopicPartition: Int64]) throws
    func beginRead() throws
    func endRead()
    /// Reads what is stored of `ids` in one go, for the `entry` lookups that follow.
    func prefetch(_ ids: [String]) throws
    func entry(_ id: String) throws -> AckerEntry?
    func save(_ entry: AckerEntry) throws
    func appendPending(_ entry: AckerEntry) throws
    func clearPending() throws
    /// This member no longer owns `partitions` (a shared store; a local one owns them all).
    func release(partitions: Set<Int32>)
    /// The waiting ids of `partitions` (SQLite: of every partition).
    func loadPending(partitions: Set<Int32>, _ body: (AckerEntry) throws -> Void) throws
    func markAcked(_ id: String, partition: Int32) throws
    func mergeAcked(_ ids: [String: Int32]) throws
    func markReported(_ id: String, partition: Int32) throws
    func incomplete(in partitions: Set<Int32>, olderThan cutoff: Int64) throws -> (reported: Int, overdue: [AckerEntry])
    func offsets(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64]
    func setOffsets(_ offsets: [TopicPartition: Int64]) throws
    func topicIds() throws -> [String: String]
    func recordTopicIds(_ ids: [String: String], forgetAll: Bool) throws
    func forget(partition: Int32) throws
}

extension AckerStore: AckerStateStore {
    package var shared: Bool { false }
    /// One process owns the file (`InstanceLock`): nothing to fence.
    package func fence(_ epochs: [TopicPartition: Int64]) throws {}
    package func prefetch(_ ids: [String]) throws {}
    package func release(partitions: Set<Int32>) {}
    package func loadPending(partitions: Set<Int32>, _ body: (AckerEntry) throws -> Void) throws {
        try forEachPending(body)
    }
}
