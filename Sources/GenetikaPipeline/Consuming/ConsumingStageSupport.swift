import CoreMetrics
import Logging
import GenetikaSupport
import GenetikaKafka

/// What the DB and acker stages share: a consumer-group member on the source topics that
/// polls batches, hands the ones from partitions it still owns to the stage, and reports
/// its lag, its readiness and whether it has caught up.
protocol ConsumingStage: ContextStage {
    var tracker: CatchUpTracker { get }
    /// Runs inside `poll` on assignment changes; returns where assigned partitions start.
    func rebalanced(_ event: RebalanceEvent) throws -> [TopicPartition: Int64]
    /// The topics whose ids the stage's stored offsets depend on.
    var identifiedTopics: [String] { get }
    /// Runs inside `poll` on every assignment, before `rebalanced`, with the topics' current
    /// ids: a topic whose id changed was recreated, and what is stored of it is dropped.
    func topicsIdentified(_ ids: [String: String]) throws
    /// Partitions whose stored position lies beyond their end: the broker lost their log.
    /// Drops what is stored of them; returns where to read each partition from now.
    func partitionsReset(_ partitions: [TopicPartition], assignment: Set<TopicPartition>) throws -> [TopicPartition: Int64]
    /// Work due after each poll, before its batch is handled (the acker's read-back and
    /// its check for incomplete ids).
    func beforeBatch(_ consumer: KafkaConsumer) async throws
    /// Handles one batch, all from partitions this member owns; `offsets` are the batch's
    /// next offsets per partition.
    func handle(_ batch: [KafkaMessage], offsets: [TopicPartition: Int64]) async throws
    /// What the stage needs of each message.
    var messageContents: KafkaConsumer.MessageContents { get }
}

extension ConsumingStage {
    func beforeBatch(_ consumer: KafkaConsumer) async throws {}

    var identifiedTopics: [String] { configuration.sources.map(\.topic) }

    var messageContents: KafkaConsumer.MessageContents { .all }

    /// Logs, counts and shows in `/health` that the broker lost what a stage had stored of a partition.
    func reportReset(_ text: String) {
        logger.warning("\(name): \(text)")
        counters.partitionResets.add()
        counters.health.note(name, "\(text) (at \(nowMilliseconds()) ms since the epoch)")
    }

    /// Has the stage drop what it stored of `partitions` and moves `consumer` to where the
    /// stage says to read them from now (for the partitions it still owns).
    func resetPartitions(_ partitions: [TopicPartition], consumer: KafkaConsumer) throws {
        let starts = try partitionsReset(partitions, assignment: consumer.assignment)
        for (partition, offset) in starts.sorted(by: { $0.key < $1.key }) where consumer.assignment.contains(partition) {
            try consumer.seek(partition, to: offset)
        }
    }

    /// Joins the group `settings.groupId` on the source topics and handles batches of up to
    /// `batchSize` messages (waiting up to `lingerMs` to fill one) until the stop signal.
    func consume(_ settings: ConsumerStageConfiguration) async throws {
        let box = ConsumerBox()
        let topics = identifiedTopics
        let consumer = try KafkaConsumer(configuration: clientConfiguration(configuration, counters), groupId: settings.groupId,
                                         name: name, logger: logger, contents: messageContents) { [unowned self, logger, name] event in
            if case .assigned(let partitions) = event, let consumer = box.consumer {
                // Every assignment (a broker restart makes the group assign again) checks
                // whether a topic was recreated since the stored offsets were written.
                do {
                    let ids = try consumer.topicIds(topics, timeout: .seconds(5))
                    if !partitions.isEmpty && ids.count == topics.count { box.assignedIds = ids }
                    try self.assumeIsolated { stage in try stage.topicsIdentified(ids) }
                } catch let error as KafkaError {
                    logger.info("\(name): topic ids not checked (\(error)); stored offsets beyond a partition's end are still detected")
                }
            }
            return try self.assumeIsolated { stage in try stage.rebalanced(event) }
        }
        box.consumer = consumer
        defer {
            // A stage that fails or starts over does not leave its group; it abandons its
            // member, and the coordinator expires it after its session timeout, which Tansu
            // handles. Leaving is what Tansu 0.6 cannot take from a member that is its group's
            // leader in the middle of a join: it keeps the departed member as the leader and the
            // group never forms again (seed 15: a member that failed while it owned nothing;
            // seed 27: every member's DB stage failed in the same second when PostgreSQL
            // restarted, and each left while the others' leaving had started a join). A
            // failure costs the session timeout before its partitions move; a stop still
            // leaves at once.
            let abandon = !stop.isRequested
            if abandon {
                logger.info("\(name): this member is abandoned without leaving the group (the broker expires it after session.timeout.ms)")
            }
            box.consumer = nil
            if abandon { consumer.abandon() } else { consumer.close() }
            progress.lead.remove(name)
        }
        try consumer.subscribe(configuration.sources.map(\.topic))
        var lag = LagReporter(stage: name, counters: counters)
        var resets = ResetDetector()
        var lastTopicCheck = ContinuousClock.now
        while !stop.isRequested {
            let batch = try consumer.poll(maxMessages: settings.batchSize, timeout: .milliseconds(100),
                                          linger: .milliseconds(settings.lingerMs))
            try await beforeBatch(consumer)
            // A rebalance inside poll may have taken partitions away: their new owner redoes them.
            let owned = owned(batch, by: consumer.assignment)
            if !owned.isEmpty {
                let offsets = nextOffsets(owned)
                counters.health.busy(name, "handling a batch of \(owned.count) events")
                try await handle(owned, offsets: offsets)
                counters.health.idle(name)
                consumer.commitAsync(offsets)
                counters.health.progressed(name)
            }
            if lag.update(consumer: consumer, tracker: tracker) {
                // Topics that vanished and came back: a group that assigned nothing while they
                // were missing is not always formed again by librdkafka when they reappear,
                // so the stage starts over with a fresh consumer once they all exist. That they
                // vanished shows as an unknown-topic error, or (when librdkafka only saw their
                // partition count drop to 0) as topic ids other than at the last assignment; a
                // member that owns nothing for another reason (more members than partitions)
                // sees the same ids and is left alone.
                if consumer.assignment.isEmpty && (consumer.sawUnknownTopic || box.assignedIds != nil)
                    && ContinuousClock.now - lastTopicCheck >= .seconds(5) {
                    lastTopicCheck = .now
                    if let ids = try? consumer.topicIds(topics, timeout: .seconds(3)), ids.count == topics.count,
                       consumer.sawUnknownTopic || ids != box.assignedIds {
                        throw TopicsRecreated(topics: topics)
                    }
                }
                let beyond = resets.check(consumer: consumer, tracker: tracker)
                if !beyond.isEmpty {
                    for (partition, next, high) in beyond {
                        reportReset("\(partition): the stored offset \(next) is beyond the partition's end \(high): the broker lost its log (recreated, or restarted without its data); reading it again from the beginning")
                    }
                    try resetPartitions(beyond.map(\.0), consumer: consumer)
                }
            }
            if !consumer.assignment.isEmpty { await progress.markReady(name) }
            // A partition owned by another member counts as done for this one (scale-out);
            // owning nothing (before the first assignment, or between a revoke and the next) does not.
            let allAtEnd = !consumer.assignment.isEmpty && consumer.assignment.isSubset(of: consumer.partitionsAtEnd)
            await progress.update(name, tracker: tracker, allAtEnd: allAtEnd)
            progress.lead.update(name, tracker.next)
        }
    }
}

/// How the topics' current ids compare with the ones a stage stored: `changed` when any id
/// is new or different (then they are to be recorded), `recreated` the topics that had an id
/// stored and now have another.
struct TopicIdComparison {
    var changed: Bool
    var recreated: [String]

    init(stored: [String: String], current: [String: String]) {
        changed = current.contains { stored[$0.key] != $0.value }
        recreated = current.filter { stored[$0.key] != nil && stored[$0.key] != $0.value }.keys.sorted()
    }
}

/// Topics a consuming stage reads were recreated. What the stage stored of them is already
/// dropped; it starts again with a fresh consumer, whose first assignment sees the new topics
/// (a member that joins while its metadata still shows the old topics can be given nothing).
struct TopicsRecreated: Error, CustomStringConvertible, RestartRequest {
    var topics: [String]
    var description: String { "topics \(topics.joined(separator: ", ")) were recreated; starting again with a fresh consumer" }
}

/// Lets the rebalance handler reach the consumer it belongs to (set once the consumer
/// exists), and keeps the topic ids seen at the last assignment that gave partitions.
/// `@unchecked Sendable`: written by the stage before its first poll and inside its polls
/// (the rebalance handler), read by the stage between polls: all on the stage's one thread.
final class ConsumerBox: @unchecked Sendable {
    var consumer: KafkaConsumer?
    var assignedIds: [String: String]?
}

/// Finds assigned partitions whose next offset lies beyond the high watermark that fetch
/// responses report (what a broker that lost a partition's log answers, e.g. Tansu, which
/// does not reply OFFSET_OUT_OF_RANGE). A partition must stay so for `patience` before it
/// counts, so a watermark cached from an earlier fetch is not mistaken for one.
struct ResetDetector {
    var patience: Duration = .seconds(3)
    private var since: [TopicPartition: ContinuousClock.Instant] = [:]

    mutating func check(consumer: KafkaConsumer, tracker: CatchUpTracker) -> [(TopicPartition, Int64, Int64)] {
        let now = ContinuousClock.now
        var found: [(TopicPartition, Int64, Int64)] = []
        for partition in consumer.assignment.sorted() {
            guard let next = tracker.next[partition], consumer.endBefore(next, in: partition) != nil else {
                since[partition] = nil
                continue
            }
            if let start = since[partition] {
                if now - start >= patience {
                    // The cached end may be older than this assignment; ask the broker.
                    if let confirmed = consumer.confirmedEndBefore(next, in: partition) {
                        found.append((partition, next, confirmed))
                        since[partition] = nil
                    } else {
                        since[partition] = .now
                    }
                }
            } else {
                since[partition] = now
            }
        }
        return found
    }
}

/// Sends events a stage cannot use to the dead-letter topic: the original bytes and key,
/// the reason, and where they came from (topic, partition, offset, plus the source file
/// and row headers they carried). Waits for delivery, so the stage commits its offsets only
/// after the dead letter is safe.
struct DeadLetterWriter {
    let producer: KafkaProducer
    let topic: String
    let stage: String
    let counters: PipelineCounters
    let logger: Logger

    func send(_ message: KafkaMessage, reason: String) async throws {
        logger.warning("\(stage): \(message.topic)[\(message.partition)] offset \(message.offset): \(reason); sent to \(topic)")
        var headers = message.headers.filter { $0.name == GenetikaHeader.sourceFile || $0.name == GenetikaHeader.sourceRow }
        headers += [
            KafkaHeader(GenetikaHeader.error, reason), KafkaHeader(GenetikaHeader.stage, stage),
            KafkaHeader(GenetikaHeader.sourceTopic, message.topic),
            KafkaHeader(GenetikaHeader.sourcePartition, String(message.partition)),
            KafkaHeader(GenetikaHeader.sourceOffset, String(message.offset)),
        ]
        try await producer.send(OutgoingMessage(topic: topic, key: message.key, value: message.value,
                                                timestamp: message.timestamp, headers: headers))
        counters.deadLettered(stage: stage)
    }
}

/// Tracks the next offset a consuming stage will process per partition, to tell when it has
/// caught up with the producer (for `--exit-when-done`).
struct CatchUpTracker: Sendable {
    private(set) var next: [TopicPartition: Int64] = [:]

    mutating func assigned(_ starts: [TopicPartition: Int64]) {
        for (partition, offset) in starts { next[partition] = offset }
    }

    mutating func revoked(_ partitions: [TopicPartition]) {
        for partition in partitions { next[partition] = nil }
    }

    mutating func processed(_ offsets: [TopicPartition: Int64]) {
        for (partition, offset) in offsets { next[partition] = max(next[partition] ?? 0, offset) }
    }

    /// True when this stage owns partitions and has processed each one it owns up to its
    /// target. A partition owned by another member (scale-out) is that member's to finish;
    /// owning nothing (between a revoke and the next assignment) is never "caught up".
    func isCaughtUp(_ targets: [TopicPartition: Int64]) -> Bool {
        !next.isEmpty && targets.allSatisfy { partition, target in
            guard let position = next[partition] else { return true }
            return position >= target
        }
    }
}

/// The messages of `batch` whose partition is in `assignment`, in order. Messages come in runs
/// of one partition, so the set is asked once a run rather than once a message.
func owned(_ batch: [KafkaMessage], by assignment: Set<TopicPartition>) -> [KafkaMessage] {
    var previous: KafkaMessage?
    for message in batch {
        if let previous, previous.partition == message.partition, previous.topic == message.topic { continue }
        // A partition no longer owned (rare: a rebalance inside the poll): filter message by message.
        guard assignment.contains(message.topicPartition) else { return batch.filter { assignment.contains($0.topicPartition) } }
        previous = message
    }
    return batch
}

/// The highest next-offset per partition of a batch (one dictionary update per run of a
/// partition, not per message).
func nextOffsets(_ batch: [KafkaMessage]) -> [TopicPartition: Int64] {
    var offsets: [TopicPartition: Int64] = [:]
    var index = batch.startIndex
    while index < batch.endIndex {
        let first = batch[index]
        var next = first.offset + 1
        index += 1
        while index < batch.endIndex, batch[index].partition == first.partition, batch[index].topic == first.topic {
            next = max(next, batch[index].offset + 1)
            index += 1
        }
        let partition = first.topicPartition
        offsets[partition] = max(offsets[partition] ?? 0, next)
    }
    return offsets
}

/// Publishes a consuming stage's lag per partition (high watermark from the last fetch −
/// next offset to process) as `genetika_consumer_lag`, at most once a second.
struct LagReporter {
    let stage: String
    let counters: PipelineCounters
    private var gauges: [TopicPartition: Gauge] = [:]
    private var last = ContinuousClock.now - .seconds(10)

    init(stage: String, counters: PipelineCounters) {
        self.stage = stage
        self.counters = counters
    }

    /// At most once a second (returns whether it ran): the gauges, and the total lag for `/health`.
    mutating func update(consumer: KafkaConsumer, tracker: CatchUpTracker) -> Bool {
        guard ContinuousClock.now - last >= .seconds(1) else { return false }
        last = ContinuousClock.now
        var total: Int64 = 0
        for partition in consumer.assignment {
            guard let high = consumer.cachedHighWatermark(partition) else { continue }
            let position = tracker.next[partition] ?? 0
            let lag = max(0, high - position)
            total += lag
            if counters.factory != nil {
                if gauges[partition] == nil { gauges[partition] = counters.lagGauge(stage: stage, partition: partition) }
                gauges[partition]?.record(Double(lag))
            }
        }
        counters.health.lag(stage, total)
        return true
    }
}
