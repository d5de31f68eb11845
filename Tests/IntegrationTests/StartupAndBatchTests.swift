import GenetikaTestSupport
import Logging
import Testing
@testable import GenetikaPipeline
@testable import GenetikaKafka
@testable import GenetikaStorage
@testable import GenetikaSupport

@Suite("Start-up checks and batches against a real broker", .serialized)
struct StartupAndBatchTests {
    let logger = Logger(label: "test")

    @Test("one batch holding the same id twice stores the later event (PostgreSQL reduces it, SQLite upserts twice)",
          arguments: TestDatabase.allCases)
    func sameIdTwiceInABatch(database: TestDatabase) async throws {
        let bed = try await PipelineTestbed.start(database: database)
        defer { bed.stop() }
        // All three under one key, so in one partition, in order, before the stage starts: one fetch
        // brings them, so they land in the stage's first batch. (With id 2 under its own key it can
        // land in another partition, whose first fetch may answer later: CI once saw two batches.)
        // The DB stage maps by the value's id, not the key.
        try await bed.produce("topic1", key: "1", #"{"id":1,"age":30,"diagnosis":"first"}"#)
        try await bed.produce("topic1", key: "1", #"{"id":1,"age":31,"diagnosis":"second"}"#)
        try await bed.produce("topic1", key: "1", #"{"id":2,"age":50}"#)
        let stop = StopSignal()
        let counters = PipelineCounters()
        let batches = Counter()
        let stage = DBStage(context: StageContext(configuration: bed.configuration, counters: counters, progress: PipelineProgress(), stop: stop, logger: logger)) { _ in
            batches.add()
        }
        let run = Task { try await stage.run() }
        try await eventually("3 events consumed") { counters.eventsConsumed.value == 3 }
        stop.request()
        try await run.value
        #expect(batches.value == 1, "the three events came in one batch")
        #expect(try bed.count("data1") == 2)
        #expect(try bed.rows("SELECT age, diagnosis FROM data1 WHERE id = 1") == [["31", "second"]])
        #expect(counters.deadLettered.value == 0)
    }

    @Test("a topic with another partition count than topics.partitions stops the start-up, naming topic and counts")
    func partitionMismatch() async throws {
        let bed = try await PipelineTestbed.start { $0.topics.partitions = 4 }  // the testbed's topics have 4…
        defer { bed.stop() }
        var configuration = bed.configuration
        configuration.topics.partitions = 3  // …the configuration says 3
        let pipeline = Pipeline(configuration: configuration, stages: [.db], logger: logger)
        do {
            try await pipeline.checkStartup()
            Issue.record("a partition-count mismatch was accepted")
        } catch let error as Pipeline.StartupError {
            #expect(error.what == "topics")
            #expect(error.cause.contains("has 4 partitions, the configuration expects 3"), "\(error)")
        }
    }

    @Test("with topics.create false a missing topic stops the start-up and is named; with true it is created")
    func missingTopicNotCreated() async throws {
        let bed = try await PipelineTestbed.start()
        defer { bed.stop() }
        var configuration = bed.configuration
        configuration.topics.deadLetter = "dead-letter-elsewhere"
        configuration.topics.create = false
        do {
            try await Pipeline(configuration: configuration, stages: [.db], logger: logger).checkStartup()
            Issue.record("a missing topic was accepted with topics.create false")
        } catch let error as Pipeline.StartupError {
            #expect(error.cause.contains("dead-letter-elsewhere") && error.cause.contains("topics.create is false"), "\(error)")
        }
        configuration.topics.create = true
        try await Pipeline(configuration: configuration, stages: [.db], logger: logger).checkStartup()
        let admin = try KafkaAdmin(configuration: KafkaClientConfiguration(configuration.kafka))
        defer { admin.close() }
        #expect(try admin.metadata().topics["dead-letter-elsewhere"] == 3)
    }
}
