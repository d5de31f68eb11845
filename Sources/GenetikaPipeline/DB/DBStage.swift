import Logging
import GenetikaSupport
import GenetikaKafka
import GenetikaStorage

/// Consumes the source topics (group `stages.db.groupId`) and writes each event to its
/// table. Each batch's rows and the batch's next offsets are written in one database
/// transaction; on partition assignment the stage seeks to the offsets stored there. So
/// every event lands exactly once whatever crashes, and re-sent events upsert by id.
/// Events that cannot be written go to the dead-letter topic and the stage keeps going.
actor DBStage: ConsumingStage {
    nonisolated let name = "db"
    nonisolated let context: StageContext
    /// The stage's own thread (see `ConsumingStage.executor`).
    nonisolated let executor = ThreadExecutor(name: "genetika-db")
    private let afterBatch: (@Sendable (Int) throws -> Void)?
    private let decoders: [String: (index: Int, decoder: EventDecoder)]
    private(set) var tracker = CatchUpTracker()
    // Set while `run()` runs.
    private var sink: TableSink?
    private var deadLetters: DeadLetterWriter?
    private var batches = 0
    /// The epoch of each owned partition's claim (fencing tokens; none with SQLite), and the
    /// partitions whose writes were refused since (claimed by another member): their events
    /// are dropped until the group assigns them again.
    private var epochs: [TopicPartition: Int64] = [:]
    private var fenced: Set<TopicPartition> = []

    /// `afterBatch` runs after each committed batch with its number (tests inject failures there).
    init(context: StageContext, afterBatch: (@Sendable (Int) throws -> Void)? = nil) {
        self.context = context
        self.afterBatch = afterBatch
        var decoders: [String: (Int, EventDecoder)] = [:]
        for (index, source) in context.configuration.sources.enumerated() { decoders[source.topic] = (index, EventDecoder(source: source)) }
        self.decoders = decoders
    }

    deinit {
        executor.shutdown()
    }

    func run() async throws {
        let sink = try TableSinks.open(url: configuration.database.url, configuration: configuration)
        defer { sink.close(); self.sink = nil }
        try sink.prepare()
        self.sink = sink
        let producer = try KafkaProducer(configuration: clientConfiguration(configuration, counters), name: "db-dead-letters", logger: logger)
        defer { producer.close(); deadLetters = nil }
        deadLetters = DeadLetterWriter(producer: producer, topic: configuration.topics.deadLetter, stage: name, counters: counters, logger: logger)
        try await consume(configuration.db)
    }

    func rebalanced(_ event: RebalanceEvent) throws -> [TopicPartition: Int64] {
        switch event {
        case .assigned(let partitions):
            // Claimed first: a zombie's write still in progress commits before the claim, and
            // none after it; so the offsets read next are the last ones written.
            let claimed = try sink?.claim(group: configuration.db.groupId, member: memberName, partitions: partitions) ?? [:]
            epochs.merge(claimed) { $1 }
            fenced.subtract(partitions)
            // The database is authoritative: partitions without stored offsets start at the beginning.
            let stored = try sink?.storedOffsets(group: configuration.db.groupId, partitions: partitions) ?? [:]
            tracker.assigned(Dictionary(uniqueKeysWithValues: partitions.map { ($0, stored[$0] ?? 0) }))
            return Dictionary(uniqueKeysWithValues: partitions.map { ($0, stored[$0] ?? KafkaOffset.beginning) })
        case .revoked(let partitions):
            tracker.revoked(partitions)
            for partition in partitions { epochs[partition] = nil }
            fenced.subtract(partitions)
            return [:]
        }
    }

    func topicsIdentified(_ ids: [String: String]) throws {
        guard let sink else { return }
        let group = configuration.db.groupId
        let stored = try sink.topicIds(group: group)
        let comparison = TopicIdComparison(stored: stored, current: ids)
        guard comparison.changed else { return }
        let recreated = comparison.recreated
        for topic in recreated {
            reportReset("topic \(topic) was recreated (id \(stored[topic] ?? "?") → \(ids[topic] ?? "?")): its stored offsets no longer apply; reading it again from the beginning")
        }
        try sink.recordTopicIds(ids, resetting: recreated, group: group)
        if !recreated.isEmpty { throw TopicsRecreated(topics: recreated) }
    }

    func partitionsReset(_ partitions: [TopicPartition], assignment: Set<TopicPartition>) throws -> [TopicPartition: Int64] {
        try sink?.forgetOffsets(group: configuration.db.groupId, partitions: partitions)
        tracker.assigned(Dictionary(uniqueKeysWithValues: partitions.map { ($0, 0) }))
        return Dictionary(uniqueKeysWithValues: partitions.map { ($0, KafkaOffset.beginning) })
    }

    func handle(_ batch: [KafkaMessage], offsets: [TopicPartition: Int64]) async throws {
        guard let sink, let deadLetters else { return }
        counters.writing.started()
        var rows: [SinkRow] = []
        var partitions: [TopicPartition] = []   // rows[i] came from partitions[i]
        rows.reserveCapacity(batch.count)
        partitions.reserveCapacity(batch.count)
        var offsets = offsets
        for message in batch {
            // The consumer subscribes to exactly the source topics and only batches of partitions
            // it owns get here: an event of another topic cannot occur.
            guard let (index, decoder) = decoders[message.topic] else { preconditionFailure("db: event of unsubscribed topic \(message.topic)") }
            if !fenced.isEmpty && fenced.contains(message.topicPartition) { continue }
            do {
                rows.append(SinkRow(source: index, values: try decoder.decode(message.value)))
                partitions.append(message.topicPartition)
            } catch {
                try await deadLetters.send(message, reason: error.reason)
            }
        }
        for partition in fenced { offsets[partition] = nil }
        TestPausePoint.beforeCommit()
        while true {
            do {
                try sink.write(rows, offsets: offsets, group: configuration.db.groupId,
                               fence: epochs.filter { offsets[$0.key] != nil })
                break
            } catch let refused as FencedPartitions {
                // Another member owns these now: what this one holds of them is its to write.
                refuse(refused)
                let drop = Set(refused.partitions)
                let keep = partitions.indices.filter { !drop.contains(partitions[$0]) }
                rows = keep.map { rows[$0] }
                partitions = keep.map { partitions[$0] }
                for partition in drop { offsets[partition] = nil }
                if offsets.isEmpty { break }
            }
        }
        tracker.processed(offsets)
        counters.writing.finished()
        counters.eventsConsumed.add(batch.count)
        var perTable = [Int](repeating: 0, count: configuration.sources.count)
        for row in rows { perTable[row.source] += 1 }
        for (index, count) in perTable.enumerated() where count > 0 {
            counters.written(table: configuration.sources[index].table, count: count)
        }
        batches += 1
        try afterBatch?(batches)
    }

    /// Logs a refused write once per partition and claim, counts it, and stops handling those
    /// partitions until they are assigned again.
    private func refuse(_ refused: FencedPartitions) {
        fenced.formUnion(refused.partitions)
        counters.fencedWrites(stage: name, count: refused.partitions.count)
        logger.warning("db: \(refused); their events in hand are left to the new owner, and this member stops handling them until the group assigns them again")
    }
}
