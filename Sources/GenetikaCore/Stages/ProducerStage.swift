import Foundation
import Logging
import Synchronization

/// Reads every configured spreadsheet concurrently (one task per source) and sends each
/// row as a JSON event to its topic: key = the event id, timestamp = when the event was
/// created, headers = source file and row. Asynchronous produce with delivery reports on an
/// idempotent producer; a delivery that fails after librdkafka's retries is logged with
/// its file and row and counted, never dropped silently. Rows that fail validation go to the
/// dead-letter topic with the reason, file and row.
public actor ProducerStage: PipelineStage {
    public nonisolated let name = "producer"
    private let configuration: GenetikaConfiguration
    private let counters: PipelineCounters
    private let progress: PipelineProgress
    private let stop: StopSignal
    private let logger: Logger
    /// Sources already opened (and checked) by the start-up checks, used instead of opening
    /// them again; nil for a restarted stage, which opens them afresh.
    private let opened: [OpenSource]?

    public init(configuration: GenetikaConfiguration, counters: PipelineCounters, progress: PipelineProgress,
                stop: StopSignal, logger: Logger) {
        self.init(configuration: configuration, counters: counters, progress: progress, stop: stop, logger: logger, opened: nil)
    }

    init(configuration: GenetikaConfiguration, counters: PipelineCounters, progress: PipelineProgress,
         stop: StopSignal, logger: Logger, opened: [OpenSource]?) {
        self.configuration = configuration
        self.counters = counters
        self.progress = progress
        self.stop = stop
        self.logger = logger
        self.opened = opened
    }

    /// A delivery that failed for good.
    public struct DeliveryFailures: Error, CustomStringConvertible {
        public var count: Int
        public var first: String
        public var description: String { "\(count) event(s) were not delivered; first: \(first)" }
    }

    public func run() async throws {
        let sources = try opened ?? Self.openSources(configuration)
        let producer = try KafkaProducer(configuration: KafkaClientConfiguration(configuration.kafka)
            .with(defaults: ["partitioner": "murmur2_random"]), name: "producer", logger: logger)
        defer { producer.close() }
        let tracker = DeliveryTracker()
        // Consumers started by this process join their groups first, so that the ack delay
        // measures the pipeline rather than a group join (about half of session.timeout.ms).
        if await !progress.waitForConsumers(timeout: .seconds(30)) {
            logger.warning("producer: the consuming stages have no partitions after 30 s; sending anyway")
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for source in sources {
                group.addTask { [configuration, counters, stop, logger] in
                    try await Self.send(source, configuration: configuration, producer: producer, counters: counters,
                                        stop: stop, tracker: tracker, logger: logger)
                }
            }
            try await group.waitForAll()
        }
        try producer.flush(timeout: .seconds(120))
        while tracker.inFlight > 0 { try await Task.sleep(for: .milliseconds(1)) }
        if let failures = tracker.failures { throw failures }
        if stop.isRequested { return }
        // Exact targets for "caught up": the highest offset each partition got from this run.
        await progress.producerDone(targets: tracker.nextOffsets)
        logger.info("producer finished: \(counters.eventsProduced.value) events from \(sources.count) files in \(ContinuousClock.now - start), \(counters.rowsRejected.value) rows dead-lettered")
    }

    /// A source checked at start-up: the file opens, the sheet exists, the header has every column.
    struct OpenSource: @unchecked Sendable {
        // @unchecked: an OpenSource has one user at a time: the start-up check hands it (under
        // a lock, once) to the first producer stage, which gives it to exactly one task.
        var source: SourceConfiguration
        var path: String
        var file: String
        var reader: XlsxRowReader
        var mapper: RowMapper
    }

    static func openSources(_ configuration: GenetikaConfiguration) throws -> [OpenSource] {
        try configuration.sources.map { source in
            let path = configuration.resolve(source.file)
            let workbook = try XlsxWorkbook(path: path, limits: XlsxLimits(configuration.xlsx))
            let reader = try workbook.rows(sheet: source.sheet)
            guard let header = try reader.next() else {
                throw XlsxError(.missingSheet, file: workbook.file, "the sheet has no header row")
            }
            let mapper = try RowMapper(source: source, header: header, file: workbook.file)
            return OpenSource(source: source, path: path, file: workbook.file, reader: reader, mapper: mapper)
        }
    }

    private static func send(_ open: OpenSource, configuration: GenetikaConfiguration, producer: KafkaProducer,
                             counters: PipelineCounters, stop: StopSignal, tracker: DeliveryTracker,
                             logger: Logger) async throws {
        let topic = open.source.topic
        let file = open.file
        let fileHeader = KafkaHeader(GenetikaHeader.sourceFile, file)
        let maxDelay = configuration.producer.maxDelayMs
        let pacer = configuration.producer.ratePerSecond > 0 ? Pacer(ratePerSecond: configuration.producer.ratePerSecond) : nil
        var rows = 0
        while let row = try open.reader.next() {
            if stop.isRequested { return }
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
                counters.rowsRejected.add()
                logger.warning("\(file) row \(row.number): \(error.reason); sent to \(configuration.topics.deadLetter)")
                let payload = JSONWriter.serialize(.object(JSONObject([
                    ("file", .string(file)), ("row", .int(Int64(row.number))), ("topic", .string(topic)),
                    ("reason", .string(error.reason)),
                    ("cells", .array(row.cells.map { .string($0.description) })),
                ])))
                try await producer.send(OutgoingMessage(
                    topic: configuration.topics.deadLetter, key: nil, value: payload, timestamp: created,
                    headers: [fileHeader, rowHeader, KafkaHeader(GenetikaHeader.error, error.reason),
                              KafkaHeader(GenetikaHeader.stage, "producer")]))
                continue
            }
            let message = OutgoingMessage(topic: topic, key: Array(open.mapper.key(of: values).utf8),
                                          value: open.mapper.event(of: values), timestamp: created,
                                          headers: [fileHeader, rowHeader])
            tracker.started()
            let rowNumber = row.number
            try await producer.send(message) { report in
                if let error = report.error {
                    counters.deliveryFailures.add()
                    let text = "\(file) row \(rowNumber) to \(topic): \(error)"
                    logger.error("delivery failed: \(text)")
                    tracker.failed(text)
                } else {
                    counters.produced(topic: topic)
                    counters.producing.finished()
                    tracker.delivered(TopicPartition(report.topic, report.partition), offset: report.offset)
                }
                tracker.finished()
            }
            if let pacer {
                try await pacer.wait(afterEvent: rows)
            } else if maxDelay > 0 {
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...maxDelay)))
            } else if rows % 256 == 0 {
                await Task.yield()
            }
        }
        logger.info("\(file): \(rows) rows sent to \(topic)")
    }
}

/// Spaces a source's events evenly at a fixed rate: event n is due n / rate seconds after
/// the first; the sender sleeps only when it is ahead of that schedule.
struct Pacer {
    let ratePerSecond: Double
    let start = ContinuousClock.now

    func wait(afterEvent count: Int) async throws {
        let due = start + .seconds(Double(count) / ratePerSecond)
        if due > ContinuousClock.now { try await Task.sleep(until: due, clock: .continuous) }
    }
}

/// Messages awaiting their delivery report, the failures among those reported, and the
/// next offset after the last delivered message of each partition.
final class DeliveryTracker: Sendable {
    private let pending = Atomic<Int>(0)
    private let failure = Mutex<ProducerStage.DeliveryFailures?>(nil)
    private let offsets = Mutex<[TopicPartition: Int64]>([:])

    var nextOffsets: [TopicPartition: Int64] { offsets.withLock { $0 } }

    func delivered(_ partition: TopicPartition, offset: Int64) {
        offsets.withLock { $0[partition] = max($0[partition] ?? 0, offset + 1) }
    }

    var inFlight: Int { pending.load(ordering: .acquiring) }
    var failures: ProducerStage.DeliveryFailures? { failure.withLock { $0 } }

    func started() { pending.add(1, ordering: .relaxed) }
    func finished() { pending.subtract(1, ordering: .releasing) }

    func failed(_ text: String) {
        failure.withLock { state in
            if state == nil { state = ProducerStage.DeliveryFailures(count: 0, first: text) }
            state?.count += 1
        }
    }
}
