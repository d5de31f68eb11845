import Testing
import GenetikaSupport
import GenetikaTestSupport
@testable import GenetikaStorage

/// Fencing tokens in a shared PostgreSQL (`PartitionOwners`): a member that was assigned a
/// partition and then lost it to another (a zombie) has every later write refused, whole.
@Suite("Fencing in PostgreSQL")
struct FencingTests {
    static let schema = TableSchema(table: "data1", columns: [
        .init(name: "id", type: .integer, nullable: false), .init(name: "v", type: .integer, nullable: true),
    ], key: "id")

    static func row(_ id: Int64, _ v: Int64) -> SinkRow { SinkRow(source: 0, values: [.integer(id), .integer(v)]) }

    static func rows(_ url: String) throws -> [[String?]] {
        let connection = try PostgresConnection(url: url)
        defer { connection.close() }
        return try connection.execute("SELECT id, v FROM data1 ORDER BY id")
    }

    @Test("a zombie's batch (older rows, older offsets) is refused once another member claimed its partition; the owner's commits stand")
    func zombieRefused() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let zombie = try PostgresTableSink(url: pg.url, tables: [Self.schema])
        let owner = try PostgresTableSink(url: pg.url, tables: [Self.schema])
        defer { zombie.close(); owner.close() }
        try zombie.prepare()
        try owner.prepare()
        let p0 = TopicPartition("topic1", 0), p1 = TopicPartition("topic1", 1)
        let first = try zombie.claim(group: "g", member: "zombie", partitions: [p0, p1])
        #expect(first == [p0: 1, p1: 1])
        try zombie.write([Self.row(1, 1)], offsets: [p0: 10], group: "g", fence: first)
        // The zombie stalls; the group gives p0 to the other member, which writes a newer version.
        let second = try owner.claim(group: "g", member: "owner", partitions: [p0])
        #expect(second == [p0: 2])
        #expect(try owner.storedOffsets(group: "g", partitions: [p0]) == [p0: 10])
        try owner.write([Self.row(1, 3)], offsets: [p0: 30], group: "g", fence: second)
        // The zombie wakes with its batch in hand (version 2, offsets 10..20) plus a row of p1.
        #expect(throws: FencedPartitions.self) {
            try zombie.write([Self.row(1, 2), Self.row(2, 2)], offsets: [p0: 20, p1: 5], group: "g", fence: first)
        }
        // Nothing of the refused batch was written, p1's part included.
        #expect(try Self.rows(pg.url) == [["1", "3"]])
        #expect(try owner.storedOffsets(group: "g", partitions: [p0, p1]) == [p0: 30])
        // Its partition still its own (p1) is written as before.
        try zombie.write([Self.row(2, 2)], offsets: [p1: 5], group: "g", fence: [p1: first[p1]!])
        #expect(try Self.rows(pg.url) == [["1", "3"], ["2", "2"]])
        // Unfenced writes (one writer) are not checked.
        try zombie.write([Self.row(3, 1)], offsets: [p0: 31], group: "other")
    }

    @Test("a claim waits for a write in progress, so the new owner reads the offsets it committed")
    func claimWaitsForWrite() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let sink = try PostgresTableSink(url: pg.url, tables: [Self.schema])
        defer { sink.close() }
        try sink.prepare()
        let p0 = TopicPartition("topic1", 0)
        let epochs = try sink.claim(group: "g", member: "a", partitions: [p0])
        let writer = try PostgresConnection(url: pg.url)
        defer { writer.close() }
        let owners = PartitionOwners(connection: writer)
        try writer.execute("BEGIN")
        #expect(try owners.fenced(group: "g", epochs: epochs).isEmpty)
        try writer.execute("INSERT INTO genetika_offsets VALUES ('g', 'topic1', 0, 77)")
        let url = pg.url
        let claimed = Task.detached { () throws -> (Int64?, Int64?) in
            let other = try PostgresTableSink(url: url, tables: [Self.schema])
            defer { other.close() }
            let epoch = try other.claim(group: "g", member: "b", partitions: [p0])[p0]
            return (epoch, try other.storedOffsets(group: "g", partitions: [p0])[p0])
        }
        try await Task.sleep(for: .milliseconds(500))
        try writer.execute("COMMIT")
        let (epoch, offset) = try await claimed.value
        #expect(epoch == 2)
        #expect(offset == 77)
    }

    @Test("leases: a confirmed lease makes the next claim wait; a released one does not; a stale epoch is not confirmed")
    func leases() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let connection = try PostgresConnection(url: pg.url)
        defer { connection.close() }
        let owners = PartitionOwners(connection: connection)
        try owners.prepare()
        let p3 = TopicPartition("topic1", 3)
        let (first, none) = try owners.claim(group: "acker", member: "a", partitions: [p3], leaseMs: 5_000)
        #expect(none == 0)
        #expect(try owners.confirm(group: "acker", epochs: first).isEmpty)
        let (second, wait) = try owners.claim(group: "acker", member: "b", partitions: [p3], leaseMs: 5_000)
        #expect(wait > 4_000 && wait <= 5_000)
        #expect(try owners.confirm(group: "acker", epochs: first) == [p3])
        #expect(try owners.confirm(group: "acker", epochs: second).isEmpty)
        try owners.release(group: "acker", epochs: second)
        let (_, after) = try owners.claim(group: "acker", member: "c", partitions: [p3], leaseMs: 5_000)
        #expect(after == 0)
    }

    /// The DB stage's sink and the acker's store create tables they share (offsets, topic ids,
    /// owners) when they start, which on a fresh database they do at the same moment: a
    /// concurrent `CREATE TABLE IF NOT EXISTS` of one table fails in PostgreSQL unless both
    /// hold one lock (the test "text ids go through the DB stage and the acker" once timed
    /// out on it: the DB stage had thrown at start).
    @Test("the sink and the acker's store creating their schema at the same moment on a fresh database both succeed")
    func schemaCreatedConcurrently() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        for _ in 0..<12 {
            let url = try pg.createDatabase()
            async let sink: Void = Task.detached {
                let sink = try PostgresTableSink(url: url, tables: [Self.schema])
                defer { sink.close() }
                try sink.prepare()
            }.value
            async let store: Void = Task.detached {
                let store = try PostgresAckerStore(url: url, group: "acker", topicCount: 3)
                store.close()
            }.value
            async let owners: Void = Task.detached {
                let connection = try PostgresConnection(url: url)
                defer { connection.close() }
                try PartitionOwners(connection: connection).prepare()
            }.value
            _ = try await (sink, store, owners)
        }
    }
}

/// The acker's state in the shared PostgreSQL: what one member commits, the next owner of the
/// partition loads (its waiting ids only) and finds (acked ids, offsets); a fenced commit
/// writes nothing.
@Suite("Shared acker state in PostgreSQL")
struct PostgresAckerStoreTests {
    static func entry(_ id: String, _ partition: Int32, seen: Int64, times: [Int64?], acked: Bool = false) -> AckerEntry {
        AckerEntry(id: id, partition: partition, seen: seen, timestamps: times, acked: acked)
    }

    @Test("a partition's waiting ids, acked ids and offsets move to the member that claims it next; a zombie's commit is refused")
    func stateMoves() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let first = try PostgresAckerStore(url: pg.url, group: "acker", topicCount: 3)
        defer { first.close() }
        let owners = PartitionOwners(connection: try PostgresConnection(url: pg.url))
        let p1 = TopicPartition("topic1", 1), p2 = TopicPartition("topic1", 2)
        let (mine, _) = try owners.claim(group: "acker", member: "first", partitions: [p1, p2])
        try first.transaction {
            try first.fence(mine)
            try first.appendPending(Self.entry("7", 1, seen: 0b011, times: [10, 20, nil]))
            try first.appendPending(Self.entry("8", 1, seen: 0b111, times: [1, 2, 3], acked: true))
            try first.appendPending(Self.entry("9", 2, seen: 0b001, times: [5, nil, nil]))
            try first.appendPending(Self.entry("9", 2, seen: 0b101, times: [5, nil, 6]))   // the last change of an id wins
            try first.save(Self.entry("quote \"and\" \\ back", 1, seen: 0b001, times: [4, nil, nil]))   // set aside
            try first.setOffsets([p1: 40, TopicPartition("ack", 1): 3])
        }
        // Another member is given partition 1 only.
        let second = try PostgresAckerStore(url: pg.url, group: "acker", topicCount: 3)
        defer { second.close() }
        var loaded: [AckerEntry] = []
        try second.loadPending(partitions: [1]) { loaded.append($0) }
        #expect(loaded == [Self.entry("7", 1, seen: 0b011, times: [10, 20, nil])])
        var other: [AckerEntry] = []
        try second.loadPending(partitions: [2]) { other.append($0) }
        #expect(other == [Self.entry("9", 2, seen: 0b101, times: [5, nil, 6])])
        try second.prefetch(["8", "quote \"and\" \\ back", "unknown"])
        #expect(try second.entry("8")?.acked == true)
        #expect(try second.entry("quote \"and\" \\ back")?.timestamps == [4, nil, nil])
        #expect(try second.entry("unknown") == nil)
        #expect(try second.offsets([p1, TopicPartition("ack", 1), p2]) == [p1: 40, TopicPartition("ack", 1): 3])
        let (theirs, _) = try owners.claim(group: "acker", member: "second", partitions: [p1])
        // The first member wakes and commits for partition 1: refused, nothing written.
        #expect(throws: FencedPartitions.self) {
            try first.transaction {
                try first.fence(mine)
                try first.appendPending(Self.entry("7", 1, seen: 0b111, times: [10, 20, 30], acked: true))
                try first.setOffsets([p1: 50])
            }
        }
        try second.transaction { try second.fence(theirs) }
        var after: [AckerEntry] = []
        try second.loadPending(partitions: [1]) { after.append($0) }
        #expect(after == loaded)
        #expect(try second.offsets([p1]) == [p1: 40])
        let (reported, overdue) = try second.incomplete(in: [1], olderThan: 100)
        #expect(reported == 0 && overdue.map(\.id) == ["quote \"and\" \\ back"])
        try second.forget(partition: 1)
        #expect(try second.offsets([p1, TopicPartition("ack", 1)]).isEmpty)
    }

    @Test("a waiting id's changes are appended to the log and merged on load; an acked id leaves it; a rewrite keeps only the live rows")
    func logMergesAndRewrites() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let store = try PostgresAckerStore(url: pg.url, group: "acker", topicCount: 3)
        defer { store.close() }
        let sql = try PostgresConnection(url: pg.url)
        func logRows() throws -> Int { Int(try sql.execute("SELECT coalesce(sum(entries), 0) FROM genetika_acker_journal")[0][0] ?? "") ?? -1 }
        func loaded(_ partitions: Set<Int32>) throws -> [String: AckerEntry] {
            let other = try PostgresAckerStore(url: pg.url, group: "acker", topicCount: 3)
            defer { other.close() }
            var found: [String: AckerEntry] = [:]
            try other.loadPending(partitions: partitions) { found[$0.id] = $0 }
            return found
        }
        // A store written before the log: a waiting id's row in genetika_acker_ids.
        try sql.execute("INSERT INTO genetika_acker_ids (consumer_group, id, partition, seen, times, acked) VALUES ('acker', 'old', 1, 1, '{3,NULL,NULL}', false)")
        try store.loadPending(partitions: [1]) { _ in }
        #expect(store.pendingRows == 0)
        try store.transaction { try store.appendPending(Self.entry("7", 1, seen: 0b001, times: [10, nil, nil])) }
        try store.transaction {
            try store.appendPending(Self.entry("7", 1, seen: 0b010, times: [nil, 20, nil]))   // rows merge, in any order
            try store.appendPending(Self.entry("8", 1, seen: 0b001, times: [1, nil, nil]))
            try store.appendPending(Self.entry("old", 1, seen: 0b011, times: [3, 4, nil]))
        }
        try store.transaction { try store.appendPending(Self.entry("8", 1, seen: 0b111, times: [1, 2, 3], acked: true)) }
        #expect(store.pendingRows == 4)
        #expect(try logRows() == 4)
        let expected = ["7": Self.entry("7", 1, seen: 0b011, times: [10, 20, nil]), "old": Self.entry("old", 1, seen: 0b011, times: [3, 4, nil])]
        #expect(try loaded([1]) == expected)
        try store.prefetch(["8"])
        #expect(try store.entry("8")?.acked == true)
        // The rewrite: the live rows only (as the acker does it, from what it holds in memory).
        try store.transaction {
            try store.clearPending()
            for entry in expected.values { try store.appendPending(entry) }
        }
        #expect(store.pendingRows == 2)
        #expect(try logRows() == 2)
        #expect(try loaded([1]) == expected)
        // A released partition is no longer this member's to count or rewrite.
        store.release(partitions: [1])
        #expect(store.pendingRows == 0)
        try store.transaction { try store.clearPending() }
        #expect(try logRows() == 2)
        try store.forget(partition: 1)
        #expect(try logRows() == 0)
        #expect(try loaded([1]).isEmpty)
    }

    /// A store of group "acker" at `url`, and a connection of its own to look at the tables.
    static func open(_ url: String) throws -> (store: PostgresAckerStore, sql: PostgresConnection) {
        (try PostgresAckerStore(url: url, group: "acker", topicCount: 3), try PostgresConnection(url: url))
    }

    /// The lookup of a batch's unknown ids is planned on statistics of the table as it is, not as
    /// it was when empty: a 3 x 1M run once spent 16 s of server time reading every id of the
    /// group per batch (an empty table's statistics put the group at 0.5 % of the rows), so the
    /// acker's cost per id grew with the table.
    @Test("after the acker's table grew from empty its statistics describe it, and a batch's lookup probes the key per id")
    func lookupStaysAProbe() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let (store, sql) = try Self.open(pg.url)
        defer { store.close(); sql.close() }
        // The server's own analyze must not do it for us while the test runs.
        try sql.execute("ALTER TABLE genetika_acker_ids SET (autovacuum_enabled = false)")
        try sql.execute("ANALYZE genetika_acker_ids")  // as on a fresh database: statistics of an empty table
        var next = 0
        for _ in 0..<30 {
            try store.transaction {
                for _ in 0..<2_000 {
                    try store.appendPending(Self.entry(String(next), Int32(next % 3), seen: 0b111, times: [1, 2, 3], acked: true))
                    next += 1
                }
            }
        }
        // What the planner believes of the group: with an empty table's statistics, 0.5 % of
        // the rows (so reading all of them looks cheaper than a probe per id); gathered again
        // as the table grew, about all of them.
        let estimate = try sql.execute("EXPLAIN SELECT id FROM genetika_acker_ids WHERE consumer_group = 'acker'")
            .compactMap { $0.first ?? nil }.joined(separator: "\n")
        let rows = estimate.firstMatch(of: /rows=([0-9]+)/).flatMap { Int($0.1) } ?? 0
        #expect(rows >= next / 2, "the planner puts \(rows) of \(next) rows in the group: \(estimate)")
        // A batch's lookup on those statistics, at a table size where a probe per id is cheaper.
        let absent = "{" + (1_000_000..<1_000_100).map(String.init).joined(separator: ",") + "}"
        let plan = try sql.query("""
            EXPLAIN SELECT id, partition, seen, times, acked FROM genetika_acker_ids
            WHERE consumer_group = $1 AND id = ANY($2::text[])
            """, ["acker", absent]).compactMap { $0.first ?? nil }.joined(separator: "\n")
        #expect(plan.contains("Index Cond: ((consumer_group = 'acker'::text) AND (id = ANY"), "\(plan)")
        try store.prefetch(["5", "1000000"])
        #expect(try store.entry("5")?.acked == true)
        #expect(try store.entry("1000000") == nil)
    }

    @Test("an acked id's row goes straight into genetika_acker_ids; one already there takes the upsert, whose rules hold (acked stays acked)")
    func idRowsDirectOrUpserted() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let (store, sql) = try Self.open(pg.url)
        defer { store.close(); sql.close() }
        func row(_ id: String) throws -> [String?] {
            try sql.query("SELECT seen, times, acked, aside FROM genetika_acker_ids WHERE consumer_group = 'acker' AND id = $1", [id]).first ?? []
        }
        try store.transaction { try store.appendPending(Self.entry("a", 0, seen: 0b111, times: [1, 2, 3], acked: true)) }
        #expect((store.directBatches, store.stagedBatches) == (1, 0))
        // "a" again, set aside with acked false: the direct COPY is refused (the key), the upsert runs.
        try store.transaction { try store.save(Self.entry("a", 0, seen: 0b011, times: [1, 2, nil])) }
        #expect((store.directBatches, store.stagedBatches) == (1, 1))
        #expect(try row("a") == ["3", "{1,2,NULL}", "t", "t"], "acked is OR-ed, the rest replaced")
        // After a refusal the direct path sits out one batch, then is tried again.
        try store.transaction { try store.appendPending(Self.entry("b", 1, seen: 0b111, times: [4, 5, 6], acked: true)) }
        try store.transaction { try store.appendPending(Self.entry("c", 2, seen: 0b111, times: [7, 8, 9], acked: true)) }
        #expect((store.directBatches, store.stagedBatches) == (2, 2))
        #expect(try row("b") == ["7", "{4,5,6}", "t", "f"])
        #expect(try row("c") == ["7", "{7,8,9}", "t", "f"])
        // A rolled-back transaction leaves nothing, whichever path it took.
        #expect(throws: FencedPartitions.self) {
            try store.transaction {
                try store.appendPending(Self.entry("d", 0, seen: 0b111, times: [1, 1, 1], acked: true))
                throw FencedPartitions(partitions: [TopicPartition("topic1", 0)])
            }
        }
        #expect(try row("d").isEmpty)
    }
}
