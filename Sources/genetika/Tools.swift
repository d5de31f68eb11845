import ArgumentParser
import Foundation
import GenetikaCore

/// `genetika generate`: writes a seed-shaped dataset of any size.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write sim_file1..3.xlsx with the seed dataset's sheets and columns for ids 1...N.")

    @Option(help: "Rows (ids) per file.")
    var rows: Int = 50

    @Option(help: "Output directory (created if missing).")
    var out: String = "out/dataset"

    @Option(help: "Random seed; the same seed gives the same files.")
    var seed: UInt64 = 42

    @Option(help: "Which files to write, e.g. 1 or 1,2,3.")
    var files: String = "1,2,3"

    func run() throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let start = ContinuousClock.now
        let generator = DatasetGenerator(rows: rows, seed: seed)
        var paths: [String] = []
        for file in files.split(separator: ",") {
            guard let index = Int(file.trimmingCharacters(in: .whitespaces)), (1...3).contains(index) else {
                throw ValidationError("--files takes numbers 1, 2 and 3, e.g. 1,3")
            }
            let path = out + "/" + DatasetGenerator.fileNames[index - 1]
            switch index {
            case 1: try generator.writeIntake(path)
            case 2: try generator.writeGenotype(path)
            default: try generator.writeOutcome(path)
            }
            paths.append(path)
        }
        let elapsed = ContinuousClock.now - start
        for path in paths { print(path) }
        print("\(rows) rows per file in \(elapsed.formatted(.units(allowed: [.seconds, .milliseconds])))")
    }
}

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
