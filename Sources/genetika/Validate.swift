import ArgumentParser
import GenetikaPipeline

/// `genetika validate`: reads every row of every source as the producer would, applies the
/// configured types, and prints each row that would be dead-lettered; sends and writes nothing.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dry run: read every row of the sources (or of FILE.xlsx...), apply the configured types, print each problem with file, sheet, cell, value and what was expected. Sends nothing, writes nothing; exit 1 if any row would be dead-lettered.")

    @OptionGroup var configFile: ConfigFileOption

    @Option(help: "Print at most this many problems per file (all are counted).")
    var limit: Int = 100

    @Argument(help: "Spreadsheets to check instead of the sources' configured files (each matched to a source by file name, else by its sheet and header).")
    var files: [String] = []

    func run() throws {
        let configuration = try configFile.load()
        let results = Validation.run(configuration, files: files)
        if results.isEmpty {
            print("no file to check: the sources have no configured file (inbox sources); name the files to check")
            return
        }
        var failing = 0
        for result in results {
            for problem in result.problems.prefix(limit) { print(problem) }
            if result.problems.count > limit { print("\(result.file): \(result.problems.count - limit) more problems") }
            let verdict = result.unreadable ? "cannot be read to its end" : result.rejected == 0 ? "ok" : "\(result.rejected) would be dead-lettered"
            print("\(result.file)\(result.source.isEmpty ? "" : " -> \(result.source)"): \(result.rows) rows, \(verdict)")
            if result.unreadable || result.rejected > 0 { failing += 1 }
        }
        if failing > 0 { throw ExitCode(1) }
    }
}
