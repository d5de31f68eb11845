import Foundation
import GenetikaTestSupport
import Logging
import Testing
@testable import GenetikaPipeline
@testable import GenetikaSupport
@testable import GenetikaJSON
import GenetikaStorage
import GenetikaKafka

/// Runs an acker stage on `bed` until `condition` holds, waits a second more (an ack that
/// should not come would come then), and stops it.
func runAcker(_ bed: PipelineTestbed, logger: Logger, waitingCapacity: Int = AckerState.defaultWaitingCapacity,
              pendingSlack: Int = AckerState.defaultPendingSlack, counters: PipelineCounters = PipelineCounters(), until condition: @escaping () throws -> Bool) async throws {
    let stop = StopSignal()
    let stage = AckerStage(context: StageContext(configuration: bed.configuration, counters: counters, progress: PipelineProgress(), stop: stop, logger: logger), afterAcks: nil, waitingCapacity: waitingCapacity, pendingSlack: pendingSlack)
    let run = Task { try await stage.run() }
    try await eventually("acker progress", condition)
    try await Task.sleep(for: .seconds(1))
    stop.request()
    try await run.value
}

@Suite("Acker behaviours against a real broker", .serialized)
struct AckerBehaviourTests {
    let logger = Logger(label: "test")

    @Test("ids evicted from the in-memory waiting set are answered from the store: every id still gets one ack")
    func waitingEviction() async throws {
        let bed = try await PipelineTestbed.start()
        defer { bed.stop() }
        // 60 ids reach topic1 and topic2 first: far more than the 8 the acker keeps in memory.
        for topic in ["topic1", "topic2"] { try await bed.produce(topic, keys: (1...60).map(String.init), "{}") }
        let counters = PipelineCounters()
        try await runAcker(bed, logger: logger, waitingCapacity: 8, pendingSlack: 4, counters: counters) { counters.eventsConsumed.value >= 120 }
        #expect(try bed.messages("ack").isEmpty, "no id has reached topic3 yet")
        try await bed.produce("topic3", keys: (1...60).map(String.init), "{}")
        try await runAcker(bed, logger: logger, waitingCapacity: 8, pendingSlack: 4) { try bed.messages("ack").count >= 60 }
        let acks = try bed.messages("ack")
        #expect(acks.count == 60)
        #expect(Set(acks.compactMap(\.keyText)) == Set((1...60).map(String.init)))
    }

    @Test("waiting ids live in the pending log: rewritten once superseded rows pile up, read back on restart with their topics and times")
    func pendingLogAcrossRestarts() async throws {
        let bed = try await PipelineTestbed.start()
        defer { bed.stop() }
        let keys = (1...60).map(String.init)
        let statePath = AckerStage.statePath(bed.configuration)
        func pendingRows() throws -> Int {
            let connection = try SQLiteConnection(path: statePath)
            defer { connection.close() }
            guard case .integer(let rows)? = try connection.query("SELECT count(*) FROM acker_pending").first?.first else { return -1 }
            return Int(rows)
        }
        // Each round is its own run (a restart): topic1, then topic2 four times (the later
        // times duplicates, which supersede rows without adding ids): 300 rows appended.
        for topic in ["topic1", "topic2", "topic2", "topic2", "topic2"] {
            try await bed.produce(topic, keys: keys, "{}")
            let counters = PipelineCounters()
            try await runAcker(bed, logger: logger, pendingSlack: 0, counters: counters) { counters.eventsConsumed.value >= keys.count }
        }
        #expect(try bed.messages("ack").isEmpty)
        // 60 ids wait: the log never holds more than `pendingRewriteFactor` rows per live one
        // after a batch (240 of the 300 appended), so it was rewritten.
        let rows = try pendingRows()
        #expect(rows >= 60 && rows <= AckerState.pendingRewriteFactor * 60, "pending rows: \(rows)")
        try await bed.produce("topic3", keys: keys, "{}")
        try await runAcker(bed, logger: logger, pendingSlack: 0) { try bed.messages("ack").count >= 60 }
        let acks = try bed.messages("ack")
        #expect(acks.count == 60)
        #expect(Set(acks.compactMap(\.keyText)) == Set(keys))
        // Every ack names a time for each of the three topics: what the log held survived.
        for ack in acks {
            let value = try JSONParser.parse(ack.value)
            guard case .object(let object) = value, case .object(let topics)? = object["topics"] else {
                Issue.record("ack without topics: \(value)")
                continue
            }
            #expect(["topic1", "topic2", "topic3"].allSatisfy { if case .int? = topics[$0] { true } else { false } }, "\(topics)")
        }
        // The acked ids were merged into acker_ids when the log was rewritten.
        #expect(try pendingRows() <= 120)
        #expect(try ackedIds(inStateAt: statePath) == 60)
    }

    @Test("acks recorded only in the pending log (not merged yet) hold across a restart: duplicate events get no second ack")
    func unmergedAcksAcrossRestart() async throws {
        let bed = try await PipelineTestbed.start()
        defer { bed.stop() }
        let keys = (1...40).map(String.init)
        for topic in ["topic1", "topic2", "topic3"] { try await bed.produce(topic, keys: keys, "{}") }
        try await runAcker(bed, logger: logger) { try bed.messages("ack").count >= 40 }
        let statePath = AckerStage.statePath(bed.configuration)
        let connection = try SQLiteConnection(path: statePath)
        let merged = try connection.query("SELECT count(*) FROM acker_ids").first?.first
        connection.close()
        #expect(merged == .integer(0), "40 acks are far fewer than a merge waits for")
        #expect(try ackedIds(inStateAt: statePath) == 40)
        // The same events again (a producer that sent its files twice), to a restarted acker.
        for topic in ["topic1", "topic2", "topic3"] { try await bed.produce(topic, keys: keys, "{}") }
        let counters = PipelineCounters()
        try await runAcker(bed, logger: logger, counters: counters) { counters.eventsConsumed.value >= 120 }
        #expect(try bed.messages("ack").count == 40)
    }

    @Test("an id that reached only some topics is reported incomplete once (event, gauge), also by an acker that lost its state; it is acked when its last event arrives")
    func incompleteIds() async throws {
        let bed = try await PipelineTestbed.start { $0.acker.incompleteAfterSeconds = 1 }
        defer { bed.stop() }
        // Ids 1...3 complete; 4 reaches topic1 only, 5 topic1 and topic2.
        try await bed.produce("topic1", keys: (1...5).map(String.init), "{}")
        try await bed.produce("topic2", keys: ["1", "2", "3", "5"], "{}")
        try await bed.produce("topic3", keys: ["1", "2", "3"], "{}")
        let counters = PipelineCounters()
        try await runAcker(bed, logger: logger, counters: counters) { try bed.messages("incomplete").count >= 2 }
        var reports = try bed.messages("incomplete")
        #expect(reports.count == 2)
        #expect(Set(reports.compactMap(\.keyText)) == ["4", "5"])
        for report in reports {
            let json = try JSONParser.parse(report.value)
            guard case .int(let first)? = json["first_seen_ms"], case .int(let age)? = json["age_ms"] else {
                Issue.record("report without times: \(String(decoding: report.value, as: UTF8.self))")
                continue
            }
            #expect(age >= 1000 && first > 0)
            if report.keyText == "5" {
                #expect(json["id"] == .int(5))
                #expect(json["seen"] == .array([.string("topic1"), .string("topic2")]))
                #expect(json["missing"] == .array([.string("topic3")]))
            } else {
                #expect(json["missing"] == .array([.string("topic2"), .string("topic3")]))
            }
        }
        #expect(counters.incompleteIds.value == 2)
        #expect(counters.incompleteReported.value == 2)
        #expect(try bed.messages("ack").count == 3)

        // A restart reports nothing again; neither does an acker without the state (a new
        // owner), which learns what was reported by reading the incomplete topic back.
        let restarted = PipelineCounters()
        try await runAcker(bed, logger: logger, counters: restarted) { restarted.incompleteIds.value == 2 }
        try FileManager.default.removeItem(atPath: bed.configuration.resolve(bed.configuration.stateDirectory))
        let fresh = PipelineCounters()
        try await runAcker(bed, logger: logger, counters: fresh) { fresh.incompleteIds.value == 2 && fresh.eventsConsumed.value >= 12 }
        try await Task.sleep(for: .seconds(1))
        #expect(try bed.messages("incomplete").count == 2, "each incomplete id is reported once")
        #expect(restarted.incompleteReported.value == 0 && fresh.incompleteReported.value == 0)

        // Id 5's last event arrives: it is acked as usual and no longer counts as incomplete.
        try await bed.produce("topic3", keys: ["5"], "{}")
        let later = PipelineCounters()
        try await runAcker(bed, logger: logger, counters: later) { later.acks.value == 1 && later.incompleteIds.value == 1 }
        #expect(Set(try bed.messages("ack").compactMap(\.keyText)) == ["1", "2", "3", "5"])
        reports = try bed.messages("incomplete")
        #expect(reports.count == 2)
    }

    @Test("an event without a key is dead-lettered by the acker with its origin; it is read back from the dead-letter topic")
    func ackerDeadLetters() async throws {
        let bed = try await PipelineTestbed.start()
        defer { bed.stop() }
        try await bed.produce("topic2", key: nil, #"{"id": 7}"#, partition: 1)
        for topic in ["topic1", "topic2", "topic3"] { try await bed.produce(topic, key: "1", "{}") }
        let counters = PipelineCounters()
        try await runAcker(bed, logger: logger, counters: counters) { try bed.messages("ack").count >= 1 && counters.deadLettered.value >= 1 }
        #expect(counters.deadLetteredPerStage["acker"]?.value == 1)
        let letters = try bed.messages("dead-letter")
        #expect(letters.count == 1)
        guard let letter = letters.first else { return }
        func header(_ name: String) -> String? {
            letter.headers.first { $0.name == name }?.value.map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(header(GenetikaHeader.stage) == "acker")
        #expect(header(GenetikaHeader.sourceTopic) == "topic2")
        #expect(header(GenetikaHeader.sourcePartition) == "1")
        #expect(header(GenetikaHeader.sourceOffset) == "0")
        #expect(header(GenetikaHeader.error)?.contains("without a key") == true)
        #expect(String(decoding: letter.value, as: UTF8.self) == #"{"id": 7}"#, "the original bytes")
        #expect(try bed.messages("ack").count == 1)
    }

    @Test("text ids go through the DB stage and the acker: text keys, a text primary key, one ack per id", arguments: TestDatabase.allCases)
    func textIds(database: TestDatabase) async throws {
        let bed = try await PipelineTestbed.start(database: database) { configuration in
            for index in configuration.sources.indices {
                for column in configuration.sources[index].columns.indices where configuration.sources[index].columns[column].name == "id" {
                    configuration.sources[index].columns[column].type = .text
                }
            }
        }
        defer { bed.stop() }
        let ids = ["a-1", "b 2", "ü3", "004"]
        for id in ids {
            try await bed.produce("topic1", key: id, #"{"id": "\#(id)", "age": 40}"#)
            try await bed.produce("topic2", key: id, #"{"id": "\#(id)"}"#)
            try await bed.produce("topic3", key: id, #"{"id": "\#(id)"}"#)
        }
        let counters = PipelineCounters()
        let stop = StopSignal()
        let db = DBStage(context: StageContext(configuration: bed.configuration, counters: counters, progress: PipelineProgress(), stop: stop, logger: logger))
        let dbRun = Task { try await db.run() }
        try await runAcker(bed, logger: logger) { try bed.messages("ack").count >= 4 }
        try await eventually("12 rows") { counters.rowsWritten.value == 12 }
        stop.request()
        try await dbRun.value
        #expect(Set(try bed.rows("SELECT id FROM data1").map { $0[0] ?? "" }) == Set(ids))
        #expect(try bed.rows("SELECT age FROM data1 WHERE id = '004'") == [["40"]], "004 stays text, not 4")
        let acks = try bed.messages("ack")
        #expect(acks.count == 4)
        for ack in acks {
            let json = try JSONParser.parse(ack.value)
            #expect(json["id"] == .string(ack.keyText ?? ""), "a text id stays a JSON string in the ack")
        }
    }
}
