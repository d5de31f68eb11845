import Foundation
import GenetikaTestSupport
import Logging
import Testing
@testable import GenetikaPipeline
@testable import GenetikaStorage
@testable import GenetikaDataset
@testable import GenetikaJSON
@testable import GenetikaXlsx
import GenetikaKafka
import GenetikaSupport

@Suite("Inbox folders against a real broker", .serialized)
struct InboxTests {
    let logger = Logger(label: "test")

    /// A testbed whose three sources read inbox folders `inbox1`…`inbox3` only.
    func inboxBed(settleMs: Int = 2000) async throws -> PipelineTestbed {
        try await PipelineTestbed.start { configuration in
            let root = URL(fileURLWithPath: configuration.stateDirectory).deletingLastPathComponent().path
            for index in configuration.sources.indices {
                configuration.sources[index].file = nil
                configuration.sources[index].inbox = root + "/inbox\(index + 1)"
            }
            configuration.producer.settleMs = settleMs
            configuration.producer.inboxPollMs = 100
            // Longer than a slow copy plus the settle time (a source's ids wait that long for
            // the next source's file), short enough for id 20's report to come in time.
            configuration.acker.incompleteAfterSeconds = 12
        }
    }

    func inbox(_ bed: PipelineTestbed, _ number: Int) -> String { bed.configuration.sources[number - 1].inbox! }

    /// Writes source `number`'s spreadsheet for ids `first ..< first + rows` under `name` in
    /// a staging folder, and returns its path.
    func spreadsheet(_ bed: PipelineTestbed, _ number: Int, first: Int, rows: Int, name: String) throws -> String {
        let staging = bed.directory.appendingPathComponent("staging").path
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let path = staging + "/" + name
        let generator = DatasetGenerator(rows: rows, firstId: first)
        switch number {
        case 1: try generator.writeIntake(path)
        case 2: try generator.writeGenotype(path)
        default: try generator.writeOutcome(path)
        }
        return path
    }

    /// Copies `file` into `folder` in four pieces, `pause` apart (a slow copy over a network share).
    func slowCopy(_ file: String, into folder: String, pause: Duration) async throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        let target = folder + "/" + (file as NSString).lastPathComponent
        #expect(FileManager.default.createFile(atPath: target, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: target))
        let piece = bytes.count / 4 + 1
        for start in stride(from: 0, to: bytes.count, by: piece) {
            try handle.write(contentsOf: bytes[start..<min(start + piece, bytes.count)])
            try await Task.sleep(for: pause)
        }
        try handle.close()
    }

    /// An intake sheet with a valid row for id `valid` and a row for id 99 whose age is not a number.
    func intakeWithBadRow(_ bed: PipelineTestbed, valid: Int64, name: String) throws -> String {
        let path = bed.directory.appendingPathComponent("staging/" + name).path
        let writer = try XlsxWriter(path: path, sheetName: "intake")
        try writer.writeSheet { sheet in
            try sheet.write(["id", "age", "sex", "weight_kg", "bmi", "diagnosis", "phq9", "enrolled_on"].map(CellValue.string))
            try sheet.write([.integer(valid), .integer(40), .string("F"), .number(60.5), .number(21.3), .string("GAD"), .integer(4), .empty])
            try sheet.write([.integer(99), .string("old"), .string("M"), .number(80), .number(25), .string("MDD"), .integer(9), .empty])
        }
        try writer.close()
        return path
    }

    func records(_ bed: PipelineTestbed) throws -> [FileRecord] {
        let store = try FileRecordStore(path: ProducerStage.fileRecordsPath(bed.configuration))
        defer { store.close() }
        return try store.all()
    }

    @Test("files dropped into a running pipeline's inboxes (renamed in, copied slowly) reach the tables and get acks; a bad file goes to failed/ with its reason while the next is processed; the same content twice is sent once; an id missing from one source is reported incomplete once and acked when its row arrives in a later file")
    func runningPipeline() async throws {
        let bed = try await inboxBed()
        defer { bed.stop() }
        let pipeline = Pipeline(configuration: bed.configuration, logger: logger)
        let run = Task { try await pipeline.run() }
        defer { pipeline.stop.request() }
        try await eventually("the inbox folders exist") { (1...3).allSatisfy { FileManager.default.fileExists(atPath: inbox(bed, $0) + "/done") } }

        // Ids 1...20 in sources 1 and 2, 1...19 in source 3: id 20 stays incomplete.
        let first = try spreadsheet(bed, 1, first: 1, rows: 20, name: "intake-a.xlsx")
        #expect(rename(first, inbox(bed, 1) + "/intake-a.xlsx") == 0)
        try await slowCopy(try spreadsheet(bed, 2, first: 1, rows: 20, name: "genotype-a.xlsx"), into: inbox(bed, 2), pause: .milliseconds(300))
        #expect(rename(try spreadsheet(bed, 3, first: 1, rows: 19, name: "outcome-a.xlsx"), inbox(bed, 3) + "/outcome-a.xlsx") == 0)
        // A temporary name is never taken.
        try Data("partial".utf8).write(to: URL(fileURLWithPath: inbox(bed, 1) + "/~$intake-b.xlsx"))
        try await eventually("ids 1...19 acked") { pipeline.counters.acks.value >= 19 }
        #expect(pipeline.counters.eventsProduced.value == 59, "the slowly copied file was read whole, once")

        // A corrupt file, then a good one, in inbox 1; ids 21...25 in all three.
        try Data("this is not a spreadsheet".utf8).write(to: URL(fileURLWithPath: inbox(bed, 1) + "/broken.xlsx"))
        try await Task.sleep(for: .milliseconds(300))
        for number in 1...3 {
            let file = try spreadsheet(bed, number, first: 21, rows: 5, name: "batch-b\(number).xlsx")
            #expect(rename(file, inbox(bed, number) + "/batch-b\(number).xlsx") == 0)
        }
        try await eventually("ids 21...25 acked") { pipeline.counters.acks.value >= 24 }
        try await eventually("id 20 reported incomplete") { (try? bed.messages("incomplete").count) == 1 }
        let report = try #require(try bed.messages("incomplete").first)
        #expect(report.keyText == "20")
        let json = try JSONParser.parse(report.value)
        #expect(json["missing"] == .array([.string("topic3")]))
        #expect(pipeline.counters.incompleteIds.value == 1)

        let failed = inbox(bed, 1) + "/failed"
        #expect(FileManager.default.fileExists(atPath: failed + "/broken.xlsx"))
        let reason = try String(contentsOfFile: failed + "/broken.xlsx.error.txt", encoding: .utf8)
        #expect(reason.contains("broken.xlsx"), "the reason names the file: \(reason)")
        #expect(FileManager.default.fileExists(atPath: inbox(bed, 1) + "/~$intake-b.xlsx"), "temporary names stay where they are")
        let health = pipeline.health.response()
        let healthText = String(decoding: health.body, as: UTF8.self)
        #expect(health.status == 200, "a bad file is data, not an outage: \(healthText)")
        #expect(healthText.contains("last failed file") && healthText.contains("broken.xlsx"), "/health names the last failed file: \(healthText)")

        #expect(pipeline.counters.files["topic1"]?[.failed]?.value == 1)

        // A row that fails validation is dead-lettered; its file is still done, with the count.
        #expect(rename(try intakeWithBadRow(bed, valid: 21, name: "intake-bad-row.xlsx"), inbox(bed, 1) + "/intake-bad-row.xlsx") == 0)
        try await eventually("the file with a bad row is done") { FileManager.default.fileExists(atPath: inbox(bed, 1) + "/done/intake-bad-row.xlsx") }
        try await eventually("its dead letter is in the topic") { (try? bed.messages("dead-letter").count) == 1 }

        // The same content again under another name: moved to done/ without sending.
        let producedBefore = pipeline.counters.eventsProduced.value
        try FileManager.default.copyItem(atPath: inbox(bed, 1) + "/done/intake-a.xlsx", toPath: bed.directory.appendingPathComponent("staging/intake-again.xlsx").path)
        #expect(rename(bed.directory.appendingPathComponent("staging/intake-again.xlsx").path, inbox(bed, 1) + "/intake-again.xlsx") == 0)
        try await eventually("the duplicate moved to done/") { FileManager.default.fileExists(atPath: inbox(bed, 1) + "/done/intake-again.xlsx") }

        // Id 20's last row arrives in a later file: acked as usual, no longer incomplete.
        #expect(rename(try spreadsheet(bed, 3, first: 20, rows: 1, name: "outcome-late.xlsx"), inbox(bed, 3) + "/outcome-late.xlsx") == 0)
        try await eventually("id 20 acked") { pipeline.counters.acks.value == 25 }
        try await eventually("the incomplete gauge drops") { pipeline.counters.incompleteIds.value == 0 }
        #expect(pipeline.counters.eventsProduced.value == producedBefore + 1, "the duplicate sent nothing; the late file one row")
        #expect(try bed.messages("incomplete").count == 1, "reported once")

        pipeline.stop.request()
        try await run.value
        for (table, rows) in [("data1", 25), ("data2", 25), ("data3", 25)] { #expect(try bed.count(table) == rows) }
        let acks = try bed.messages("ack")
        #expect(acks.count == 25 && Set(acks.compactMap(\.keyText)).count == 25, "one ack per id")
        // (A copy that stalled longer than the settle time is read, found changed, and taken
        // again later: that attempt's record says so and does not count here.)
        let all = try records(bed).filter { !($0.note?.contains("changed while it was read") ?? false) }
        #expect(all.count == 10)
        let byName = Dictionary(all.map { (($0.path as NSString).lastPathComponent, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byName["broken.xlsx"]?.status == .failed)
        #expect(byName["broken.xlsx"]?.note?.isEmpty == false)
        #expect(byName["intake-a.xlsx"]?.status == .done && byName["intake-a.xlsx"]?.rowsSent == 20)
        #expect(byName["outcome-a.xlsx"]?.rowsSent == 19)
        #expect(byName["intake-again.xlsx"]?.status == .done && byName["intake-again.xlsx"]?.rowsSent == 0)
        #expect(byName["intake-again.xlsx"]?.note?.contains("not sent again") == true)
        #expect(all.filter { $0.status == .done }.count == 9)
        #expect(byName["intake-bad-row.xlsx"]?.rowsSent == 1 && byName["intake-bad-row.xlsx"]?.rowsDeadLettered == 1)
    }

    @Test("--exit-when-done takes what the inboxes hold and exits; content sent before is moved unsent, unless resend")
    func resend() async throws {
        let bed = try await inboxBed(settleMs: 0)
        defer { bed.stop() }
        for number in 1...3 {
            try FileManager.default.createDirectory(atPath: inbox(bed, number), withIntermediateDirectories: true)
            #expect(rename(try spreadsheet(bed, number, first: 1, rows: 10, name: "day\(number).xlsx"), inbox(bed, number) + "/day\(number).xlsx") == 0)
        }
        func runOnce(resend: Bool) async throws -> PipelineCounters {
            let pipeline = Pipeline(configuration: bed.configuration, exitWhenDone: true, resend: resend, logger: logger)
            try await pipeline.run()
            return pipeline.counters
        }
        #expect(try await runOnce(resend: false).eventsProduced.value == 30)
        func putBack() throws {
            for number in 1...3 {
                try FileManager.default.copyItem(atPath: inbox(bed, number) + "/done/day\(number).xlsx", toPath: inbox(bed, number) + "/again\(number).xlsx")
            }
        }
        try putBack()
        let skipped = try await runOnce(resend: false)
        #expect(skipped.eventsProduced.value == 0, "content sent before is not sent again")
        #expect(FileManager.default.fileExists(atPath: inbox(bed, 1) + "/done/again1.xlsx"))
        try FileManager.default.removeItem(atPath: inbox(bed, 1) + "/done/again1.xlsx")
        for number in 2...3 { try FileManager.default.removeItem(atPath: inbox(bed, number) + "/done/again\(number).xlsx") }
        try putBack()
        #expect(try await runOnce(resend: true).eventsProduced.value == 30, "--resend sends it")
        for table in ["data1", "data2", "data3"] { #expect(try bed.count(table) == 10) }
        #expect(try bed.messages("ack").count == 10, "one ack per id however often a file is sent")
    }
}
