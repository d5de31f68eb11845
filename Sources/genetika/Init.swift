import ArgumentParser
import Foundation
import GenetikaPipeline
import GenetikaStorage

/// `genetika init`: writes a configuration from spreadsheets (columns, types, nullability).
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a configuration from spreadsheets: one source per file, topic and table named after the file, each column's type (integer, real, boolean, date, datetime, text) inferred from its cells and nullable where an empty or NA cell was seen.")

    @Argument(help: "The spreadsheets.")
    var files: [String]

    @Option(name: .shortAndLong, help: "Where to write the configuration.")
    var out: String = "config.json"

    @Option(help: "The key column's header (default: id).")
    var key: String?

    @Option(help: "The sheet to read in every file (default: each file's first).")
    var sheet: String?

    @Option(help: "Read only this many data rows of each file (default: all, streaming).")
    var sample: Int?

    @Option(help: "kafka.bootstrapServers of the written configuration.")
    var bootstrapServers: String = "127.0.0.1:9092"

    @Option(help: "database.url of the written configuration.")
    var database: String = "sqlite://state/genetika.db"

    @Flag(help: "Replace the output file if it exists.")
    var force = false

    func run() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one spreadsheet") }
        if FileManager.default.fileExists(atPath: out) && !force {
            throw ValidationError("\(out) exists; choose another --out or pass --force to replace it")
        }
        let outDirectory = URL(fileURLWithPath: out).deletingLastPathComponent().standardizedFileURL.path
        let sources = try ConfigInference.infer(files: files.map { URL(fileURLWithPath: $0).standardizedFileURL.path },
                                                sheet: sheet, key: key, sample: sample)
        let relative = sources.map { source -> ConfigInference.Source in
            var source = source
            if source.file.hasPrefix(outDirectory + "/") { source.file = String(source.file.dropFirst(outDirectory.count + 1)) }
            return source
        }
        let text = ConfigInference.configuration(relative, bootstrapServers: bootstrapServers, database: database)
        try Data(text.utf8).write(to: URL(fileURLWithPath: out))
        for source in sources {
            let columns = source.columns.map { "\($0.name) \($0.type.rawValue)\($0.nullable ? "?" : "")" }.joined(separator: ", ")
            print("\(source.file) [\(source.sheet)], \(source.rows) rows -> topic \(source.topic), table \(source.table), key \(source.key): \(columns)")
        }
        print("wrote \(out); check it with: genetika check-config --config \(out), then genetika validate --config \(out)")
    }
}
