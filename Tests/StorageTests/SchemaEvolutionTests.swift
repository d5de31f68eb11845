import Foundation
import Testing
import GenetikaTestSupport
@testable import GenetikaStorage

/// Additive schema evolution on both databases: a configured column the table lacks is added
/// (old rows NULL, new rows filled); a type change, a changed key, a new NOT NULL column or a
/// column that became nullable is refused with a per-column diff, and nothing is changed.
@Suite("Schema evolution")
struct SchemaEvolutionTests {
    static let before = TableSchema(table: "data1", columns: [
        .init(name: "id", type: .integer, nullable: false), .init(name: "age", type: .integer, nullable: true),
    ], key: "id")
    static func with(_ columns: [TableSchema.Column], key: String = "id") -> TableSchema {
        TableSchema(table: "data1", columns: columns, key: key)
    }
    static let id = TableSchema.Column(name: "id", type: .integer, nullable: false)
    static let age = TableSchema.Column(name: "age", type: .integer, nullable: true)
    static let site = TableSchema.Column(name: "site", type: .text, nullable: true)

    enum Database: CaseIterable { case sqlite, postgres }

    /// A sink on a fresh database of `kind` for `schema` (the same database each call of one test).
    final class Place: @unchecked Sendable {   // one test's state, used from that test only
        let kind: Database
        let directory = "/tmp/genetika-schema-\(UUID().uuidString.prefix(8))"
        var postgres: TestPostgres?
        init(_ kind: Database) async throws {
            self.kind = kind
            if kind == .postgres { postgres = try await TestPostgres.start() }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        func sink(_ schema: TableSchema) throws -> any TableSink {
            switch kind {
            case .sqlite: try SQLiteTableSink(path: directory + "/db.sqlite", tables: [schema])
            case .postgres: try PostgresTableSink(url: postgres!.url, tables: [schema])
            }
        }
        func rows() throws -> [[String?]] {
            switch kind {
            case .sqlite:
                let connection = try SQLiteConnection(path: directory + "/db.sqlite")
                defer { connection.close() }
                return try connection.query("SELECT * FROM data1 ORDER BY id").map { row in
                    row.map { value -> String? in
                        switch value {
                        case .null: nil
                        case .integer(let v): String(v)
                        case .real(let v): String(v)
                        case .text(let v): v
                        }
                    }
                }
            case .postgres:
                let connection = try PostgresConnection(url: postgres!.url)
                defer { connection.close() }
                return try connection.execute("SELECT * FROM data1 ORDER BY id")
            }
        }
        func close() {
            postgres?.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    @Test("a new nullable column is added: old rows NULL, new rows with their value; a removed column stays", arguments: Database.allCases)
    func columnAdded(_ kind: Database) async throws {
        let place = try await Place(kind)
        defer { place.close() }
        let first = try place.sink(Self.before)
        #expect(try first.prepare().isEmpty)
        try first.write([SinkRow(source: 0, values: [.integer(1), .integer(30)])], offsets: [:], group: "g")
        first.close()
        let second = try place.sink(Self.with([Self.id, Self.age, Self.site]))
        let changes = try second.prepare()
        #expect(changes.map(\.column) == ["site"])
        #expect(changes.first?.description.contains("table data1: added column site") == true)
        try second.write([SinkRow(source: 0, values: [.integer(2), .integer(40), .text("Oslo")])], offsets: [:], group: "g")
        #expect(try second.prepare().isEmpty)   // a second start adds nothing
        second.close()
        #expect(try place.rows() == [["1", "30", nil], ["2", "40", "Oslo"]])
        // `age` removed from the configuration: it stays in the table, NULL for new rows.
        let third = try place.sink(Self.with([Self.id, Self.site]))
        #expect(try third.prepare().isEmpty)
        try third.write([SinkRow(source: 0, values: [.integer(3), .text("Lund")])], offsets: [:], group: "g")
        third.close()
        #expect(try place.rows() == [["1", "30", nil], ["2", "40", "Oslo"], ["3", nil, "Lund"]])
    }

    @Test("a type change, a changed key, a new NOT NULL column are refused with a diff, and nothing changes", arguments: Database.allCases)
    func refused(_ kind: Database) async throws {
        let place = try await Place(kind)
        defer { place.close() }
        let first = try place.sink(Self.before)
        try first.prepare()
        try first.write([SinkRow(source: 0, values: [.integer(1), .integer(30)])], offsets: [:], group: "g")
        first.close()
        let cases: [(TableSchema, [String])] = [
            (Self.with([Self.id, .init(name: "age", type: .text, nullable: true), Self.site]), ["data1.age: in the database"]),
            (Self.with([Self.id, Self.age], key: "age"), ["data1.age: in the database key id; in the config key age"]),
            (Self.with([Self.id, Self.age, .init(name: "visit", type: .integer, nullable: false)]), ["data1.visit: in the database absent"]),
        ]
        for (schema, expected) in cases {
            let sink = try place.sink(schema)
            defer { sink.close() }
            do {
                try sink.prepare()
                Issue.record("\(schema.columns.map(\.name)) key \(schema.key): not refused")
            } catch let mismatch as SchemaMismatch {
                for text in expected { #expect(mismatch.description.contains(text), "\(mismatch)") }
            }
        }
        // The valid addition in the first refused configuration (site) was not made either.
        #expect(try place.rows() == [["1", "30"]])
    }
}
