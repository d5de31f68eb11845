import Foundation
import Testing
import GenetikaSupport
@testable import GenetikaStorage

@Suite("SQLite table sink")
struct TableSinkTests {
    let schema = TableSchema(table: "data2", columns: [
        .init(name: "id", type: .integer, nullable: false),
        .init(name: "call", type: .text, nullable: true),
    ], key: "id")
    let partition = TopicPartition("topic2", 0)

    func row(_ id: Int64, _ call: String) -> SinkRow {
        SinkRow(source: 0, values: [.integer(id), .text(call)])
    }

    func withDatabase(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sink-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try body(directory.appendingPathComponent("genetika.db").path)
    }

    @Test("a new table keeps rows in arrival order with the key unique (not the rowid); an id's later event wins")
    func arrivalOrderWithUniqueKey() throws {
        try withDatabase { path in
            let sink = try SQLiteTableSink(path: path, tables: [schema])
            defer { sink.close() }
            try sink.prepare()
            try sink.write([row(900, "a"), row(7, "b"), row(900, "c")], offsets: [partition: 3], group: "g")
            try sink.write([row(3, "d"), row(7, "e")], offsets: [partition: 5], group: "g")

            let check = try SQLiteConnection(path: path)
            defer { check.close() }
            let definition = try check.query("SELECT sql FROM sqlite_master WHERE name = 'data2'")
            guard case .text(let sql)? = definition.first?.first else {
                Issue.record("no table data2")
                return
            }
            #expect(sql.contains("\"id\" INTEGER NOT NULL UNIQUE"), "\(sql)")
            #expect(!sql.contains("PRIMARY KEY"), "\(sql)")
            // Rowids follow arrival (each batch in key order), not the ids; 7 was updated in place.
            let rows = try check.query("SELECT rowid, id, \"call\" FROM data2 ORDER BY rowid")
            #expect(rows == [[.integer(1), .integer(7), .text("e")],
                             [.integer(2), .integer(900), .text("c")],
                             [.integer(3), .integer(3), .text("d")]])
            #expect(try sink.storedOffsets(group: "g", partitions: [partition]) == [partition: 5])
            // A new database gets the sink's page size; checkpoints still come every 64 MB of WAL.
            #expect(try check.pageSize() == SQLiteTableSink.pageSize)
            #expect(try sink.connection.query("PRAGMA wal_autocheckpoint") == [[.integer(Int64((64 << 20) / SQLiteTableSink.pageSize))]])
        }
    }

    @Test("a table created by an earlier version (key as INTEGER PRIMARY KEY) is kept and upserted as before")
    func earlierLayoutStillUpserts() throws {
        try withDatabase { path in
            do {
                let old = try SQLiteConnection(path: path)
                defer { old.close() }
                try old.execute("CREATE TABLE data2 (\"id\" INTEGER PRIMARY KEY NOT NULL, \"call\" TEXT)")
                try old.execute("INSERT INTO data2 VALUES (5, 'old')")
            }
            let sink = try SQLiteTableSink(path: path, tables: [schema])
            defer { sink.close() }
            try sink.prepare()
            try sink.write([row(5, "new"), row(6, "x")], offsets: [partition: 2], group: "g")

            let check = try SQLiteConnection(path: path)
            defer { check.close() }
            #expect(try check.query("SELECT id, \"call\" FROM data2 ORDER BY id") == [[.integer(5), .text("new")], [.integer(6), .text("x")]])
            let definition = try check.query("SELECT sql FROM sqlite_master WHERE name = 'data2'")
            #expect(definition.first?.first == .text("CREATE TABLE data2 (\"id\" INTEGER PRIMARY KEY NOT NULL, \"call\" TEXT)"))
            // The database keeps the page size it was created with (SQLite's 4 KiB), and the
            // checkpoint interval is counted in its pages.
            #expect(try check.pageSize() == 4096)
            #expect(try sink.connection.query("PRAGMA wal_autocheckpoint") == [[.integer(16_384)]])
        }
    }
}
