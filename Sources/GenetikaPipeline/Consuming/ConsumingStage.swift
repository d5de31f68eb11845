import Logging
import GenetikaSupport
import GenetikaKafka

/// What the DB and acker stages share: a consumer-group member on the source topics that
/// polls batches, hands the ones from partitions it still owns to the stage, and reports
/// its lag, its readiness and whether it has caught up.
protocol ConsumingStage: ContextStage {
    /// The thread the stage runs on (its actor's executor): it blocks in `poll` and in its
    /// database, never on Swift's shared pool, and librdkafka's rebalance callback, which runs
    /// inside `poll`, is on the actor's thread by construction (`assumeIsolated`).
    nonisolated var executor: ThreadExecutor { get }
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
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

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

    /// Joins the group `settings.groupId` on the source topics and runs the stage's consumer
    /// loop until the stop: poll a batch of up to `batchSize` messages (waiting up to
    /// `lingerMs` to fill one), run `beforeBatch`, hand the events of owned partitions to `handle` (then commit their offsets to Kafka: the stage's
    /// own store stays the authority), and once a second look at the lag, at recreated topics
    /// and at partitions whose log the broker lost; then publish readiness and progress.
    func consume(_ settings: ConsumerStageConfiguration) async throws {
        let box = ConsumerBox()
        let consumer = try makeConsumer(settings, box: box)
        box.consumer = consumer
        defer { release(consumer, box: box) }
        try consumer.subscribe(configuration.sources.map(\.topic))
        var watch = ConsumerWatch(stage: name, counters: counters)
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
            if watch.lag.update(consumer: consumer, tracker: tracker) {
                try checkTopics(consumer, box: box, watch: &watch)
                try checkResets(consumer, watch: &watch)
            }
            await publishProgress(consumer)
        }
    }

    /// The group member, with its rebalance handler: every assignment (a broker restart makes
    /// the group assign again) first checks whether a topic was recreated since the stored
    /// offsets were written, then lets the stage say where each assigned partition starts.
    private func makeConsumer(_ settings: ConsumerStageConfiguration, box: ConsumerBox) throws -> KafkaConsumer {
        let topics = identifiedTopics
        return try KafkaConsumer(configuration: clientConfiguration(configuration, counters), groupId: settings.groupId,
                                 name: name, logger: logger, contents: messageContents) { [unowned self, logger, name] event in
            if case .assigned(let partitions) = event, let consumer = box.consumer {
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
    }

    /// A stage that fails or starts over does not leave its group; it abandons its member,
    /// and the coordinator expires it after its session timeout, which Tansu handles. Leaving
    /// is what Tansu 0.6 cannot take from a member that is its group's leader in the middle of
    /// a join: it keeps the departed member as the leader and the group never forms again
    /// (seed 15: a member that failed while it owned nothing; seed 27: every member's DB stage
    /// failed in the same second when PostgreSQL restarted, and each left while the others'
    /// leaving had started a join). A failure costs the session timeout before its partitions
    /// move; a stop still leaves at once.
    private func release(_ consumer: KafkaConsumer, box: ConsumerBox) {
        let abandon = !stop.isRequested
        if abandon {
            logger.info("\(name): this member is abandoned without leaving the group (the broker expires it after session.timeout.ms)")
        }
        box.consumer = nil
        if abandon { consumer.abandon() } else { consumer.close() }
        progress.lead.remove(name)
    }

    /// Topics that vanished and came back: a group that assigned nothing while they were
    /// missing is not always formed again by librdkafka when they reappear, so the stage
    /// starts over with a fresh consumer once they all exist. That they vanished shows as an
    /// unknown-topic error, or (when librdkafka only saw their partition count drop to 0) as
    /// topic ids other than at the last assignment; a member that owns nothing for another
    /// reason (more members than partitions) sees the same ids and is left alone.
    private func checkTopics(_ consumer: KafkaConsumer, box: ConsumerBox, watch: inout ConsumerWatch) throws {
        guard consumer.assignment.isEmpty && (consumer.sawUnknownTopic || box.assignedIds != nil)
            && ContinuousClock.now - watch.lastTopicCheck >= .seconds(5) else { return }
        watch.lastTopicCheck = .now
        let topics = identifiedTopics
        if let ids = try? consumer.topicIds(topics, timeout: .seconds(3)), ids.count == topics.count,
           consumer.sawUnknownTopic || ids != box.assignedIds {
            throw TopicsRecreated(topics: topics)
        }
    }

    /// Partitions whose stored position lies beyond their end (the broker lost their log) are
    /// reported and read again from the beginning.
    private func checkResets(_ consumer: KafkaConsumer, watch: inout ConsumerWatch) throws {
        let beyond = watch.resets.check(consumer: consumer, tracker: tracker)
        guard !beyond.isEmpty else { return }
        for (partition, next, high) in beyond {
            reportReset("\(partition): the stored offset \(next) is beyond the partition's end \(high): the broker lost its log (recreated, or restarted without its data); reading it again from the beginning")
        }
        try resetPartitions(beyond.map(\.0), consumer: consumer)
    }

    /// Readiness (the member owns partitions), and progress towards "caught up". A partition
    /// owned by another member counts as done for this one (scale-out); owning nothing (before
    /// the first assignment, or between a revoke and the next) does not.
    private func publishProgress(_ consumer: KafkaConsumer) async {
        if !consumer.assignment.isEmpty { await progress.markReady(name) }
        let allAtEnd = !consumer.assignment.isEmpty && consumer.assignment.isSubset(of: consumer.partitionsAtEnd)
        await progress.update(name, tracker: tracker, allAtEnd: allAtEnd)
        progress.lead.update(name, tracker.next)
    }
}

/// What the consumer loop watches once a second: the lag, partitions beyond their end, and
/// when it last asked for the topics' ids.
struct ConsumerWatch {
    var lag: LagReporter
    var resets = ResetDetector()
    var lastTopicCheck = ContinuousClock.now

    init(stage: String, counters: PipelineCounters) {
        lag = LagReporter(stage: stage, counters: counters)
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
