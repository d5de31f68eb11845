import Logging

/// Consumes the source topics (group `stages.db.groupId`) and writes each event to its
/// table. Each batch's rows and the batch's next offsets are written in one database
/// transaction; on partition assignment the stage seeks to the offsets stored there. So
/// every event lands exactly once whatever crashes, and re-sent events upsert by id.
/// Events that cannot be written go to the dead-letter topic and the stage keeps going.
public actor DBStage: PipelineStage {
    public nonisolated let name = "db"
    private let executor = ThreadExecutor(name: "genetika-db")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private let configuration: GenetikaConfiguration
    private let counters: PipelineCounters
    private let progress: PipelineProgress
    private let stop: StopSignal
    private let logger: Logger
    private let afterBatch: (@Sendable (Int) throws -> Void)?
    private let decoders: [String: (index: Int, decoder: EventDecoder)]
    private var sink: TableSink?
    private var tracker = CatchUpTracker()

    /// `afterBatch` runs after each committed batch with its number (tests inject failures there).
    public init(configuration: GenetikaConfiguration, counters: PipelineCounters, progress: PipelineProgress,
                stop: StopSignal, logger: Logger, afterBatch: (@Sendable (Int) throws -> Void)? = nil) {
        self.configuration = configuration
        self.counters = counters
        self.progress = progress
        self.stop = stop
        self.logger = logger
        self.afterBatch = afterBatch
        var decoders: [String: (Int, EventDecoder)] = [:]
        for (index, source) in configuration.sources.enumerated() { decoders[source.topic] = (index, EventDecoder(source: source)) }
        self.decoders = decoders
    }

    deinit {
        executor.shutdown()
    }

    public func run() async throws {
        let sink = try TableSinks.open(url: configuration.database.url, configuration: configuration)
        defer { sink.close(); self.sink = nil }
        try sink.prepare()
        self.sink = sink
        let clientConfiguration = KafkaClientConfiguration(configuration.kafka)
        let deadLetters = DeadLetterWriter(
            producer: try KafkaProducer(configuration: clientConfiguration, name: "db-dead-letters", logger: logger),
            topic: configuration.topics.deadLetter, stage: name, counters: counters, logger: logger)
        defer { deadLetters.producer.close() }
        let consumer = try KafkaConsumer(configuration: clientConfiguration, groupId: configuration.db.groupId,
                                         name: "db", logger: logger) { [unowned self] event in
            try self.assumeIsolated { stage in try stage.rebalanced(event) }
        }
        defer { consumer.close() }
        try consumer.subscribe(configuration.sources.map(\.topic))
        var batches = 0
        let sourcePartitions = configuration.sources.count * configuration.topics.partitions
        var lag = LagReporter(stage: name, counters: counters)
        while !stop.isRequested {
            let batch = try consumer.poll(maxMessages: configuration.db.batchSize, timeout: .milliseconds(100),
                                          linger: .milliseconds(configuration.db.lingerMs))
            // A rebalance inside poll may have taken partitions away: their new owner redoes them.
            let owned = batch.filter { consumer.assignment.contains($0.topicPartition) }
            if !owned.isEmpty {
                try await write(owned, sink: sink, deadLetters: deadLetters)
                consumer.commitAsync(nextOffsets(owned))
                batches += 1
                try afterBatch?(batches)
            }
            lag.update(consumer: consumer, tracker: tracker)
            if !consumer.assignment.isEmpty { await progress.markReady(name) }
            let allAtEnd = consumer.assignment.count == sourcePartitions && consumer.assignment.isSubset(of: consumer.partitionsAtEnd)
            await progress.update(name, tracker: tracker, allAtEnd: allAtEnd)
        }
    }

    private func rebalanced(_ event: RebalanceEvent) throws -> [TopicPartition: Int64] {
        switch event {
        case .assigned(let partitions):
            // The database is authoritative: partitions without stored offsets start at the beginning.
            let stored = try sink?.storedOffsets(group: configuration.db.groupId, partitions: partitions) ?? [:]
            tracker.assigned(Dictionary(uniqueKeysWithValues: partitions.map { ($0, stored[$0] ?? 0) }))
            return Dictionary(uniqueKeysWithValues: partitions.map { ($0, stored[$0] ?? KafkaOffset.beginning) })
        case .revoked(let partitions):
            tracker.revoked(partitions)
            return [:]
        }
    }

    private func write(_ batch: [KafkaMessage], sink: TableSink, deadLetters: DeadLetterWriter) async throws {
        var rows: [SinkRow] = []
        rows.reserveCapacity(batch.count)
        for message in batch {
            guard let (index, decoder) = decoders[message.topic] else {
                try await deadLetters.send(message, reason: "unknown topic \(message.topic)")
                continue
            }
            do {
                rows.append(SinkRow(source: index, values: try decoder.decode(message.value)))
            } catch {
                try await deadLetters.send(message, reason: error.reason)
            }
        }
        let offsets = nextOffsets(batch)
        try sink.write(rows, offsets: offsets, group: configuration.db.groupId)
        tracker.processed(offsets)
        counters.eventsConsumed.add(batch.count)
        var perTable = [Int](repeating: 0, count: configuration.sources.count)
        for row in rows { perTable[row.source] += 1 }
        for (index, count) in perTable.enumerated() where count > 0 {
            counters.written(table: configuration.sources[index].table, count: count)
        }
    }
}
