import Foundation
import GenetikaTestSupport
import Logging
import Testing
@testable import GenetikaDataset
@testable import GenetikaPipeline
@testable import GenetikaStorage
@testable import GenetikaSupport
@testable import GenetikaJSON
@testable import GenetikaXlsx
import GenetikaKafka

@Suite("Stages against a real broker", .serialized)
struct StageTests {
    let logger = Logger(label: "test")

    @Test("producer alone: every row as a keyed JSON event with file and row headers; a bad row goes to the dead-letter topic")
    func producerAlone() async throws {
        // sim_file1 with one extra row whose id is not an integer.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-producer-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let bad = directory.appendingPathComponent("intake.xlsx").path
        let writer = try XlsxWriter(path: bad, sheetName: "intake")
        let original = try XlsxWorkbook(path: repositoryRoot.appendingPathComponent("Fixtures/sim_file1.xlsx").path).rows().readAll()
        try writer.writeSheet { sheet in
            for row in original { try sheet.write(row.cells) }
            try sheet.write([.string("x-51"), .integer(40), .string("F"), .number(60), .number(21), .string("GAD"), .integer(2), .empty])
        }
        try writer.close()
        let bed = try await PipelineTestbed.start { $0.sources[0].file = bad }
        defer { bed.stop() }

        let counters = PipelineCounters()
        let progress = PipelineProgress()
        let before = Int64(Date().timeIntervalSince1970 * 1000)
        try await ProducerStage(context: StageContext(configuration: bed.configuration, counters: counters, progress: progress, stop: StopSignal(), logger: logger)).run()
        #expect(counters.eventsProduced.value == 150)
        #expect(counters.rowsRejected.value == 1)
        #expect(counters.deliveryFailures.value == 0)
        #expect(await progress.producerFinished)

        for (index, source) in bed.configuration.sources.enumerated() {
            let messages = try bed.messages(source.topic)
            #expect(messages.count == 50, "\(source.topic)")
            #expect(Set(messages.compactMap(\.keyText)) == Set((1...50).map(String.init)))
            for message in messages {
                let values = try EventDecoder(source: source).decode(message.value)
                #expect(values[0] == .integer(Int64(message.keyText!)!))
                #expect(message.header(GenetikaHeader.sourceFile)?.text == (index == 0 ? "intake.xlsx" : "sim_file\(index + 1).xlsx"))
                #expect(Int(message.header(GenetikaHeader.sourceRow)?.text ?? "") ?? 0 >= 2)
                #expect((message.timestamp ?? 0) >= before)
            }
        }
        let dead = try bed.messages(bed.configuration.topics.deadLetter)
        #expect(dead.count == 1)
        #expect(dead.first?.header(GenetikaHeader.sourceRow)?.text == "52")
        #expect(dead.first?.header(GenetikaHeader.sourceFile)?.text == "intake.xlsx")
        #expect(dead.first?.header(GenetikaHeader.error)?.text == "column id: expected integer, found the text \"x-51\"")
    }

    @Test("DB stage alone: valid events become rows, malformed ones go to the dead-letter topic with their bytes and offset; a restart resumes from the stored offsets",
          arguments: TestDatabase.allCases)
    func dbStageAlone(database: TestDatabase) async throws {
        let bed = try await PipelineTestbed.start(database: database)
        defer { bed.stop() }
        try await bed.produce("topic1", key: "1", #"{"id":1,"age":38,"sex":"M","weight_kg":78.6,"bmi":null,"diagnosis":"MDD","phq9":11,"enrolled_on":"2024-11-01"}"#)
        try await bed.produce("topic1", key: "2", #"{"id":2,"age":40}"#)
        try await bed.produce("topic1", key: "3", "not json", partition: 1)
        try await bed.produce("topic2", key: "4", #"{"id":"four"}"#)
        try await bed.produce("topic3", key: "5", #"{"id":5,"remission":true,"notes":"ok"}"#)
        try await bed.produce("topic3", key: "7", #"{"id":7,"notes":"nul \u0000 inside"}"#)

        let stop = StopSignal()
        let counters = PipelineCounters()
        let stage = DBStage(context: StageContext(configuration: bed.configuration, counters: counters, progress: PipelineProgress(), stop: stop, logger: logger))
        let run = Task { try await stage.run() }
        try await eventually("6 events consumed") { counters.eventsConsumed.value == 6 }
        stop.request()
        try await run.value

        #expect(try bed.count("data1") == 2)
        #expect(try bed.count("data2") == 0)
        #expect(try bed.count("data3") == 1)
        #expect(try bed.rows("SELECT age, bmi, weight_kg, CAST(enrolled_on AS TEXT) FROM data1 WHERE id = 1") == [["38", nil, "78.6", "2024-11-01"]])
        #expect(try bed.rows("SELECT CAST(remission AS INTEGER), notes FROM data3 WHERE id = 5") == [["1", "ok"]])
        let dead = try bed.messages("dead-letter").sorted { ($0.header(GenetikaHeader.sourceTopic)?.text ?? "") < ($1.header(GenetikaHeader.sourceTopic)?.text ?? "") }
        #expect(dead.count == 3)
        #expect(dead.map { String(decoding: $0.value, as: UTF8.self) } == ["not json", #"{"id":"four"}"#, #"{"id":7,"notes":"nul \u0000 inside"}"#])
        #expect(dead.last?.header(GenetikaHeader.error)?.text == "column notes: text contains a NUL character")
        #expect(dead[0].header(GenetikaHeader.sourcePartition)?.text == "1")
        #expect(dead[0].header(GenetikaHeader.sourceOffset)?.text == "0")
        #expect(dead[0].header(GenetikaHeader.error)?.text?.hasPrefix("not JSON") == true)
        #expect(dead[1].header(GenetikaHeader.error)?.text == "column id: expected integer, found a string")

        // New events (one updating id 1): a fresh stage over the same database reads only those.
        try await bed.produce("topic1", key: "1", #"{"id":1,"age":39}"#)
        try await bed.produce("topic1", key: "6", #"{"id":6}"#)
        let again = PipelineCounters()
        let stop2 = StopSignal()
        let stage2 = DBStage(context: StageContext(configuration: bed.configuration, counters: again, progress: PipelineProgress(), stop: stop2, logger: logger))
        let run2 = Task { try await stage2.run() }
        try await eventually("2 new events consumed") { again.eventsConsumed.value >= 2 }
        try await Task.sleep(for: .milliseconds(500))
        stop2.request()
        try await run2.value
        #expect(again.eventsConsumed.value == 2, "only the new events are read after a restart")
        #expect(try bed.count("data1") == 3)
        #expect(try bed.rows("SELECT age, diagnosis FROM data1 WHERE id = 1") == [["39", nil]], "upsert by id: the latest event wins")
    }

    @Test("acker alone: one ack per id once it reached all three topics; none for incomplete ids; none twice across a restart")
    func ackerAlone() async throws {
        let bed = try await PipelineTestbed.start()
        defer { bed.stop() }
        for id in 1...10 {
            try await bed.produce("topic1", key: "\(id)", "{}")
            try await bed.produce("topic2", key: "\(id)", "{}")
            if id <= 5 { try await bed.produce("topic3", key: "\(id)", "{}") }
        }
        try await runAcker(bed, logger: logger) { try bed.messages("ack").count >= 5 }
        var acks = try bed.messages("ack")
        #expect(Set(acks.compactMap(\.keyText)) == Set((1...5).map(String.init)))
        #expect(acks.count == 5)
        for ack in acks {
            let json = try JSONParser.parse(ack.value)
            guard case .int(let latest)? = json["latest_event_ms"], case .int(let ackTime)? = json["ack_ms"] else {
                Issue.record("ack without times: \(String(decoding: ack.value, as: UTF8.self))")
                continue
            }
            #expect(json["id"] == .int(Int64(ack.keyText!)!))
            #expect(ackTime >= latest)
            #expect(ack.timestamp == ackTime)
        }

        // The rest of ids 6...10 arrive, and ids 1...3 again (a producer re-run): only 6...10 get acks.
        for id in 6...10 { try await bed.produce("topic3", key: "\(id)", "{}") }
        for id in 1...3 { try await bed.produce("topic1", key: "\(id)", "{}") }
        try await runAcker(bed, logger: logger) { try bed.messages("ack").count >= 10 }
        acks = try bed.messages("ack")
        #expect(acks.count == 10)
        #expect(Set(acks.compactMap(\.keyText)) == Set((1...10).map(String.init)))
    }

    @Test("acker killed after its acks went out but before it recorded them: the restarted acker finds them and sends none twice")
    func ackerCrashWindow() async throws {
        let bed = try await PipelineTestbed.start()
        defer { bed.stop() }
        for id in 1...30 {
            for topic in ["topic1", "topic2", "topic3"] { try await bed.produce(topic, key: "\(id)", "{}") }
        }
        let crashes = Counter()
        let counters = PipelineCounters()
        let stop = StopSignal()
        let progress = PipelineProgress()
        let supervisor = Supervisor(
            stages: [StageSpec(name: "acker") {
                AckerStage(context: StageContext(configuration: bed.configuration, counters: counters, progress: progress, stop: stop, logger: logger)) { _ in
                    // Crash once, after the first batch's acks were delivered.
                    if crashes.value == 0 {
                        crashes.add()
                        throw TestSetupError("injected crash after acks were sent")
                    }
                }
            }],
            policy: RestartPolicy(initialBackoff: .milliseconds(50), maxBackoff: .seconds(1), maxRestarts: 3, window: .seconds(60)),
            stop: stop, counters: counters, logger: logger)
        let run = Task { try await supervisor.run() }
        // The restarted acker can only record the crashed batch's acks by reading them back.
        try await eventually("30 ids recorded as acked") {
            crashes.value == 1 && (try? ackedIds(inStateAt: AckerStage.statePath(bed.configuration))) == 30
        }
        try await Task.sleep(for: .seconds(1))
        stop.request()
        try await run.value
        #expect(crashes.value == 1)
        #expect(counters.stageRestarts.value == 1)
        let acks = try bed.messages("ack")
        #expect(acks.count == 30, "exactly one ack per id")
        #expect(Set(acks.compactMap(\.keyText)).count == 30)
    }

    @Test("the supervisor restarts a DB stage that failed after a batch; the run still ends with exact counts",
          arguments: TestDatabase.allCases)
    func supervisorRestartsDBStage(database: TestDatabase) async throws {
        let bed = try await PipelineTestbed.start(database: database)
        defer { bed.stop() }
        let failures = Counter()
        let pipeline = Pipeline(configuration: bed.configuration, exitWhenDone: true, logger: logger, dbAfterBatch: { _ in
            if failures.value == 0 {
                failures.add()
                throw TestSetupError("injected DB stage failure")
            }
        })
        try await pipeline.run()
        #expect(failures.value == 1)
        #expect(pipeline.counters.stageRestarts.value == 1)
        for table in ["data1", "data2", "data3"] { #expect(try bed.count(table) == 50) }
        #expect(try bed.messages("ack").count == 50)
    }

    @Test("re-running the whole pipeline over the same files neither fails nor duplicates", arguments: TestDatabase.allCases)
    func idempotentRerun(database: TestDatabase) async throws {
        let bed = try await PipelineTestbed.start(database: database)
        defer { bed.stop() }
        for run in 1...2 {
            let pipeline = Pipeline(configuration: bed.configuration, exitWhenDone: true, logger: logger)
            try await pipeline.run()
            #expect(pipeline.counters.eventsProduced.value == 150, "run \(run)")
            #expect(pipeline.counters.acks.value == (run == 1 ? 50 : 0), "run \(run)")
            #expect(pipeline.counters.stageRestarts.value == 0)
        }
        for table in ["data1", "data2", "data3"] { #expect(try bed.count(table) == 50) }
        #expect(try bed.rows("SELECT count(*) FROM data1 WHERE bmi IS NULL") == [["4"]], "NA cells are NULL")
        #expect(try bed.messages("topic1").count == 100)
        #expect(try bed.messages("ack").count == 50)
    }
}
