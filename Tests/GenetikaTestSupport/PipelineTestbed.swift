import Foundation
import GenetikaPipeline
import GenetikaStorage
import GenetikaKafka

/// The database a testbed's DB stage writes to.
package enum TestDatabase: String, Sendable, CaseIterable, CustomStringConvertible {
    case sqlite, postgres
    package var description: String { rawValue }
}

/// A broker of its own, a temporary state directory, a database (SQLite, or a throwaway
/// PostgreSQL cluster) and the checked-in configuration pointed at them, for stage tests.
package final class PipelineTestbed: Sendable {
    package let broker: TestBroker
    package let postgres: TestPostgres?
    package let directory: URL
    package let configuration: GenetikaConfiguration

    package static func start(database: TestDatabase = .sqlite,
                             _ change: (inout GenetikaConfiguration) throws -> Void = { _ in }) async throws -> PipelineTestbed {
        ignoreBrokenPipes()
        let broker = try await TestBroker.start()
        let postgres = database == .postgres ? try await TestPostgres.start() : nil
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var configuration = try GenetikaConfiguration.load(path: repositoryRoot.appendingPathComponent("config.json").path, environment: [:])
        configuration.kafka.bootstrapServers = broker.bootstrapServers
        configuration.kafka.properties["heartbeat.interval.ms"] = "500"
        configuration.database.url = "sqlite://" + directory.appendingPathComponent("genetika.db").path
        configuration.stateDirectory = directory.appendingPathComponent("state").path
        // No fixed port: a test that wants /metrics picks a free one (an endpoint on
        // config.json's 9464 would fail while `make run`, or anything, holds that port).
        configuration.observability.port = 0
        for index in configuration.sources.indices {
            configuration.sources[index].file = configuration.sources[index].file.map { configuration.resolve($0) }
        }
        if let postgres { configuration.database.url = try postgres.createDatabase() }
        try change(&configuration)
        let topics = configuration.sources.map(\.topic)
            + [configuration.topics.ack, configuration.topics.deadLetter, configuration.topics.incomplete]
        try await broker.createTopics(topics, partitions: configuration.topics.partitions)
        return PipelineTestbed(broker: broker, postgres: postgres, directory: directory, configuration: configuration)
    }

    private init(broker: TestBroker, postgres: TestPostgres?, directory: URL, configuration: GenetikaConfiguration) {
        self.broker = broker
        self.postgres = postgres
        self.directory = directory
        self.configuration = configuration
    }

    package func stop() {
        broker.stop()
        postgres?.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Every message of `topic` as it stands now.
    package func messages(_ topic: String) throws -> [KafkaMessage] {
        var messages: [KafkaMessage] = []
        try TopicSnapshot(configuration: KafkaClientConfiguration(configuration.kafka)).read([topic]) { messages.append($0) }
        return messages
    }

    /// Runs a query on the DB stage's database (SQLite or PostgreSQL); values as text.
    package func rows(_ sql: String) throws -> [[String?]] {
        if configuration.database.url.hasPrefix("sqlite://") {
            let connection = try SQLiteConnection(path: String(configuration.database.url.dropFirst("sqlite://".count)))
            defer { connection.close() }
            return try connection.query(sql).map { row in
                row.map { value -> String? in
                    switch value {
                    case .null: nil
                    case .integer(let v): String(v)
                    case .real(let v): v.description
                    case .text(let v): v
                    }
                }
            }
        }
        let connection = try PostgresConnection(url: configuration.database.url)
        defer { connection.close() }
        return try connection.execute(sql)
    }

    package func count(_ table: String) throws -> Int {
        Int(try rows("SELECT count(*) FROM \(table)").first?.first.flatMap { $0 } ?? "") ?? -1
    }

    /// Produces `value` to `topic` with `key`, waiting for delivery.
    /// One event per key to `topic`, through one producer.
    package func produce(_ topic: String, keys: [String], _ value: String) async throws {
        let producer = try KafkaProducer(configuration: KafkaClientConfiguration(configuration.kafka)
            .with(defaults: ["partitioner": "murmur2_random"]), name: "test-producer")
        defer { producer.close() }
        let reports = try await producer.sendAll(keys.map { OutgoingMessage(topic: topic, key: Array($0.utf8), value: Array(value.utf8)) })
        if let error = reports.compactMap(\.error).first { throw error }
    }

    package func produce(_ topic: String, key: String?, _ value: String, partition: Int32? = nil) async throws {
        let producer = try KafkaProducer(configuration: KafkaClientConfiguration(configuration.kafka)
            .with(defaults: ["partitioner": "murmur2_random"]), name: "test-producer")
        defer { producer.close() }
        try await producer.send(OutgoingMessage(topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: Array(value.utf8)))
    }
}

/// Waits until `condition` holds, checking every 100 ms; throws after `timeout`.
package func eventually(_ what: String, timeout: Duration = .seconds(60), _ condition: () throws -> Bool) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw TestSetupError("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(100))
    }
}
