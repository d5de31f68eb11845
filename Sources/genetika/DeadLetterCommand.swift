import ArgumentParser
import Foundation
import Logging
import GenetikaJSON
import GenetikaKafka
import GenetikaPipeline

/// `genetika dead-letters`: lists the dead-letter topic; `--replay` sends again those that the
/// current configuration accepts.
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "List the dead letters (file, row, stage, reason, when), read from the dead-letter topic; --replay checks each against the current configuration and sends those that now pass to their topic (each once: replays are recorded in the state directory).")

    @OptionGroup var configFile: ConfigFileOption

    @Flag(help: "Print the dead letters (or the replay's outcomes) as JSON.")
    var json = false

    @Flag(help: "Send again the dead letters that pass the current configuration.")
    var replay = false

    func run() async throws {
        bootstrapLogging(level: .warning)
        let configuration = try configFile.load()
        let state = configuration.resolve(configuration.stateDirectory)
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let ledger = state + "/dead-letters.db"
        let entries = try DeadLetters.list(configuration, ledgerPath: ledger)
        if replay {
            try await sendAgain(entries, configuration: configuration, ledger: ledger)
        } else {
            list(entries, topic: configuration.topics.deadLetter)
        }
    }

    private func list(_ entries: [DeadLetters.Entry], topic: String) {
        if json {
            print(JSONWriter.string(.array(entries.map { .object(JSONObject(Self.fields($0))) })))
        } else if entries.isEmpty {
            print("no dead letters in \(topic)")
        } else {
            for entry in entries {
                print("\(entry.place)  \(Self.when(entry.timestampMs))  \(entry.stage)  \(Self.origin(entry) ?? "-")  -> \(entry.topic ?? "?")  \(entry.reason)\(entry.replayed ? "  (replayed)" : "")")
            }
            print("\(entries.count) dead letters, \(entries.filter(\.replayed).count) replayed")
        }
    }

    private func sendAgain(_ entries: [DeadLetters.Entry], configuration: GenetikaConfiguration, ledger: String) async throws {
        let logger = Logger(label: "genetika.dead-letters")
        let producer = try KafkaProducer(configuration: KafkaClientConfiguration(configuration.kafka), name: "replay", logger: logger)
        defer { producer.close() }
        let outcomes = try await DeadLetters.replay(entries, configuration: configuration, ledgerPath: ledger, producer: producer)
        var sent = 0, failing = 0, before = 0
        var lines: [JSONValue] = []
        for (entry, outcome) in outcomes {
            let origin = Self.origin(entry) ?? ""
            switch outcome {
            case .sent(let topic):
                sent += 1
                if !json { print("sent     \(entry.place)  \(origin) -> \(topic)") }
                lines.append(.object(JSONObject(Self.fields(entry) + [("outcome", .string("sent"))])))
            case .stillFailing(let reason):
                failing += 1
                if !json { print("failing  \(entry.place)  \(origin): \(reason)") }
                lines.append(.object(JSONObject(Self.fields(entry) + [("outcome", .string("still failing")), ("new_reason", .string(reason))])))
            case .alreadyReplayed:
                before += 1
                lines.append(.object(JSONObject(Self.fields(entry) + [("outcome", .string("replayed before"))])))
            }
        }
        if json { print(JSONWriter.string(.array(lines))) } else {
            print("replay: \(sent) sent, \(failing) still failing, \(before) replayed before")
        }
    }

    /// "file row N" where the dead letter came from a spreadsheet row; nil when it names neither.
    private static func origin(_ entry: DeadLetters.Entry) -> String? {
        let origin = [entry.file, entry.row.map { "row \($0)" }].compactMap { $0 }.joined(separator: " ")
        return origin.isEmpty ? nil : origin
    }

    private static func when(_ ms: Int64?) -> String {
        guard let ms else { return "?" }
        return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    private static func fields(_ entry: DeadLetters.Entry) -> [(String, JSONValue)] {
        [("place", .string(entry.place)), ("stage", .string(entry.stage)), ("file", entry.file.map(JSONValue.string) ?? .null),
         ("row", entry.row.map { .int(Int64($0)) } ?? .null), ("topic", entry.topic.map(JSONValue.string) ?? .null),
         ("reason", .string(entry.reason)), ("when", .string(when(entry.timestampMs))), ("replayed", .bool(entry.replayed))]
    }
}
