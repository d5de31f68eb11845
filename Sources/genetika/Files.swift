import ArgumentParser
import Foundation
import GenetikaJSON
import GenetikaPipeline
import GenetikaStorage

/// `genetika files`: the inbox files' records, newest first.
struct Files: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the inbox files' records (newest first): source, status, rows sent and dead-lettered, times, where the file went, and why one failed.")

    @OptionGroup var configFile: ConfigFileOption

    @Flag(help: "Print the records as a JSON array.")
    var json = false

    @Option(help: "Show at most this many records.")
    var limit: Int?

    func run() throws {
        let configuration = try configFile.load()
        let path = ProducerStage.fileRecordsPath(configuration)
        guard FileManager.default.fileExists(atPath: path) else {
            if json { print("[]") } else { print("no inbox file taken yet (no \(path))") }
            return
        }
        let store = try FileRecordStore(path: path)
        defer { store.close() }
        let records = try store.all(limit: limit)
        if json {
            let array: [JSONValue] = records.map { record in
                func int(_ value: Int64?) -> JSONValue { value.map(JSONValue.int) ?? .null }
                return .object(JSONObject([
                    ("id", .int(record.id)), ("source", .string(record.source)), ("path", .string(record.path)),
                    ("moved_to", record.movedTo.map(JSONValue.string) ?? .null), ("size", .int(record.size)),
                    ("sha256", .string(record.sha256)), ("status", .string(record.status.rawValue)),
                    ("rows_sent", .int(Int64(record.rowsSent))), ("rows_dead_lettered", .int(Int64(record.rowsDeadLettered))),
                    ("queued_ms", .int(record.queuedMs)), ("started_ms", int(record.startedMs)), ("finished_ms", int(record.finishedMs)),
                    ("note", record.note.map(JSONValue.string) ?? .null),
                ]))
            }
            print(String(decoding: JSONWriter.serialize(.array(array)), as: UTF8.self))
            return
        }
        if records.isEmpty { print("no inbox file taken yet") }
        let format = ISO8601DateFormatter()
        for record in records {
            let when = format.string(from: Date(timeIntervalSince1970: Double(record.finishedMs ?? record.startedMs ?? record.queuedMs) / 1000))
            let name = ((record.movedTo ?? record.path) as NSString).lastPathComponent
            print("#\(record.id)  \(when)  \(record.source)  \(record.status.rawValue)  \(name)  rows \(record.rowsSent) (dead-lettered \(record.rowsDeadLettered))  \(record.size) bytes  sha256 \(record.sha256.prefix(12))…")
            if let note = record.note { print("    \(note)") }
        }
    }
}
