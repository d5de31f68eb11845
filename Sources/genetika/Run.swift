import ArgumentParser
import Foundation
import GenetikaCore
import Logging

/// `genetika run`: runs the pipeline's stages until stopped.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the pipeline's stages (producer, db, acker) until stopped.")

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "config.json"

    func run() async throws {
        let configuration: GenetikaConfiguration
        do {
            configuration = try GenetikaConfiguration.load(path: config)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
        let admin = try KafkaAdmin(configuration: KafkaClientConfiguration(configuration.kafka))
        let metadata = try await admin.waitUntilReachable(timeout: .milliseconds(configuration.kafka.connectTimeoutMs))
        print("connected to \(metadata.brokers.joined(separator: ", ")); the stages are not implemented yet")
        throw ExitCode(3)
    }
}
