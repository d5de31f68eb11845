import Foundation
import Logging
import Synchronization
import GenetikaSupport
import GenetikaJSON
import GenetikaXlsx
import GenetikaKafka
import GenetikaStorage

/// Reads every configured spreadsheet concurrently (one task per source) and sends each
/// row as a JSON event to its topic: key = the event id, timestamp = when the event was
/// created, headers = source file and row. Asynchronous produce with delivery reports on an
/// idempotent producer; a delivery that fails after librdkafka's retries is logged with
/// its file and row and counted, never dropped silently. Rows that fail validation go to the
/// dead-letter topic with the reason, file and row.
package actor ProducerStage: ContextStage {
    package nonisolated let name = "producer"
    nonisolated let context: StageContext
    let ledger: ProducerLedger
    /// Sources already opened (and checked) by the start-up checks, used instead of opening
    /// them again; nil for a restarted stage, which opens them afresh.
    private let opened: [OpenSource]?
    /// Inbox files whose content was sent before are sent again (`genetika run --resend`).
    let resend: Bool
    /// Inboxes are left once they hold no file to take (`--exit-when-done`); otherwise they
    /// are watched until the stop.
    let drainInboxes: Bool

    /// `ledger` remembers, across restarts of the stage, which sources were sent completely.
    package init(context: StageContext, ledger: ProducerLedger = ProducerLedger(), resend: Bool = false,
                drainInboxes: Bool = false) {
        self.init(context: context, ledger: ledger, opened: nil, resend: resend, drainInboxes: drainInboxes)
    }

    init(context: StageContext, ledger: ProducerLedger, opened: [OpenSource]?, resend: Bool = false,
         drainInboxes: Bool = false) {
        self.resend = resend
        self.drainInboxes = drainInboxes
        self.context = context
        self.ledger = ledger
        self.opened = opened
    }

    /// Deliveries that failed for good in this run of the stage.
    package struct DeliveryFailures: Error, CustomStringConvertible, UndeliveredEvents {
        package var count: Int
        package var first: String
        package var description: String { "\(count) event(s) were not delivered; first: \(first)" }
        package var undelivered: Int { count }
    }

    /// The stage failed (`cause`) with events handed to Kafka and not delivered.
    package struct FailedWithUndelivered: Error, CustomStringConvertible, UndeliveredEvents {
        package var cause: any Error
        package var undelivered: Int
        package var description: String { "\(cause)" }
    }

    /// librdkafka's `linger.ms` for the producer unless `kafka.properties` sets it: 20 ms when
    /// reading flat out (batches fill long before), 5 ms when paced (`ratePerSecond` or
    /// `maxDelayMs`: a longer linger adds to every event's delay). The measurements behind
    /// both: docs/benchmarks.md, "Tuning decisions".
    static func lingerMs(_ producer: ProducerStageConfiguration) -> String {
        producer.ratePerSecond > 0 || producer.maxDelayMs > 0 ? "5" : "20"
    }

    package func run() async throws {
        if opened == nil {
            // A restart: the topics may be gone (a broker restarted without its data).
            try await KafkaAdmin.withAdmin(configuration: clientConfiguration(configuration, counters), name: "producer-admin",
                                           logger: logger) { [configuration] admin in
                try await admin.ensureTopics(of: configuration)
            }
        }
        let producer = try KafkaProducer(configuration: clientConfiguration(configuration, counters)
            .with(defaults: ["partitioner": "murmur2_random", "linger.ms": Self.lingerMs(configuration.producer)]),
                                         name: "producer", logger: logger)
        let events = EventCount()
        let abort = AbortSignal(events)
        do {
            try await produce(with: producer, abort: abort, events: events)
        } catch {
            await producer.shutdown(timeout: abort.error == nil ? .seconds(10) : .zero)
            throw error
        }
        await producer.shutdown(timeout: abort.error == nil ? .seconds(10) : .zero)
    }

    /// The stage's work with its producer; `events` is notified when a source's last
    /// outstanding delivery report arrives, on a stop request and on an abort.
    private func produce(with producer: KafkaProducer, abort: AbortSignal, events: EventCount) async throws {
        stop.onRequest { [lead = progress.lead] _ in events.notify(); lead.moved.notify() }
        // A source sent completely before is sent again only if its topic was recreated since.
        let topics = configuration.sources.map(\.topic)
        let topicIds = (try? await onOwnThread("genetika-producer-admin") { try producer.topicIds(topics) }) ?? [:]
        for file in ledger.forgetRecreated(topicIds, sources: configuration.sources) {
            logger.warning("producer: the topic of \(file) was recreated since it was sent; sending it again")
        }
        let pending = configuration.sources.indices.filter { configuration.sources[$0].file != nil && !ledger.isComplete($0) }
        let opened: [OpenSource]
        if let checked = self.opened {
            opened = checked
        } else {
            // Opening reads each file's directory and header row: file I/O, off the shared pool.
            opened = try await onOwnThread("genetika-open-sources") { [configuration] in
                try Self.openSources(configuration, only: Set(pending))
            }
        }
        let sources = opened.filter { !ledger.isComplete($0.index) }
        if sources.count < configuration.sources.filter({ $0.file != nil }).count {
            let done = configuration.sources.indices.filter { ledger.isComplete($0) }.compactMap { configuration.sources[$0].file }
            logger.info("producer: not sending again what was already delivered: \(done.joined(separator: ", "))")
        }
        let outage = ledger.outage
        // Ended and awaited below, before anything can close the producer under it.
        let watchdog = Self.watchTopics(producer: producer, ids: topicIds, topics: configuration.sources.map(\.topic),
                                        outage: outage, abort: abort)
        // Consumers started by this process join their groups first, so that the ack delay
        // measures the pipeline rather than a group join (about half of session.timeout.ms).
        if await !progress.waitForConsumers(timeout: .seconds(30)) {
            logger.warning("producer: the consuming stages have no partitions after 30 s; sending anyway")
        }
        let start = ContinuousClock.now
        // Each source on its own: one that fails (a file corrupt halfway) does not stop the others.
        let results = await withTaskGroup(of: (Int, SourceResult).self) { group in
            for source in sources {
                group.addTask { [configuration, counters, stop, logger, lead = progress.lead] in
                    let tracker = DeliveryTracker(outage: outage, drained: events, logger: logger)
                    do {
                        let sent = try await Self.send(source, configuration: configuration, producer: producer, counters: counters,
                                                   stop: stop, abort: abort, tracker: tracker, lead: lead, logger: logger)
                        return (source.index, SourceResult(source: source, tracker: tracker, sent: sent, error: nil))
                    } catch {
                        return (source.index, SourceResult(source: source, tracker: tracker, sent: tracker.handedOver, error: error))
                    }
                }
            }
            var results: [Int: SourceResult] = [:]
            for await (index, result) in group { results[index] = result }
            return results
        }
        // Every delivery report is in before the outcome is judged (close() would fail the rest).
        await events.wait { !results.values.contains(where: { $0.tracker.inFlight > 0 }) || stop.isRequested || abort.error != nil }
        watchdog.cancel()
        await watchdog.value
        var firstError: Error? = abort.error
        for index in results.keys.sorted() {
            guard let result = results[index] else { continue }
            if let error = result.error {
                logger.error("\(result.source.file): failed after \(result.sent) rows were handed to Kafka for \(result.source.source.topic) (they are kept; a restart sends the file again): \(error)")
                firstError = firstError ?? error
            } else if let failures = result.tracker.failures {
                firstError = firstError ?? failures
            } else if !stop.isRequested && abort.error == nil && result.tracker.inFlight == 0 {
                ledger.complete(index, offsets: result.tracker.nextOffsets, topicId: topicIds[result.source.source.topic])
            }
        }
        if let firstError {
            // Whatever ended the stage, the events still in flight are purged by close():
            // count them with the failure (the supervisor counts them as resent or lost).
            let undelivered = results.values.reduce(0) { $0 + $1.tracker.inFlight + ($1.tracker.failures?.count ?? 0) }
            if undelivered > 0 && !(firstError is DeliveryFailures) {
                throw FailedWithUndelivered(cause: firstError, undelivered: undelivered)
            }
            throw firstError
        }
        if stop.isRequested { return }
        if !sources.isEmpty {
            logger.info("producer: \(counters.eventsProduced.value) events from \(sources.count) files in \(ContinuousClock.now - start), \(counters.rowsRejected.value) rows dead-lettered")
        }
        let inboxes = configuration.sources.indices.filter { configuration.sources[$0].inbox != nil }
        if !inboxes.isEmpty {
            try await watchInboxes(inboxes, producer: producer, topicIds: topicIds, abort: abort, events: events)
            if stop.isRequested { return }
        }
        // Exact targets for "caught up": the highest offset each partition got from the producer.
        await progress.producerDone(targets: ledger.nextOffsets)
        logger.info("producer finished: \(counters.eventsProduced.value) events in \(ContinuousClock.now - start), \(counters.rowsRejected.value) rows dead-lettered")
    }

    private struct SourceResult: Sendable {
        var source: OpenSource
        var tracker: DeliveryTracker
        var sent: Int
        var error: (any Error)?
    }

    /// A source checked at start-up: the file opens, the sheet exists, the header has every column.
    struct OpenSource: @unchecked Sendable {
        // @unchecked: an OpenSource has one user at a time: the start-up check hands it (under
        // a lock, once) to the first producer stage, which gives it to exactly one task.
        var index: Int
        var source: SourceConfiguration
        var path: String
        var file: String
        var reader: XlsxRowReader
        var mapper: RowMapper
    }

    static func openSources(_ configuration: GenetikaConfiguration, only: Set<Int>? = nil) throws -> [OpenSource] {
        try configuration.sources.enumerated().filter { $0.element.file != nil && only?.contains($0.offset) ?? true }.map { index, source in
            try openSource(index: index, source: source, path: configuration.resolve(source.file!), configuration: configuration)
        }
    }

    /// Opens one spreadsheet of `source` and checks its header.
    static func openSource(index: Int, source: SourceConfiguration, path: String, configuration: GenetikaConfiguration) throws -> OpenSource {
        let workbook = try XlsxWorkbook(path: path, limits: XlsxLimits(configuration.xlsx))
        let reader = try workbook.rows(sheet: source.sheet)
        guard let header = try reader.next() else {
            throw XlsxError(.missingSheet, file: workbook.file, "the sheet has no header row")
        }
        let mapper = try RowMapper(source: source, header: header, file: workbook.file)
        return OpenSource(index: index, source: source, path: path, file: workbook.file, reader: reader, mapper: mapper)
    }

    /// Deliveries that make no progress for 5 s while events are outstanding may be waiting
    /// for a topic the broker lost (librdkafka would hold them until `message.timeout.ms`):
    /// if a source topic is gone or was recreated, the stage is aborted, and its restart
    /// creates the topics again and resends.
    static func watchTopics(producer: KafkaProducer, ids: [String: String], topics: [String],
                                    outage: DeliveryOutage, abort: AbortSignal) -> Task<Void, Never> {
        Task.detached {
            var last = outage.reports
            var since = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let reports = outage.reports
                if reports != last || producer.outstanding == 0 {
                    last = reports
                    since = .now
                    continue
                }
                guard ContinuousClock.now - since >= .seconds(5) else { continue }
                since = .now
                // DescribeTopics blocks: on a thread of its own, not on Swift's shared pool.
                let current = await onOwnThread("genetika-producer-watch") { try? producer.topicIds(topics, timeout: .seconds(3)) }
                guard let current else { continue }  // no broker answered: librdkafka keeps trying
                let gone = topics.filter { current[$0] != ids[$0] }
                if !gone.isEmpty {
                    abort.raise(TopicsGone(topics: gone))
                    return
                }
            }
        }
    }

    /// Source topics disappeared or were recreated while events waited for them.
    struct TopicsGone: Error, CustomStringConvertible {
        var topics: [String]
        var description: String {
            "topics \(topics.joined(separator: ", ")) are gone or were recreated while events waited for them (the broker lost its data); the restart creates them and sends again"
        }
    }

    static func send(_ open: OpenSource, configuration: GenetikaConfiguration, producer: KafkaProducer,
                             counters: PipelineCounters, stop: StopSignal, abort: AbortSignal, tracker: DeliveryTracker,
                             lead: ConsumerLead?, logger: Logger) async throws -> Int {
        let maxLead = Int64(configuration.producer.maxLead)
        let topic = open.source.topic
        let file = open.file
        let fileHeader = KafkaHeader(GenetikaHeader.sourceFile, file)
        let maxDelay = configuration.producer.maxDelayMs
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
                counters.rowsRejected.add()
                tracker.rejectedRow()
                rejected += 1
                logger.warning("\(file) row \(row.number): \(error.reason); sent to \(configuration.topics.deadLetter)")
                let payload = JSONWriter.serialize(.object(JSONObject([
                    ("file", .string(file)), ("row", .int(Int64(row.number))), ("topic", .string(topic)),
                    ("reason", .string(error.reason)),
                    ("sheet", .string(open.source.sheet ?? "")),
                    // The row's original cells by header, typed, so that a replay can check them again.
                    ("cells", .object(JSONObject(open.mapper.headers.enumerated().compactMap { index, name in
                        name.isEmpty ? nil : (name, DeadLetters.json(row[index]))
                    }))),
                ])))
                try await producer.send(OutgoingMessage(
                    topic: configuration.topics.deadLetter, key: nil, value: payload, timestamp: created,
                    headers: [fileHeader, rowHeader, KafkaHeader(GenetikaHeader.error, error.reason),
                              KafkaHeader(GenetikaHeader.stage, "producer")]))
                counters.deadLettered(stage: "producer")
                continue
            }
            let message = OutgoingMessage(topic: topic, key: Array(open.mapper.key(of: values).utf8),
                                          value: open.mapper.event(of: values), timestamp: created,
                                          headers: [fileHeader, rowHeader])
            tracker.started()
            let rowNumber = row.number
            do {
                try await producer.send(message) { report in
                    if let error = report.error {
                        tracker.failed("\(file) row \(rowNumber) to \(topic): \(error)")
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
            if let lead, maxLead > 0, rows % 64 == 0 {
                await lead.wait(whileAbove: maxLead, delivered: { tracker.nextOffsets },
                                done: { stop.isRequested || abort.error != nil })
            }
            if let pacer {
                try await pacer.wait(afterEvent: rows)
            } else if maxDelay > 0 {
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...maxDelay)))
            } else if rows % 256 == 0 {
                await Task.yield()
            }
        }
        logger.info("\(file): \(rows) rows sent to \(topic), \(rejected) of them dead-lettered to \(configuration.topics.deadLetter)")
        return rows
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

/// What the producer has done across restarts of its stage: the sources whose every row
/// was delivered (a restart does not send them again), the next offset after the last
/// delivered event of each partition, and whether deliveries are failing right now.
package final class ProducerLedger: Sendable {
    /// Complete sources with the id their topic had then (nil: unknown).
    private let state = Mutex<(complete: [Int: String?], offsets: [TopicPartition: Int64])>(([:], [:]))
    let outage = DeliveryOutage()

    package init() {}

    func isComplete(_ source: Int) -> Bool { state.withLock { $0.complete[source] != nil } }

    /// Deliveries of an inbox file: they count towards the targets of "caught up".
    func delivered(_ offsets: [TopicPartition: Int64]) {
        state.withLock { s in
            for (partition, offset) in offsets { s.offsets[partition] = max(s.offsets[partition] ?? 0, offset) }
        }
    }

    func complete(_ source: Int, offsets: [TopicPartition: Int64], topicId: String?) {
        state.withLock { s in
            s.complete[source] = .some(topicId)
            for (partition, offset) in offsets { s.offsets[partition] = max(s.offsets[partition] ?? 0, offset) }
        }
    }

    /// Forgets the complete sources whose topic now has another id (it was recreated, and
    /// what was sent to it is gone); returns their files.
    func forgetRecreated(_ ids: [String: String], sources: [SourceConfiguration]) -> [String] {
        state.withLock { s in
            var files: [String] = []
            for (index, recorded) in s.complete {
                let topic = sources[index].topic
                guard let recorded, let current = ids[topic], current != recorded else { continue }
                s.complete[index] = nil
                s.offsets = s.offsets.filter { $0.key.topic != topic }
                files.append(sources[index].label)
            }
            return files.sorted()
        }
    }

    var nextOffsets: [TopicPartition: Int64] { state.withLock { $0.offsets } }
}

/// A reason to give up the stage's work, raised by a watchdog and seen by every sender.
final class AbortSignal: Sendable {
    private let state = Mutex<(any Error)?>(nil)
    private let events: EventCount

    /// `events` is notified when the abort is raised.
    init(_ events: EventCount = EventCount()) { self.events = events }

    var error: (any Error)? { state.withLock { $0 } }
    func raise(_ error: any Error) {
        state.withLock { if $0 == nil { $0 = error } }
        events.notify()
    }
}

/// Logs the start of a spell of failing deliveries once (with the first error) and its end
/// once (with how many failed meanwhile), rather than a line per event.
final class DeliveryOutage: Sendable {
    private let state = Mutex<(failing: Bool, since: ContinuousClock.Instant, failed: Int)>((false, .now, 0))
    private let reported = Atomic<Int>(0)
    /// `state.failing`, readable without the lock: a delivery while nothing fails (every
    /// event, normally) takes no lock.
    private let failing = Atomic<Bool>(false)

    /// Delivery reports so far, successful or not.
    var reports: Int { reported.load(ordering: .relaxed) }

    func failed(_ text: String, logger: Logger) {
        reported.add(1, ordering: .relaxed)
        let first = state.withLock { s -> Bool in
            s.failed += 1
            guard !s.failing else { return false }
            s.failing = true
            s.since = .now
            failing.store(true, ordering: .releasing)
            return true
        }
        if first { logger.error("deliveries are failing: \(text); further failures are counted, not logged one by one") }
    }

    func delivered(logger: Logger) {
        reported.add(1, ordering: .relaxed)
        guard failing.load(ordering: .acquiring) else { return }
        let ended = state.withLock { s -> (Int, Duration)? in
            guard s.failing else { return nil }
            defer { s.failing = false; s.failed = 0; failing.store(false, ordering: .releasing) }
            return (s.failed, .now - s.since)
        }
        if let (failed, duration) = ended {
            logger.notice("deliveries succeed again after \(duration): \(failed) failed meanwhile (their files are sent again)")
        }
    }
}

/// One source's messages awaiting their delivery report, the failures among those
/// reported, and the next offset after the last delivered message of each partition.
final class DeliveryTracker: Sendable {
    private let pending = Atomic<Int>(0)
    private let handed = Atomic<Int>(0)
    private let rejected = Atomic<Int>(0)
    private let failure = Mutex<ProducerStage.DeliveryFailures?>(nil)
    private let offsets = Mutex<[TopicPartition: Int64]>([:])
    private let outage: DeliveryOutage
    /// Notified when the last outstanding delivery report arrives.
    private let drained: EventCount
    let logger: Logger

    init(outage: DeliveryOutage, drained: EventCount = EventCount(), logger: Logger) {
        self.outage = outage
        self.drained = drained
        self.logger = logger
    }

    var nextOffsets: [TopicPartition: Int64] { offsets.withLock { $0 } }

    func delivered(_ partition: TopicPartition, offset: Int64) {
        offsets.withLock { $0[partition] = max($0[partition] ?? 0, offset + 1) }
        outage.delivered(logger: logger)
    }

    var inFlight: Int { pending.load(ordering: .acquiring) }
    /// Rows sent to the dead-letter topic instead (they failed validation).
    var rowsRejected: Int { rejected.load(ordering: .relaxed) }
    func rejectedRow() { rejected.add(1, ordering: .relaxed) }
    /// Events handed to librdkafka so far.
    var handedOver: Int { handed.load(ordering: .relaxed) }
    var failures: ProducerStage.DeliveryFailures? { failure.withLock { $0 } }

    func started() {
        pending.add(1, ordering: .relaxed)
        handed.add(1, ordering: .relaxed)
    }
    func finished() {
        if pending.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { drained.notify() }
    }

    func failed(_ text: String) {
        failure.withLock { state in
            if state == nil { state = ProducerStage.DeliveryFailures(count: 0, first: text) }
            state?.count += 1
        }
        outage.failed(text, logger: logger)
    }
}

extension KafkaAdmin {
    /// Every topic the configuration names (sources, ack, dead letters) exists with
    /// `topics.partitions` partitions; missing ones are created if `topics.create`.
    func ensureTopics(of configuration: GenetikaConfiguration) async throws {
        let topics = configuration.sources.map(\.topic)
            + [configuration.topics.ack, configuration.topics.deadLetter, configuration.topics.incomplete]
        try await ensureTopics(topics.map { TopicSpecification(name: $0, partitions: configuration.topics.partitions) },
                               create: configuration.topics.create)
    }
}

/// The Kafka client settings of a stage: the configured ones, reporting broker outages to `/health`.
func clientConfiguration(_ configuration: GenetikaConfiguration, _ counters: PipelineCounters) -> KafkaClientConfiguration {
    var client = KafkaClientConfiguration(configuration.kafka)
    client.observer = counters.health
    return client
}
