import Logging
import GenetikaSupport
import GenetikaJSON
import GenetikaKafka
import GenetikaStorage
import GenetikaXlsx

/// Sends one opened spreadsheet's rows (a configured file, or an inbox file): each valid row
/// as its event, each invalid one to the dead-letter topic; held back while the consuming
/// stages lag by more than `producer.maxLead` events, and paced when configured.
struct SourceSender: Sendable {
    let configuration: GenetikaConfiguration
    let producer: KafkaProducer
    let counters: PipelineCounters
    let stop: StopSignal
    let abort: AbortSignal
    /// How far the consuming stages of this process lag (nil: none run here).
    let lead: ConsumerLead?
    let logger: Logger

    /// Sends the rows `open` has left; returns how many it read (a stop returns early).
    func send(_ open: ProducerStage.OpenSource, tracker: DeliveryTracker) async throws -> Int {
        let topic = open.source.topic
        let fileHeader = KafkaHeader(GenetikaHeader.sourceFile, open.file)
        let pacer = configuration.producer.ratePerSecond > 0 ? Pacer(ratePerSecond: configuration.producer.ratePerSecond) : nil
        var rows = 0
        var rejected = 0
        while let row = try open.reader.next() {
            if stop.isRequested { return rows }
            if let error = abort.error { throw error }
            if row.isEmpty { continue }
            counters.rowsRead.add()
            rows += 1
            let created = nowMilliseconds()
            counters.producing.started(at: created)
            let rowHeader = KafkaHeader(GenetikaHeader.sourceRow, String(row.number))
            let values: [FieldValue]
            do {
                values = try open.mapper.values(of: row)
            } catch {
                rejected += 1
                try await deadLetter(row, of: open, error: error, created: created, headers: [fileHeader, rowHeader], tracker: tracker)
                continue
            }
            try await sendEvent(values, of: open, row: row.number, created: created, headers: [fileHeader, rowHeader], tracker: tracker)
            try await holdBack(afterRow: rows, tracker: tracker, pacer: pacer)
        }
        logger.info("\(open.file): \(rows) rows sent to \(topic), \(rejected) of them dead-lettered to \(configuration.topics.deadLetter)")
        return rows
    }

    /// Hands one row's event to librdkafka; its delivery report is tracked by `tracker`.
    private func sendEvent(_ values: [FieldValue], of open: ProducerStage.OpenSource, row number: Int, created: Int64,
                           headers: [KafkaHeader], tracker: DeliveryTracker) async throws {
        let topic = open.source.topic, file = open.file
        let message = OutgoingMessage(topic: topic, key: Array(open.mapper.key(of: values).utf8),
                                      value: open.mapper.event(of: values), timestamp: created, headers: headers)
        tracker.started()
        do {
            try await producer.send(message) { [counters] report in
                if let error = report.error {
                    tracker.failed("\(file) row \(number) to \(topic): \(error)")
                } else {
                    counters.produced(topic: topic)
                    counters.producing.finished()
                    tracker.delivered(TopicPartition(report.topic, report.partition), offset: report.offset)
                }
                tracker.finished()
            }
        } catch {
            tracker.finished()  // never handed over: no delivery report will come
            throw error
        }
    }

    /// A row that failed validation: to the dead-letter topic with the reason, file, row and
    /// the row's original cells by header, typed, so that a replay can check them again.
    private func deadLetter(_ row: XlsxRow, of open: ProducerStage.OpenSource, error: RowRejection, created: Int64,
                            headers: [KafkaHeader], tracker: DeliveryTracker) async throws {
        counters.rowsRejected.add()
        tracker.rejectedRow()
        logger.warning("\(open.file) row \(row.number): \(error.reason); sent to \(configuration.topics.deadLetter)")
        let payload = JSONWriter.serialize(.object(JSONObject([
            ("file", .string(open.file)), ("row", .int(Int64(row.number))), ("topic", .string(open.source.topic)),
            ("reason", .string(error.reason)),
            ("sheet", .string(open.source.sheet ?? "")),
            ("cells", .object(JSONObject(open.mapper.headers.enumerated().compactMap { index, name in
                name.isEmpty ? nil : (name, DeadLetters.json(row[index]))
            }))),
        ])))
        try await producer.send(OutgoingMessage(
            topic: configuration.topics.deadLetter, key: nil, value: payload, timestamp: created,
            headers: headers + [KafkaHeader(GenetikaHeader.error, error.reason), KafkaHeader(GenetikaHeader.stage, "producer")]))
        counters.deadLettered(stage: "producer")
    }

    /// After a row: waits while the consuming stages lag too far behind (every 64 rows), then
    /// keeps the configured rate or random delay, or yields now and then.
    private func holdBack(afterRow rows: Int, tracker: DeliveryTracker, pacer: Pacer?) async throws {
        let maxLead = Int64(configuration.producer.maxLead)
        if let lead, maxLead > 0, rows % 64 == 0 {
            await lead.wait(whileAbove: maxLead, delivered: { tracker.nextOffsets },
                            done: { [stop, abort] in stop.isRequested || abort.error != nil })
        }
        let maxDelay = configuration.producer.maxDelayMs
        if let pacer {
            try await pacer.wait(afterEvent: rows)
        } else if maxDelay > 0 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...maxDelay)))
        } else if rows % 256 == 0 {
            await Task.yield()
        }
    }
}
