import Foundation
import GenetikaTestSupport
import GenetikaJSON
import Testing
@testable import GenetikaXlsx
@testable import GenetikaDataset

/// The spreadsheets in Fixtures/ were written by openpyxl and XlsxWriter; each
/// NAME.expected.json is what openpyxl reads from NAME.xlsx. The reader must agree cell for cell.
@Suite("xlsx reader agrees with openpyxl on files other tools wrote")
struct XlsxFixtureTests {
    static let fixtures = repositoryRoot.appendingPathComponent("Fixtures")
    static let names: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? [])
        .filter { $0.hasSuffix(".expected.json") }
        .map { String($0.dropLast(".expected.json".count)) }
        .sorted()

    @Test("the fixture set is the one ../shared provides")
    func fixtureSet() {
        #expect(Self.names == ["edge_sparse_openpyxl", "edge_types_xlsxwriter", "sim_file1", "sim_file2", "sim_file3"])
    }

    @Test("cell for cell", arguments: names)
    func agreesWithOpenpyxl(name: String) throws {
        let expectedData = try Data(contentsOf: Self.fixtures.appendingPathComponent("\(name).expected.json"))
        let expected = try JSONParser.parse(Array(expectedData))
        guard case .string(let sheetName)? = expected["sheet"], case .array(let expectedRows)? = expected["rows"] else {
            Issue.record("\(name).expected.json has no sheet/rows")
            return
        }
        let workbook = try XlsxWorkbook(path: Self.fixtures.appendingPathComponent("\(name).xlsx").path)
        #expect(workbook.sheets.first?.name == sheetName)
        let rows = try workbook.rows().readAll()
        let grid = Self.grid(rows)
        #expect(grid.count == expectedRows.count, "row count")
        for (r, expectedRow) in expectedRows.enumerated() where r < grid.count {
            guard case .array(let expectedCells) = expectedRow else {
                Issue.record("\(name).expected.json row \(r + 1) is not an array")
                continue
            }
            let width = max(expectedCells.count, grid[r].count)
            for c in 0..<width {
                let actual = c < grid[r].count ? grid[r][c] : .empty
                let wanted = c < expectedCells.count ? expectedCells[c] : .null
                #expect(Self.matches(actual, wanted), "\(name) row \(r + 1) column \(columnName(c)): read \(actual), openpyxl \(wanted)")
            }
        }
    }

    /// openpyxl's view: every row from the first to the last, as wide as the widest.
    static func grid(_ rows: [XlsxRow]) -> [[CellValue]] {
        guard let first = rows.first?.number, let last = rows.last?.number else { return [] }
        let width = rows.map(\.cells.count).max() ?? 0
        var grid = Array(repeating: Array(repeating: CellValue.empty, count: width), count: last - first + 1)
        for row in rows {
            for (c, cell) in row.cells.enumerated() { grid[row.number - first][c] = cell }
        }
        return grid
    }

    static func matches(_ actual: CellValue, _ expected: JSONValue) -> Bool {
        switch (actual, expected) {
        case (.empty, .null): return true
        case (.integer(let a), .int(let b)): return a == b
        case (.number(let a), .double(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.error(let a), .string(let b)): return a == b
        case (.boolean(let a), .bool(let b)): return a == b
        case (.dateTime(let a), .object(let object)):
            if case .string(let date)? = object["date"] { return !a.hasTime && a.isoDate == date }
            if case .string(let datetime)? = object["datetime"] { return a.isoDateTime == datetime }
            return false
        default: return false
        }
    }
}
