import ArgumentParser
import Foundation
import Logging
import GenetikaPipeline
import GenetikaKafka
import GenetikaSupport

@main
struct Genetika: AsyncParsableCommand {
    /// ArgumentParser's own entry point, with every error it prints passed through `Secrets.redact`.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            let message = fullMessage(for: error)
            if !message.isEmpty {
                FileHandle.standardError.write(Data((Secrets.redact(message) + "\n").utf8))
            }
            Foundation.exit(exitCode(for: error).rawValue)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "genetika",
        abstract: "Streams spreadsheet rows through Kafka into a database and acknowledges each event once all of its parts have arrived.",
        version: GenetikaVersion.string,
        subcommands: [Run.self, Report.self, Init.self, CheckConfig.self, Validate.self, DeadLetterCommand.self, Inspect.self, Files.self, Version.self])
}

/// `genetika version`: Genetika's version and the librdkafka linked into this binary.
struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print Genetika's version and the linked librdkafka's.")

    func run() {
        print("genetika \(GenetikaVersion.string)")
        print("librdkafka \(Librdkafka.version)")
    }
}

/// `genetika check-config`: validates a configuration file and prints a summary.
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file and print what it describes.")

    @OptionGroup var configFile: ConfigFileOption

    func run() throws {
        let configuration = try configFile.load()
        print("\(configFile.path): valid")
        print("  kafka: \(configuration.kafka.bootstrapServers)")
        for (key, value) in configuration.kafka.properties.sorted(by: { $0.key < $1.key }) {
            print("    \(key) = \(Secrets.isSecretProperty(key) ? "***" : Secrets.redact(value))")
        }
        for source in configuration.sources {
            let from = [source.file.map { configuration.resolve($0) },
                        source.inbox.map { "inbox \(configuration.resolve($0))/\(source.pattern)" }].compactMap { $0 }
            print("  \(from.joined(separator: " + ")) -> topic \(source.topic) -> table \(source.table) (\(source.columns.count) columns, key \(source.key))")
        }
        print("  acks: \(configuration.topics.ack), dead letters: \(configuration.topics.deadLetter), \(configuration.topics.partitions) partitions")
        print("  database: \(Secrets.redact(configuration.database.url))")
        print("  state: \(configuration.resolve(configuration.stateDirectory))")
    }
}

/// A log handler that passes each line through `Secrets.redact` (message and metadata).
struct RedactingLogHandler: LogHandler {
    var inner: StreamLogHandler

    init(_ inner: StreamLogHandler) { self.inner = inner }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: Secrets.redact(event.message.description))
        event.metadata = event.metadata?.mapValues { .string(Secrets.redact($0.description)) }
        inner.log(event: event)
    }
}

/// Sends log lines at `level` and above to standard error.
func bootstrapLogging(level: Logger.Level) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return RedactingLogHandler(handler)
    }
}

/// `--config FILE` (`-c`), the option every command that reads a configuration shares.
struct ConfigFileOption: ParsableArguments {
    @Option(name: [.customShort("c"), .customLong("config")], help: "The configuration file.")
    var path: String = "config.json"

    /// Loads the file; an invalid one prints every problem with its key path to standard error
    /// and exits with status 2.
    func load() throws -> GenetikaConfiguration {
        do {
            return try GenetikaConfiguration.load(path: path)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
    }
}
