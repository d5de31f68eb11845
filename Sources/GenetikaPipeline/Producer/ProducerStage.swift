import Logging
import GenetikaSupport
import GenetikaKafka

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
        let (topicIds, sources) = try await sourcesToSend(producer)
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
        let results = await sendFiles(sources, sender: sender(producer, abort: abort), outage: outage, events: events)
        // Every delivery report is in before the outcome is judged (close() would fail the rest).
        await events.wait { !results.values.contains(where: { $0.tracker.inFlight > 0 }) || stop.isRequested || abort.error != nil }
        watchdog.cancel()
        await watchdog.value
        try judge(results, topicIds: topicIds, abort: abort)
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

    /// The sources still to send, and the source topics' ids: a source sent completely before
    /// (by an earlier run of the stage) is sent again only if its topic was recreated since.
    private func sourcesToSend(_ producer: KafkaProducer) async throws -> (topicIds: [String: String], sources: [OpenSource]) {
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
        return (topicIds, sources)
    }

    /// A sender of source files with this stage's producer, signals and counters.
    func sender(_ producer: KafkaProducer, abort: AbortSignal) -> SourceSender {
        SourceSender(configuration: configuration, producer: producer, counters: counters, stop: stop, abort: abort,
                     lead: progress.lead, logger: logger)
    }

    /// Sends each source on its own task: one that fails (a file corrupt halfway) does not stop the others.
    private func sendFiles(_ sources: [OpenSource], sender: SourceSender, outage: DeliveryOutage, events: EventCount) async -> [Int: SourceResult] {
        await withTaskGroup(of: (Int, SourceResult).self) { group in
            for source in sources {
                group.addTask { [logger] in
                    let tracker = DeliveryTracker(outage: outage, drained: events, logger: logger)
                    do {
                        let sent = try await sender.send(source, tracker: tracker)
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
    }

    /// Records each source that was sent completely in the ledger, and throws the first
    /// failure (with the events left undelivered, which close() purges).
    private func judge(_ results: [Int: SourceResult], topicIds: [String: String], abort: AbortSignal) throws {
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
        guard let firstError else { return }
        // Whatever ended the stage, the events still in flight are purged by close():
        // count them with the failure (the supervisor counts them as resent or lost).
        let undelivered = results.values.reduce(0) { $0 + $1.tracker.inFlight + ($1.tracker.failures?.count ?? 0) }
        if undelivered > 0 && !(firstError is DeliveryFailures) {
            throw FailedWithUndelivered(cause: firstError, undelivered: undelivered)
        }
        throw firstError
    }

    private struct SourceResult: Sendable {
        var source: OpenSource
        var tracker: DeliveryTracker
        var sent: Int
        var error: (any Error)?
    }

}
