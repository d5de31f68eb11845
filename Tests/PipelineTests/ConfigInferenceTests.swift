import Foundation
import GenetikaTestSupport
import Testing
@testable import GenetikaPipeline
@testable import GenetikaStorage
@testable import GenetikaXlsx

/// `genetika init`'s inference: each column's narrowest type, nullability from empty and NA
/// cells, names usable as identifiers, and a configuration that loads.
@Suite("Configuration inference (init)")
struct ConfigInferenceTests {
    static func cell(_ ref: String, _ raw: String) -> String {
        if raw.hasPrefix("b:") { return "<c r=\"\(ref)\" t=\"b\"><v>\(raw.dropFirst(2))</v></c>" }
        if Double(raw) != nil { return "<c r=\"\(ref)\"><v>\(raw)</v></c>" }
        return "<c r=\"\(ref)\" t=\"inlineStr\"><is><t>\(raw)</t></is></c>"
    }

    static func sheet(_ rows: [[String?]]) -> String {
        rows.enumerated().map { r, values in
            "<row r=\"\(r + 1)\">" + values.enumerated().compactMap { c, v in v.map { cell("\(columnName(c))\(r + 1)", $0) } }.joined() + "</row>"
        }.joined()
    }

    @Test("types and nullability inferred from every row; the written configuration loads")
    func inferred() throws {
        let rows: [[String?]] = [
            ["Sample ID", "count", "ratio", "flag", "day", "stamp", "mixed", "empty col", "id"],
            ["S-1", "1", "1", "b:1", "2024-01-02", "2024-01-02T03:04:05", "1", nil, "10"],
            ["S-2", "2", "2.5", "b:0", "2024-01-03", "2024-01-03", "x", nil, "11"],
            ["S-3", "NA", "3", nil, "2024-01-04", "2024-01-04T00:00:01", "2", nil, "12"],
        ]
        let path = try XlsxParts.minimal(rowsXML: Self.sheet(rows), sheetName: "Lab Intake").write(named: "Site Intake 2024.xlsx")
        let sources = try ConfigInference.infer(files: [path])
        let source = try #require(sources.first)
        #expect(source.sheet == "Lab Intake")
        #expect(source.topic == "site_intake_2024" && source.table == "site_intake_2024")
        #expect(source.rows == 3)
        #expect(source.key == "id")
        let byName = Dictionary(uniqueKeysWithValues: source.columns.map { ($0.name, $0) })
        #expect(byName["sample_id"]?.type == .text && byName["sample_id"]?.header == "Sample ID")
        #expect(byName["count"]?.type == .integer && byName["count"]?.nullable == true)       // NA seen
        #expect(byName["ratio"]?.type == .real && byName["ratio"]?.nullable == false)
        #expect(byName["flag"]?.type == .boolean && byName["flag"]?.nullable == true)         // an empty cell
        #expect(byName["day"]?.type == .date)
        #expect(byName["stamp"]?.type == .datetime)
        #expect(byName["mixed"]?.type == .text)
        #expect(byName["empty_col"]?.type == .text && byName["empty_col"]?.nullable == true)
        #expect(byName["id"]?.type == .integer && byName["id"]?.nullable == false)
        // The written configuration loads and validates its own file.
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let out = directory + "/generated.json"
        try Data(ConfigInference.configuration(sources, bootstrapServers: "127.0.0.1:9092", database: "sqlite://state/g.db").utf8)
            .write(to: URL(fileURLWithPath: out))
        let configuration = try GenetikaConfiguration.load(path: out, environment: [:])
        #expect(configuration.sources.map(\.columns.count) == [9])
        let results = Validation.run(configuration, files: [])
        #expect(results.first?.rejected == 0 && results.first?.rows == 3)
        // A sample reads only the first rows: no NA seen in `count` then.
        #expect(try ConfigInference.infer(files: [path], sample: 2).first?.columns.first { $0.name == "count" }?.nullable == false)
    }

    @Test("without an id column, init asks for --key")
    func keyNeeded() throws {
        let path = try XlsxParts.minimal(rowsXML: Self.sheet([["name", "value"], ["a", "1"]])).write(named: "nokey.xlsx")
        #expect(throws: ConfigInference.InferenceError.self) { try ConfigInference.infer(files: [path]) }
        let sources = try ConfigInference.infer(files: [path], key: "name")
        #expect(sources.first?.key == "name" && sources.first?.columns.first?.type == .text)
    }
}
