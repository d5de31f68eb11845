import Foundation
import Testing
import GenetikaSupport
import GenetikaTestSupport
@testable import GenetikaStorage

/// The PostgreSQL sink's bulk write path (`COPY` into a staging table, then one upsert from it)
/// against the row-at-a-time semantics it replaces, and a batch's transaction dying halfway.
@Suite("PostgreSQL write paths")
struct PostgresWritePathTests {
    static let tables = [
        TableSchema(table: "data1", columns: [
            .init(name: "id", type: .integer, nullable: false), .init(name: "label", type: .text, nullable: true),
            .init(name: "score", type: .real, nullable: true), .init(name: "ok", type: .boolean, nullable: true),
            .init(name: "day", type: .date, nullable: true), .init(name: "at", type: .datetime, nullable: true),
            .init(name: "count", type: .integer, nullable: true),
        ], key: "id"),
        // The key in the middle and a text key: the column order is the configuration's.
        TableSchema(table: "data2", columns: [
            .init(name: "note", type: .text, nullable: false), .init(name: "code", type: .text, nullable: false),
            .init(name: "n", type: .integer, nullable: true),
        ], key: "code"),
    ]

    /// Deterministic batches (SplitMix64): ids repeated within and across batches, NULLs, and
    /// text with every character COPY's text format treats specially.
    struct Batches {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

        static let pieces = ["a", "Z", " ", "'", "\"", "\\", "\\N", "\t", "\n", "\r", "\r\n", ",", ";", "é", "日本", "🧬",
                             "NULL", "\\t", "0", "--", "$1", "\u{7F}", "ß"]

        mutating func text() -> String {
            (0..<below(6)).map { _ in Self.pieces[below(Self.pieces.count)] }.joined()
        }
        mutating func maybe(_ value: FieldValue) -> FieldValue { below(4) == 0 ? .null : value }

        mutating func row() -> SinkRow {
            if below(3) == 0 {
                return SinkRow(source: 1, values: [.text(text()), .text("k\(below(40))" + (below(2) == 0 ? "\t\\" : "")),
                                                   maybe(.integer(Int64(below(1000)) - 500))])
            }
            let day = String(format: "%04d-%02d-%02d", 1900 + below(200), 1 + below(12), 1 + below(28))
            let at = day + String(format: "T%02d:%02d:%02d", below(24), below(60), below(60))
            let score = Double(Int64(bitPattern: next()) % 1_000_000_007) / Double(1 + below(997))
            return SinkRow(source: 0, values: [
                .integer(Int64(below(120))), maybe(.text(text())), maybe(.real(below(10) == 0 ? 0 : score)),
                maybe(.boolean(below(2) == 0)), maybe(.temporal(day)), maybe(.temporal(at)),
                maybe(.integer(Int64(bitPattern: next()))),
            ])
        }
    }

    static func contents(_ url: String) throws -> [[[String?]]] {
        let connection = try PostgresConnection(url: url)
        defer { connection.close() }
        return [
            try connection.execute("SELECT id, label, score, ok, day, at, count FROM data1 ORDER BY id"),
            try connection.execute("SELECT note, code, n FROM data2 ORDER BY code"),
            try connection.execute("SELECT consumer_group, topic, partition, next_offset FROM genetika_offsets ORDER BY 1, 2, 3"),
        ]
    }

    @Test("COPY (straight in or staged) and multi-row INSERT leave exactly the tables and offsets that one upsert per row leaves, on random batches")
    func bulkEqualsRowAtATime() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        var urls: [PostgresTableSink.WritePath: String] = [:]
        var sinks: [PostgresTableSink.WritePath: PostgresTableSink] = [:]
        for path in PostgresTableSink.WritePath.allCases {
            urls[path] = try pg.createDatabase()
            sinks[path] = try PostgresTableSink(url: urls[path]!, tables: Self.tables, writePath: path)
            try sinks[path]!.prepare()
        }
        defer { for sink in sinks.values { sink.close() } }
        var batches = Batches(state: 20261206)
        var totalRows = 0
        for number in 0..<40 {
            let rows = (0..<batches.below(number % 5 == 0 ? 2 : 400)).map { _ in batches.row() }
            totalRows += rows.count
            let offsets = [TopicPartition("topic1", Int32(number % 3)): Int64(number * 100 + rows.count)]
            for sink in sinks.values { try sink.write(rows, offsets: offsets, group: "g") }
        }
        let expected = try Self.contents(urls[.rowAtATime]!)
        #expect(expected[0].count > 100 && expected[1].count > 30, "the batches cover both tables")
        #expect(expected[0].contains { $0.contains { $0 == nil } }, "NULLs were written")
        #expect(expected[0].contains { $0[1]?.contains("\t") == true && $0[1]?.contains("\\") == true }, "tabs and backslashes were written")
        #expect(totalRows > expected[0].count + expected[1].count, "ids repeat, so upserts replaced rows")
        #expect(try Self.contents(urls[.copy]!) == expected)
        #expect(try Self.contents(urls[.staged]!) == expected)
        #expect(try Self.contents(urls[.insert]!) == expected)
        // The copy path took both of its ways: straight into the tables, and (ids stored) the upsert.
        #expect(sinks[.copy]!.directBatches > 0 && sinks[.copy]!.stagedBatches > 0,
                "direct \(sinks[.copy]!.directBatches), staged \(sinks[.copy]!.stagedBatches)")
    }

    @Test("a batch whose transaction dies halfway (the server process killed between its two tables) leaves neither rows nor offsets")
    func killedHalfway() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let url = try pg.createDatabase()
        let sink = try PostgresTableSink(url: url, tables: Self.tables)
        try sink.prepare()
        let before = SinkRow(source: 0, values: [.integer(1), .text("kept"), .null, .null, .null, .null, .null])
        try sink.write([before], offsets: [TopicPartition("topic1", 0): 1], group: "g")
        let admin = try PostgresConnection(url: url)
        defer { admin.close() }
        // The backend that writes data2 terminates itself: data1's COPY and upsert already ran.
        try admin.execute("""
            CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$
            """)
        try admin.execute("CREATE TRIGGER die BEFORE INSERT ON data2 FOR EACH ROW EXECUTE FUNCTION die()")
        let batch = [
            SinkRow(source: 0, values: [.integer(1), .text("overwritten?"), .real(1), .boolean(true), .null, .null, .null]),
            SinkRow(source: 0, values: [.integer(2), .text("new?"), .null, .null, .null, .null, .null]),
            SinkRow(source: 1, values: [.text("x"), .text("k1"), .integer(1)]),
        ]
        #expect(throws: PostgresError.self) {
            try sink.write(batch, offsets: [TopicPartition("topic1", 0): 4, TopicPartition("topic2", 0): 1], group: "g")
        }
        sink.close()
        try admin.execute("DROP TRIGGER die ON data2")
        let after = try Self.contents(url)
        #expect(after[0] == [["1", "kept", nil, nil, nil, nil, nil]])
        #expect(after[1].isEmpty)
        #expect(after[2] == [["g", "topic1", "0", "1"]])
        // A new session (its own staging tables) writes the batch whole.
        let again = try PostgresTableSink(url: url, tables: Self.tables)
        defer { again.close() }
        try again.write(batch, offsets: [TopicPartition("topic1", 0): 4, TopicPartition("topic2", 0): 1], group: "g")
        #expect(try Self.contents(url)[0].map { $0[1] } == ["overwritten?", "new?"])
    }

    @Test("a row the database refuses fails the whole batch: the rows before it in the COPY are not kept")
    func refusedRowFailsBatch() async throws {
        let pg = try await TestPostgres.start()
        defer { pg.stop() }
        let url = try pg.createDatabase()
        let sink = try PostgresTableSink(url: url, tables: Self.tables)
        defer { sink.close() }
        try sink.prepare()
        // data2.note is NOT NULL: the staging table takes the NULL, the upsert refuses it.
        let batch = [SinkRow(source: 1, values: [.text("fine"), .text("k1"), .null]),
                     SinkRow(source: 1, values: [.null, .text("k2"), .null])]
        #expect {
            try sink.write(batch, offsets: [TopicPartition("topic2", 0): 2], group: "g")
        } throws: { error in
            "\(error)".contains("null value in column \"note\"")
        }
        #expect(try Self.contents(url) == [[], [], []])
        // The session is usable afterwards: its staging tables were emptied by the rollback.
        try sink.write([batch[0]], offsets: [TopicPartition("topic2", 0): 2], group: "g")
        #expect(try Self.contents(url)[1] == [["fine", "k1", nil]])
    }
}
