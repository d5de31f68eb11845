import CoreMetrics
import Logging

/// What the DB and acker stages share: a consumer-group member on the source topics that
/// polls batches, hands the ones from partitions it still owns to the stage, and reports
/// its lag, its readiness and whether it has caught up.
protocol ConsumingStage: PipelineStage {
    var configuration: GenetikaConfiguration { get }
    var counters: PipelineCounters { get }
    var progress: PipelineProgress { get }
    var stop: StopSignal { get }
    var logger: Logger { get }
    var tracker: CatchUpTracker { get }
    /// Runs inside `poll` on assignment changes; returns where assigned partitions start.
    func rebalanced(_ event: RebalanceEvent) throws -> [TopicPartition: Int64]
    /// Work due after each poll, before its batch is handled (the acker's read-back).
    func beforeBatch() throws
    /// Handles one batch, all from partitions this member owns; `offsets` are the batch's
    /// next offsets per partition.
    func handle(_ batch: [KafkaMessage], offsets: [TopicPartition: Int64]) async throws
}

extension ConsumingStage {
    func beforeBatch() throws {}

    /// Joins the group `settings.groupId` on the source topics and handles batches of up to
    /// `batchSize` messages (waiting up to `lingerMs` to fill one) until the stop signal.
    func consume(_ settings: ConsumerStageConfiguration) async throws {
        let consumer = try KafkaConsumer(configuration: KafkaClientConfiguration(configuration.kafka), groupId: settings.groupId,
                                         name: name, logger: logger) { [unowned self] event in
            try self.assumeIsolated { stage in try stage.rebalanced(event) }
        }
        defer { consumer.close() }
        try consumer.subscribe(configuration.sources.map(\.topic))
        let sourcePartitions = configuration.sources.count * configuration.topics.partitions
        var lag = LagReporter(stage: name, counters: counters)
        while !stop.isRequested {
            let batch = try consumer.poll(maxMessages: settings.batchSize, timeout: .milliseconds(100),
                                          linger: .milliseconds(settings.lingerMs))
            try beforeBatch()
            // A rebalance inside poll may have taken partitions away: their new owner redoes them.
            let owned = batch.filter { consumer.assignment.contains($0.topicPartition) }
            if !owned.isEmpty {
                let offsets = nextOffsets(owned)
                try await handle(owned, offsets: offsets)
                consumer.commitAsync(offsets)
            }
            lag.update(consumer: consumer, tracker: tracker)
            if !consumer.assignment.isEmpty { await progress.markReady(name) }
            let allAtEnd = consumer.assignment.count == sourcePartitions && consumer.assignment.isSubset(of: consumer.partitionsAtEnd)
            await progress.update(name, tracker: tracker, allAtEnd: allAtEnd)
        }
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
        counters.deadLettered.add()
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

    /// True when this stage owns every target partition and has processed up to its target.
    func isCaughtUp(_ targets: [TopicPartition: Int64]) -> Bool {
        targets.allSatisfy { partition, target in
            guard let position = next[partition] else { return false }
            return position >= target
        }
    }
}

/// The highest next-offset per partition of a batch.
func nextOffsets(_ batch: [KafkaMessage]) -> [TopicPartition: Int64] {
    var offsets: [TopicPartition: Int64] = [:]
    for message in batch {
        offsets[message.topicPartition] = max(offsets[message.topicPartition] ?? 0, message.offset + 1)
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

    mutating func update(consumer: KafkaConsumer, tracker: CatchUpTracker) {
        guard counters.factory != nil, ContinuousClock.now - last >= .seconds(1) else { return }
        last = ContinuousClock.now
        for partition in consumer.assignment {
            guard let high = consumer.cachedHighWatermark(partition) else { continue }
            let position = tracker.next[partition] ?? 0
            if gauges[partition] == nil { gauges[partition] = counters.lagGauge(stage: stage, partition: partition) }
            gauges[partition]?.record(Double(max(0, high - position)))
        }
    }
}
