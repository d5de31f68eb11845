import Foundation
import GenetikaTestSupport
import Testing
@testable import GenetikaPipeline

/// `genetika validate`: every bad cell of a file with known bad cells is found, at its cell,
/// and none in the seed files.
@Suite("Validation (dry run)")
struct ValidationTests {
    static let configuration = try! GenetikaConfiguration.load(path: repositoryRoot.appendingPathComponent("config.json").path, environment: [:])

    static func cell(_ ref: String, _ value: String) -> String {
        if Double(value) != nil { return "<c r=\"\(ref)\"><v>\(value)</v></c>" }
        return "<c r=\"\(ref)\" t=\"inlineStr\"><is><t>\(value)</t></is></c>"
    }

    static func row(_ number: Int, _ values: [String?]) -> String {
        let columns = ["A", "B", "C", "D", "E", "F", "G", "H"]
        return "<row r=\"\(number)\">" + zip(columns, values).compactMap { column, value in value.map { cell("\(column)\(number)", $0) } }.joined() + "</row>"
    }

    @Test("each bad cell is reported with its reference, value and expected type; the valid rows are not")
    func badCells() throws {
        let header = ["id", "age", "sex", "weight_kg", "bmi", "diagnosis", "phq9", "enrolled_on"]
        let rows = [
            Self.row(1, header),
            Self.row(2, ["1", "34", "F", "61.5", "22.1", "MDD", "12", "2024-01-05"]),
            Self.row(3, ["2", "abc", "M", "70", "NA", "GAD", "8", "2024-01-06"]),           // B3: text for an integer
            Self.row(4, [nil, "50", "F", "80", "24", "MDD", "3", "2024-01-07"]),            // A4: no id
            Self.row(5, ["4", "41", "M", "75", "23", "MDD", "5", "2024-13-45"]),            // H5: not a date
            Self.row(6, ["5", "39", "F", "66", "21", "GAD", "2.5", "2024-01-09"]),          // G6: 2.5 for an integer
            Self.row(7, [nil, nil, nil, nil, nil, nil, nil, nil]),                          // empty: skipped, as the producer does
            Self.row(8, ["6", "44", "M", "NA", nil, "MDD", "7", "2024-02-01"]),
        ]
        let path = try XlsxParts.minimal(rowsXML: rows.joined(), sheetName: "intake").write(named: "intake-with-bad-cells.xlsx")
        let results = Validation.run(Self.configuration, files: [path])
        #expect(results.count == 1)
        let result = try #require(results.first)
        #expect(result.source == "topic1")
        #expect(!result.unreadable)
        #expect(result.rows == 6)
        #expect(result.rejected == 4)
        #expect(result.problems.map(\.place) == ["B3", "A4", "H5", "G6"])
        #expect(result.problems[0].reason == "column age: expected integer, found the text \"abc\"")
        #expect(result.problems[1].reason == "column id: a value is required")
        #expect(result.problems[2].reason.contains("2024-13-45"))
        #expect(result.problems[3].reason.contains("2.5"))
        #expect(result.problems[0].description.hasPrefix("\(path) [intake] B3: column age"))
    }

    @Test("the seed files have no problem; a file no source matches is reported, not skipped")
    func seedFiles() throws {
        let results = Validation.run(Self.configuration, files: [])
        #expect(results.map(\.rows) == [50, 50, 50])
        #expect(results.allSatisfy { $0.problems.isEmpty && !$0.unreadable })
        let other = try XlsxParts.minimal(rowsXML: Self.row(1, ["x", "y"]), sheetName: "other").write(named: "other.xlsx")
        let unmatched = Validation.run(Self.configuration, files: [other])
        #expect(unmatched.first?.unreadable == true)
        #expect(unmatched.first?.problems.first?.reason.contains("no source") == true)
    }
}
