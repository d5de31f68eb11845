import ArgumentParser
import Foundation
import GenetikaDataset

/// `genetika-dataset`: writes a seed-shaped dataset of any size (benchmarks, crash tests).
/// A tool of its own so that the daemon does not link the xlsx/zip writer.
@main
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genetika-dataset",
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
