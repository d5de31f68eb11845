import Logging
import GenetikaSupport
import GenetikaJSON
import GenetikaKafka
import GenetikaStorage
import CoreMetrics

/// Consumes the source topics (group `stages.acker.groupId`), records which topics each id
/// has reached, and produces exactly one ack per id to the ack topic once it reached all.
///
/// Per batch: update the ids' state in memory, produce the acks that became due and wait
/// for their delivery, then commit the state, the consumed offsets and the ack topic's
/// offsets in one transaction of the state store (SQLite, or the members' shared PostgreSQL). A crash after the acks went out but before the commit
/// leaves acks the state does not know; so on every partition assignment the stage first
/// reads its own ack partition back from the last recorded ack offset and marks what it
/// finds as acked. An ack is therefore never lost (the batch is redone) and never produced
/// twice (the read-back finds it). Acks go to the same partition number as their id's
/// source events, so the member owning source partition p owns ack partition p.
actor AckerStage: ConsumingStage {
    nonisolated let name = "acker"
    nonisolated let context: StageContext
    /// The stage's own thread (see `ConsumingStage.executor`).
    nonisolated let executor = ThreadExecutor(name: "genetika-acker")
    private let afterAcks: (@Sendable (Int) throws -> Void)?
    private let topicIndex: [String: Int]
    private let numericIds: Bool
    private(set) var tracker = CatchUpTracker()
    private var pendingReadBack: Set<Int32> = []
    /// The ids' states and the rules of their tiers (memory, the pending log, `acker_ids`).
    private var state: AckerState
    // Set while `run()` runs.
    private var store: (any AckerStateStore)?
    private var producer: KafkaProducer?
    private var readBack: KafkaConsumer?
    private var deadLetters: DeadLetterWriter?
    private var batches = 0
    /// Fencing of the acks, with a shared PostgreSQL (nil with SQLite: one process).
    private var fence: AckerFence?
    /// Partitions whose acks were refused (claimed by another member): dropped until assigned again.
    private var fenced: Set<TopicPartition> = []

    /// `afterAcks` runs after a batch's acks (at least one) were delivered and before its
    /// state is committed, with the batch number (tests inject crashes there).
    init(context: StageContext, afterAcks: (@Sendable (Int) throws -> Void)? = nil) {
        self.init(context: context, afterAcks: afterAcks, waitingCapacity: AckerState.defaultWaitingCapacity,
                  pendingSlack: AckerState.defaultPendingSlack)
    }

    /// `waitingCapacity`: how many waiting ids stay in memory; `pendingSlack`: see
    /// `AckerState.defaultPendingSlack` (tests make both small).
    init(context: StageContext, afterAcks: (@Sendable (Int) throws -> Void)?, waitingCapacity: Int, pendingSlack: Int) {
        let configuration = context.configuration
        state = AckerState(topicCount: configuration.sources.count, waitingCapacity: waitingCapacity, pendingSlack: pendingSlack)
        self.context = context
        self.afterAcks = afterAcks
        topicIndex = Dictionary(uniqueKeysWithValues: configuration.sources.enumerated().map { ($1.topic, $0) })
        numericIds = configuration.sources.allSatisfy { $0.keyColumn?.type == .integer }
    }

    deinit {
        executor.shutdown()
    }

    static func statePath(_ configuration: GenetikaConfiguration) -> String {
        configuration.resolve(configuration.stateDirectory) + "/acker.db"
    }

    /// Opens (creating) the acker's state for `configuration`.
    static func openStore(_ configuration: GenetikaConfiguration) throws -> AckerStore {
        try AckerStore(path: statePath(configuration), topicCount: configuration.sources.count,
                       integerIds: configuration.sources.allSatisfy { $0.keyColumn?.type == .integer })
    }

    func run() async throws {
        let shared = TableSinks.sqlitePath(url: configuration.database.url, configuration: configuration) == nil
        let store: any AckerStateStore = shared
            ? try PostgresAckerStore(url: configuration.database.url, group: configuration.acker.groupId, topicCount: configuration.sources.count)
            : try Self.openStore(configuration)
        defer { store.close(); self.store = nil }
        self.store = store
        // What a failed run held in memory may be ahead of its store: start from the store.
        // (A shared store is loaded partition by partition, as the group assigns them.)
        state.clear()
        if !store.shared { try state.load(from: store, partitions: []) }
        let clientConfiguration = GenetikaPipeline.clientConfiguration(configuration, counters)
        if shared {
            fence = try AckerFence(url: configuration.database.url, group: configuration.acker.groupId)
        }
        defer { fence?.close(); fence = nil }
        var producerConfiguration = clientConfiguration
        if fence != nil { producerConfiguration["message.timeout.ms"] = String(AckerFence.deliveryTimeoutMs) }
        let producer = try KafkaProducer(configuration: producerConfiguration, name: "acker-producer", logger: logger)
        defer { producer.close(); self.producer = nil; deadLetters = nil }
        self.producer = producer
        deadLetters = DeadLetterWriter(producer: producer, topic: configuration.topics.deadLetter, stage: name, counters: counters, logger: logger)
        let readBack = try KafkaConsumer(configuration: clientConfiguration, groupId: configuration.acker.groupId + "-readback",
                                         name: "acker-readback", logger: logger)
        defer { readBack.close(); self.readBack = nil }
        self.readBack = readBack
        try await consume(configuration.acker)
    }

    func beforeBatch(_ consumer: KafkaConsumer) async throws {
        guard let store else { return }
        if !pendingReadBack.isEmpty, let readBack {
            do {
                try readBackAcks(store: store, consumer: readBack)
            } catch let beyond as PartitionBeyondEnd {
                // The ack (or incomplete) partition lost its log: so did what the state says was sent there.
                reportReset("\(beyond); forgetting partition \(beyond.partition.partition) and reading it again from the beginning")
                try resetPartitions([beyond.partition], consumer: consumer)
                return
            } catch let refused as FencedPartitions {
                // Claimed by another member meanwhile: its read-back, its partitions.
                fenced.formUnion(refused.partitions)
                pendingReadBack.subtract(refused.partitions.map(\.partition))
                counters.fencedWrites(stage: name, count: refused.partitions.count)
                logger.warning("acker: read-back \(refused)")
            }
        }
        try await reportIncomplete(consumer: consumer, store: store)
    }

    private var lastIncompleteCheck = ContinuousClock.now

    /// Every few seconds (a tenth of `incompleteAfterSeconds`, from 1 to 30 s), while the
    /// member owns partitions and has read all there is in them: reports the ids of those
    /// partitions that reached some but not all source topics longer than
    /// `incompleteAfterSeconds` ago, once each (an event on the incomplete topic, delivered
    /// before the id is marked reported; the topic is read back on assignment like the ack
    /// topic, so a crash or a new owner does not report it again), and sets the gauge of
    /// reported ids still without an ack. Reading everything first keeps a backlog (a
    /// restart after downtime) from passing for missing events.
    private func reportIncomplete(consumer: KafkaConsumer, store: any AckerStateStore) async throws {
        let after = configuration.acker.incompleteAfterSeconds
        guard after > 0, let producer else { return }
        let interval = Duration.seconds(min(30, max(1, after / 10)))
        guard ContinuousClock.now - lastIncompleteCheck >= interval else { return }
        let sources = Set(configuration.sources.map(\.topic))
        let owned = consumer.assignment.filter { sources.contains($0.topic) }
        // Read all there is *and processed it*: this runs after a poll, before its batch is
        // handled, so a partition at its end may still have events in hand; the positions
        // must have reached the high watermarks the fetches reported.
        guard !owned.isEmpty, owned.isSubset(of: consumer.partitionsAtEnd),
              owned.allSatisfy({ partition in
                  consumer.cachedHighWatermark(partition).map { (tracker.next[partition] ?? 0) >= $0 } ?? false
              }) else { return }
        lastIncompleteCheck = .now
        let now = nowMilliseconds()
        let numbers = Set(owned.map(\.partition))
        let cutoff = now - Int64(after) * 1000
        let (reported, overdueStored) = try store.incomplete(in: numbers, olderThan: cutoff)
        let overdueWaiting = state.overdue(in: numbers, olderThan: cutoff)
        let overdue = overdueStored + overdueWaiting
        guard !overdue.isEmpty else {
            counters.incompleteIds.set(reported)
            return
        }
        let messages = overdue.map { incompleteMessage($0, now: now) }
        let offsets = try Self.nextOffsets(delivered: try await producer.sendAll(messages))
        // Reported ids are set aside in `acker_ids` (out of memory and out of the pending log).
        try store.transaction {
            for entry in overdueWaiting { try store.save(entry) }
            for entry in overdue { try store.markReported(entry.id, partition: entry.partition) }
            try store.setOffsets(offsets)
        }
        for entry in overdueWaiting { state.stopWaiting(entry.id) }
        for entry in overdue.prefix(10) {
            let (seen, missing) = topics(of: entry)
            let first = entry.timestamps.compactMap { $0 }.min() ?? now
            logger.warning("acker: id \(entry.id) is incomplete after \((now - first) / 1000) s: it reached \(seen.joined(separator: ", ")) but not \(missing.joined(separator: ", ")); reported to \(configuration.topics.incomplete)")
        }
        if overdue.count > 10 {
            logger.warning("acker: \(overdue.count - 10) more ids are incomplete after \(after) s; reported to \(configuration.topics.incomplete)")
        }
        counters.incompleteReported.add(overdue.count)
        counters.incompleteIds.set(reported + overdue.count)
    }

    private func topics(of entry: AckerEntry) -> (seen: [String], missing: [String]) {
        let all = configuration.sources.map(\.topic)
        let seen = all.filter { entry.seen & (Int64(1) << Int64(topicIndex[$0]!)) != 0 }
        return (seen, all.filter { !seen.contains($0) })
    }

    /// `{"id", "seen": [topics], "missing": [topics], "first_seen_ms", "age_ms"}`, keyed by id,
    /// on the id's partition number (like its ack).
    private func incompleteMessage(_ entry: AckerEntry, now: Int64) -> OutgoingMessage {
        let (seen, missing) = topics(of: entry)
        let first = entry.timestamps.compactMap { $0 }.min() ?? now
        let id: JSONValue = numericIds ? Int64(entry.id).map(JSONValue.int) ?? .string(entry.id) : .string(entry.id)
        let value = JSONWriter.serialize(.object(JSONObject([
            ("id", id), ("seen", .array(seen.map(JSONValue.string))), ("missing", .array(missing.map(JSONValue.string))),
            ("first_seen_ms", .int(first)), ("age_ms", .int(now - first)),
        ])))
        return OutgoingMessage(topic: configuration.topics.incomplete, partition: entry.partition, key: Array(entry.id.utf8),
                               value: value, timestamp: now)
    }

    var identifiedTopics: [String] { configuration.sources.map(\.topic) + [configuration.topics.ack] }

    /// The acker works from keys, topics and timestamps; only a keyless event (dead-lettered
    /// whole) needs its value and headers.
    nonisolated var messageContents: KafkaConsumer.MessageContents { .keyUnlessKeyless }

    func topicsIdentified(_ ids: [String: String]) throws {
        guard let store else { return }
        let comparison = TopicIdComparison(stored: try store.topicIds(), current: ids)
        guard comparison.changed else { return }
        let recreated = comparison.recreated
        if !recreated.isEmpty {
            reportReset("topics \(recreated.joined(separator: ", ")) were recreated: the acker state describes logs that are gone; forgetting it and reading every topic again from the beginning")
            state.clear()
        }
        try store.recordTopicIds(ids, forgetAll: !recreated.isEmpty)
        if !recreated.isEmpty { throw TopicsRecreated(topics: recreated) }
    }

    /// Forgets every partition number involved (its ids and the offsets of each topic's
    /// partition with that number): those source partitions are read again from the
    /// beginning and that ack partition is read back from its beginning.
    func partitionsReset(_ partitions: [TopicPartition], assignment: Set<TopicPartition>) throws -> [TopicPartition: Int64] {
        let numbers = Set(partitions.map(\.partition))
        for number in numbers.sorted() { try store?.forget(partition: number) }
        state.forget(partitions: numbers)
        pendingReadBack.formUnion(numbers)
        let sources = Set(configuration.sources.map(\.topic))
        let restart = assignment.filter { numbers.contains($0.partition) && sources.contains($0.topic) }
        tracker.assigned(Dictionary(uniqueKeysWithValues: restart.map { ($0, 0) }))
        return Dictionary(uniqueKeysWithValues: restart.map { ($0, KafkaOffset.beginning) })
    }

    func handle(_ batch: [KafkaMessage], offsets: [TopicPartition: Int64]) async throws {
        guard let store, let producer, let deadLetters else { return }
        counters.acking.started()
        batches += 1
        var batch = batch, offsets = offsets
        if !fenced.isEmpty {
            batch = batch.filter { !fenced.contains($0.topicPartition) }
            offsets = offsets.filter { !fenced.contains($0.key) }
            if offsets.isEmpty { return }
        }
        try await process(batch, offsets: offsets, store: store, producer: producer, deadLetters: deadLetters, batch: batches)
    }

    func rebalanced(_ event: RebalanceEvent) throws -> [TopicPartition: Int64] {
        switch event {
        case .assigned(let partitions):
            fenced.subtract(partitions)
            if let fence {
                // Nothing is read back or sent for these partitions until a lease their previous
                // owner may still hold has run out: its acks have landed or failed by then.
                let wait = try fence.claim(partitions)
                if wait > .zero {
                    logger.info("acker: waiting \(wait.milliseconds) ms for the previous owner's lease on \(partitions.count) partitions to run out")
                    blockThread(for: wait)
                }
            }
            if let store, store.shared {
                // What another member left of these partitions: their waiting ids, from the
                // shared state (in proportion to the waiting ids, not to the history).
                let numbers = Set(partitions.map(\.partition))
                state.forget(partitions: numbers)
                let started = ContinuousClock.now
                let loaded = try state.load(from: store, partitions: numbers)
                let took = ContinuousClock.now - started
                logger.info("acker: loaded \(loaded) waiting ids of partitions \(numbers.sorted()) from the shared state in \(took.milliseconds) ms")
            }
            let stored = try store?.offsets(partitions) ?? [:]
            tracker.assigned(Dictionary(uniqueKeysWithValues: partitions.map { ($0, stored[$0] ?? 0) }))
            pendingReadBack.formUnion(partitions.map(\.partition))
            return Dictionary(uniqueKeysWithValues: partitions.map { ($0, stored[$0] ?? KafkaOffset.beginning) })
        case .revoked(let partitions):
            tracker.revoked(partitions)
            fence?.revoked(partitions)
            fenced.subtract(partitions)
            // A read-back still due for them is the next owner's: this member no longer owns
            // those ack partitions (and, with a shared state, must not write their offsets).
            pendingReadBack.subtract(partitions.map(\.partition))
            if let store, store.shared {
                // The next owner continues from the shared state; what this member holds goes stale.
                let numbers = Set(partitions.map(\.partition))
                state.forget(partitions: numbers)
                store.release(partitions: numbers)
            }
            // Their waiting ids stay in memory and in the pending log, in step with the stored
            // offsets: if the partitions come back, reading resumes from those offsets (and the
            // ack partition is read back for what another member acked meanwhile).
            return [:]
        }
    }

    /// Reads the ack and incomplete topics' newly assigned partitions from the last recorded
    /// offsets to their end — all in one pass, since on a broker that answers a fetch only
    /// when its wait expires each pass costs that wait — and marks every id found there as
    /// acked, or as reported incomplete, in one transaction with the new offsets.
    private func readBackAcks(store: any AckerStateStore, consumer: KafkaConsumer) throws {
        let ack = configuration.topics.ack
        let numbers = pendingReadBack.sorted()
        let partitions = numbers.flatMap { [TopicPartition(ack, $0), TopicPartition(configuration.topics.incomplete, $0)] }
        let stored = try store.offsets(partitions)
        let starts = Dictionary(uniqueKeysWithValues: partitions.map { ($0, stored[$0] ?? 0) })
        var next = starts
        var found: [TopicPartition: [String]] = [:]
        counters.health.busy(name, "reading back \(ack) and \(configuration.topics.incomplete) partitions \(numbers.map(String.init).joined(separator: ", "))")
        defer { counters.health.idle(name) }
        try consumer.readToEnd(starts, timeout: .seconds(60), stop: stop) { message in
            let partition = message.topicPartition
            next[partition] = max(next[partition] ?? 0, message.offset + 1)
            if let id = message.keyText { found[partition, default: []].append(id) }
        }
        try store.transaction {
            // Fenced like a batch: what it records is the shared state of partitions it owns.
            try store.fence(fence?.epochs.filter { numbers.contains($0.key.partition) } ?? [:])
            for (partition, ids) in found {
                for id in ids {
                    if partition.topic == ack {
                        try store.markAcked(id, partition: partition.partition)
                    } else {
                        // A waiting id reported incomplete is set aside with what is known of it.
                        if let entry = state.waitingEntry(id) { try store.save(entry) }
                        try store.markReported(id, partition: partition.partition)
                    }
                }
            }
            try store.setOffsets(next)
        }
        for ids in found.values {
            for id in ids { state.stopWaiting(id) }
        }
        for (partition, ids) in found.sorted(by: { $0.key < $1.key }) where partition.topic == ack {
            logger.info("acker read back \(partition) from offset \(starts[partition] ?? 0): \(ids.count) acks were sent but not recorded")
        }
        pendingReadBack = []
    }

    private func process(_ batch: [KafkaMessage], offsets: [TopicPartition: Int64], store: any AckerStateStore, producer: KafkaProducer,
                         deadLetters: DeadLetterWriter, batch number: Int) async throws {
        let received = nowMillisecondsPrecise()
        // One read transaction for the batch's lookups rather than one per lookup.
        try store.beginRead()
        defer { store.endRead() }
        // A shared store: one query for what is stored of the ids that are neither waiting nor just acked.
        if store.shared { try store.prefetch(state.unknownIds(in: batch)) }
        let changes = try state.apply(batch, topicIndex: topicIndex, store: store)
        let due = changes.due
        store.endRead()
        for message in changes.keyless { try await deadLetters.send(message, reason: "event without a key (the id)") }
        if !due.isEmpty, let refused = try leaseRefused(offsets), !refused.isEmpty {
            // Another member owns these now: their events in hand, and the acks they made due, are its.
            fenced.formUnion(refused)
            counters.fencedWrites(stage: name, count: refused.count)
            logger.warning("acker: \(FencedPartitions(partitions: refused)); their acks in hand are left to the new owner, and this member stops handling them until the group assigns them again")
            let keep = batch.filter { !fenced.contains($0.topicPartition) }
            let keepOffsets = offsets.filter { !fenced.contains($0.key) }
            guard !keepOffsets.isEmpty else { return }
            return try await process(keep, offsets: keepOffsets, store: store, producer: producer, deadLetters: deadLetters, batch: number)
        }
        let acks = due.map { ackMessage($0, received: received) }
        let reports = try await producer.sendAll(acks)
        if fence != nil, let readBack, reports.contains(where: { $0.error?.codeName == "_MSG_TIMED_OUT" }) {
            // Not delivered within the lease's bound (the broker unreachable): some may have
            // landed. What the ack partitions hold is read back, then the batch is done again.
            logger.warning("acker: \(reports.filter { $0.error != nil }.count) acks not delivered within \(AckerFence.deliveryTimeoutMs) ms; reading the ack partitions back and handling the batch again")
            store.endRead()
            pendingReadBack.formUnion(due.map(\.partition))
            try readBackAcks(store: store, consumer: readBack)
            return try await process(batch, offsets: offsets, store: store, producer: producer, deadLetters: deadLetters, batch: number)
        }
        let ackOffsets = try Self.nextOffsets(delivered: reports)
        if !acks.isEmpty { try afterAcks?(number) }
        guard try commit(changes, offsets: offsets, ackOffsets: ackOffsets, store: store) else { return }
        state.committed(changes)
        try state.compact(store: store, epochs: fence?.epochs ?? [:], logger: logger)
        if !acks.isEmpty { counters.acking.finished() }
        tracker.processed(offsets)
        // The delay histogram first: whoever sees the ack count sees these delays too.
        for (entry, ack) in zip(due, acks) {
            let latest = entry.timestamps.compactMap { $0 }.max() ?? 0
            counters.ackDelay?.record(Double((ack.timestamp ?? latest) - latest))
        }
        counters.eventsConsumed.add(batch.count)
        counters.acks.add(acks.count)
    }

    /// Before a batch's acks go out (with a shared PostgreSQL): the partitions of `offsets`
    /// this member's lease no longer covers (claimed by another member), or nil with SQLite.
    /// The test-only pause point sits here, between the lease check and the hand-over.
    private func leaseRefused(_ offsets: [TopicPartition: Int64]) throws -> [TopicPartition]? {
        guard let fence else {
            TestPausePoint.beforeCommit()
            return nil
        }
        let refused = try fence.refused(Set(offsets.keys))
        TestPausePoint.beforeCommit()
        return refused.isEmpty && !fence.leaseHeld ? try fence.refused(Set(offsets.keys)) : refused
    }

    /// Commits a batch's state changes with the consumed offsets and the ack topic's offsets;
    /// returns false when another member claimed one of the partitions meanwhile (nothing is
    /// written, and the new owner reads back what was sent).
    private func commit(_ changes: AckerState.BatchChanges, offsets: [TopicPartition: Int64], ackOffsets: [TopicPartition: Int64],
                        store: any AckerStateStore) throws -> Bool {
        do {
            try store.transaction {
                try store.fence(fence?.epochs.filter { offsets[$0.key] != nil } ?? [:])
                try state.record(changes, in: store)
                try store.setOffsets(offsets)
                try store.setOffsets(ackOffsets)
            }
            return true
        } catch let refused as FencedPartitions {
            fenced.formUnion(refused.partitions)
            counters.fencedWrites(stage: name, count: refused.partitions.count)
            logger.warning("acker: state commit \(refused)")
            return false
        }
    }

    /// The next offset after the last delivered message of each partition the acker's own
    /// messages (acks, incomplete reports) went to; throws the first failed delivery.
    private static func nextOffsets(delivered reports: [DeliveryReport]) throws -> [TopicPartition: Int64] {
        if let failed = reports.first(where: { $0.error != nil }), let error = failed.error { throw error }
        var offsets: [TopicPartition: Int64] = [:]
        for report in reports {
            let partition = TopicPartition(report.topic, report.partition)
            offsets[partition] = max(offsets[partition] ?? 0, report.offset + 1)
        }
        return offsets
    }

    /// `{"id": …, "latest_event_ms": …, "ack_ms": …, "topics": {"topic1": ms, …}}`, keyed by
    /// id, on the same partition number as the id's source events. `received`: when the
    /// batch that completed the id was taken in (precise epoch ms), for the delay's split.
    private func ackMessage(_ entry: AckerEntry, received: Double) -> OutgoingMessage {
        let precise = nowMillisecondsPrecise()
        let ackTime = Int64(precise)
        let latest = entry.timestamps.compactMap { $0 }.max() ?? ackTime
        counters.ackProcessing.record(precise - received)
        counters.ackTransit.record(received - Double(latest))
        var topics = JSONObject()
        for source in configuration.sources {
            topics[source.topic] = entry.timestamps[topicIndex[source.topic]!].map { .int($0) } ?? .null
        }
        let id: JSONValue = numericIds ? Int64(entry.id).map(JSONValue.int) ?? .string(entry.id) : .string(entry.id)
        let value = JSONWriter.serialize(.object(JSONObject([
            ("id", id), ("latest_event_ms", .int(latest)), ("ack_ms", .int(ackTime)), ("topics", .object(topics)),
        ])))
        return OutgoingMessage(topic: configuration.topics.ack, partition: entry.partition, key: Array(entry.id.utf8),
                               value: value, timestamp: ackTime)
    }
}
