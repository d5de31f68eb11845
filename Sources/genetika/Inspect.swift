import ArgumentParser
import Foundation
import GenetikaXlsx

/// `genetika inspect`: reads a spreadsheet with Genetika's reader and shows or counts its rows.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read an xlsx file with Genetika's reader: list its sheets and show (or count) rows.")

    @Argument(help: "The .xlsx file.")
    var file: String

    @Option(help: "Sheet name (default: the first sheet).")
    var sheet: String?

    @Option(help: "How many rows to print.")
    var rows: Int = 10

    @Flag(help: "Read every row and print the count, time and rows/s instead of rows.")
    var count = false

    func run() throws {
        do {
            try inspect()
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    private func inspect() throws(XlsxError) {
        let start = ContinuousClock.now
        let workbook = try XlsxWorkbook(path: file)
        let reader = try workbook.rows(sheet: sheet)
        if count {
            var n = 0
            var cells = 0
            while let row = try reader.next() {
                n += 1
                cells += row.cells.count
            }
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("rows=\(n) cells=\(cells) seconds=\(String(format: "%.3f", seconds)) rows_per_second=\(Int(Double(n) / max(seconds, 1e-9)))")
            return
        }
        print("sheets: \(workbook.sheets.map(\.name).joined(separator: ", "))\(workbook.date1904 ? " (1904 dates)" : "")")
        var shown = 0
        while shown < rows, let row = try reader.next() {
            print("\(row.number): " + row.cells.map { $0.description }.joined(separator: " | "))
            shown += 1
        }
    }
}
