import Logging
import GenetikaSupport
import GenetikaJSON
import GenetikaKafka
import GenetikaStorage

/// Consumes the source topics (group `stages.acker.groupId`), records which topics each id
/// has reached, and produces exactly one ack per id to the ack topic once it reached all.
///
/// Per batch: update the ids' state in memory, produce the acks that became due and wait
/// for their delivery, then commit the state, the consumed offsets and the ack topic's
/// offsets in one SQLite transaction. A crash after the acks went out but before the commit
/// leaves acks the state does not know; so on every partition assignment the stage first
/// reads its own ack partition back from the last recorded ack offset and marks what it
/// finds as acked. An ack is therefore never lost (the batch is redone) and never produced
/// twice (the read-back finds it). Acks go to the same partition number as their id's
/// source events, so the member owning source partition p owns ack partition p.
package actor AckerStage: ConsumingStage {
    package nonisolated let name = "acker"
    private let executor = ThreadExecutor(name: "genetika-acker")
    package nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    nonisolated let context: StageContext
    private let afterAcks: (@Sendable (Int) throws -> Void)?
    private let topicIndex: [String: Int]
    private let allSeen: Int64
    private let numericIds: Bool
    private(set) var tracker = CatchUpTracker()
    private var pendingReadBack: Set<Int32> = []
    /// Committed state of the ids in the store's pending log (waiting for a topic): loaded
    /// when the stage starts, then kept in step with each commit, so that their later events
    /// need no database read and their changes are appended to the log rather than written
    /// in place. Acked ids and ids set aside (reported incomplete, evicted) leave it for the
    /// store's `acker_ids`. With the source files in different orders about three quarters of
    /// all ids wait at mid-run, compactly (`WaitingIds`): 21–27 bytes an integer id, about 90
    /// otherwise.
    private var waiting: WaitingIds
    /// Most ids `waiting` holds (about 24 MB of integer ids); beyond it, half are evicted: written to the
    /// store's `acker_ids`, and their events are answered from there.
    static let defaultWaitingCapacity = 1_000_000
    let waitingCapacity: Int
    /// The pending log is rewritten once it holds more than `pendingRewriteFactor` rows per
    /// live one plus `pendingSlack`: each rewrite writes the live rows and comes after at least
    /// `pendingRewriteFactor − 1` times as many appends, so rewriting adds at most a third of a
    /// row per append on average (why 4 and not 2: docs/benchmarks.md, "Tuning decisions").
    static let pendingRewriteFactor = 4
    /// Superseded rows the pending log may hold beyond `pendingRewriteFactor` per live one
    /// before it is rewritten (tests make it small).
    static let defaultPendingSlack = 100_000
    let pendingSlack: Int
    /// Ids acked since the last merge (by id, with their partition): recorded in the pending
    /// log, not yet in `acker_ids`. Merged once there are `mergeEvery`, and whenever the log is
    /// rewritten.
    private var recentlyAcked: [String: Int32] = [:]
    static let mergeEvery = 65_536
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
    package init(context: StageContext, afterAcks: (@Sendable (Int) throws -> Void)? = nil) {
        self.init(context: context, afterAcks: afterAcks, waitingCapacity: Self.defaultWaitingCapacity, pendingSlack: Self.defaultPendingSlack)
    }

    /// `waitingCapacity`: how many waiting ids stay in memory; `pendingSlack`: see
    /// `defaultPendingSlack` (tests make both small).
    init(context: StageContext, afterAcks: (@Sendable (Int) throws -> Void)?, waitingCapacity: Int, pendingSlack: Int) {
        let configuration = context.configuration
        self.waitingCapacity = waitingCapacity
        self.pendingSlack = pendingSlack
        waiting = WaitingIds(topicCount: configuration.sources.count)
        self.context = context
        self.afterAcks = afterAcks
        topicIndex = Dictionary(uniqueKeysWithValues: configuration.sources.enumerated().map { ($1.topic, $0) })
        allSeen = (Int64(1) << Int64(configuration.sources.count)) - 1
        numericIds = configuration.sources.allSatisfy { $0.keyColumn?.type == .integer }
    }

    deinit {
        executor.shutdown()
    }

    package static func statePath(_ configuration: GenetikaConfiguration) -> String {
        configuration.resolve(configuration.stateDirectory) + "/acker.db"
    }

    /// Opens (creating) the acker's state for `configuration`.
    package static func openStore(_ configuration: GenetikaConfiguration) throws -> AckerStore {
        try AckerStore(path: statePath(configuration), topicCount: configuration.sources.count,
                       integerIds: configuration.sources.allSatisfy { $0.keyColumn?.type == .integer })
    }

    package func run() async throws {
        let shared = TableSinks.sqlitePath(url: configuration.database.url, configuration: configuration) == nil
        let store: any AckerStateStore = shared
            ? try PostgresAckerStore(url: configuration.database.url, group: configuration.acker.groupId, topicCount: configuration.sources.count)
            : try Self.openStore(configuration)
        defer { store.close(); self.store = nil }
        self.store = store
        // What a failed run held in memory may be ahead of its store: start from the store.
        // (A shared store is loaded partition by partition, as the group assigns them.)
        waiting = WaitingIds(topicCount: configuration.sources.count)
        recentlyAcked = [:]
        if !store.shared { try load(store, partitions: []) }
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

    /// Puts the stored waiting ids of `partitions` (a local store: of all) in memory.
    private func load(_ store: any AckerStateStore, partitions: Set<Int32>) throws {
        try store.loadPending(partitions: partitions) { entry in
            if entry.acked {
                waiting[entry.id] = nil
                recentlyAcked[entry.id] = entry.partition
            } else {
                waiting[entry.id] = entry
            }
        }
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
        let overdueWaiting = waiting.overdue(in: numbers, olderThan: cutoff)
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
        for entry in overdueWaiting { waiting[entry.id] = nil }
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
            waiting.removeAll()
            recentlyAcked = [:]
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
        waiting.removeAll(inPartitions: numbers)
        recentlyAcked = recentlyAcked.filter { !numbers.contains($0.value) }
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
                waiting.removeAll(inPartitions: numbers)
                recentlyAcked = recentlyAcked.filter { !numbers.contains($0.value) }
                try load(store, partitions: numbers)
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
                waiting.removeAll(inPartitions: numbers)
                recentlyAcked = recentlyAcked.filter { !numbers.contains($0.value) }
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
                        if let entry = waiting[id] { try store.save(entry) }
                        try store.markReported(id, partition: partition.partition)
                    }
                }
            }
            try store.setOffsets(next)
        }
        for ids in found.values {
            for id in ids { waiting[id] = nil }
        }
        for (partition, ids) in found.sorted(by: { $0.key < $1.key }) where partition.topic == ack {
            logger.info("acker read back \(partition) from offset \(starts[partition] ?? 0): \(ids.count) acks were sent but not recorded")
        }
        pendingReadBack = []
    }

    private func process(_ batch: [KafkaMessage], offsets: [TopicPartition: Int64], store: any AckerStateStore, producer: KafkaProducer,
                         deadLetters: DeadLetterWriter, batch number: Int) async throws {
        let received = nowMillisecondsPrecise()
        // Each id the batch touches, and whether it has a row in the store's `acker_ids`
        // (otherwise it is new or in the pending log).
        var entries: [String: (entry: AckerEntry, stored: Bool)] = [:]
        entries.reserveCapacity(batch.count)
        var due: [AckerEntry] = []
        // One read transaction for the batch's lookups rather than one per lookup.
        try store.beginRead()
        defer { store.endRead() }
        if store.shared {
            // One query for what is stored of the ids that are neither waiting nor just acked.
            var unknown = Set<String>()
            for message in batch {
                if let id = message.keyText, !id.isEmpty, waiting[id] == nil, recentlyAcked[id] == nil { unknown.insert(id) }
            }
            try store.prefetch(Array(unknown))
        }
        // The waiting-id lookup of message i + `prefetchDistance` starts while message i is handled.
        for message in batch.prefix(Self.prefetchDistance) { if let key = message.key { waiting.prefetch(key: key) } }
        for (position, message) in batch.enumerated() {
            if position + Self.prefetchDistance < batch.count, let key = batch[position + Self.prefetchDistance].key {
                waiting.prefetch(key: key)
            }
            guard let id = message.keyText, !id.isEmpty else {
                try await deadLetters.send(message, reason: "event without a key (the id)")
                continue
            }
            // The consumer subscribes to exactly the source topics and only batches of partitions
            // it owns get here: an event of another topic cannot occur.
            guard let index = topicIndex[message.topic] else { preconditionFailure("acker: event of unsubscribed topic \(message.topic)") }
            var (entry, stored): (AckerEntry, Bool)
            if let known = entries[id] {
                (entry, stored) = known
            } else if let pending = waiting[id] {
                (entry, stored) = (pending, false)
            } else if let partition = recentlyAcked[id] {
                // Acked already (a duplicate event): any change goes to its row in `acker_ids`.
                (entry, stored) = (AckerEntry(id: id, partition: partition, seen: allSeen,
                                              timestamps: Array(repeating: nil, count: topicIndex.count), acked: true), true)
            } else if let row = try store.entry(id) {
                (entry, stored) = (row, true)
            } else {
                (entry, stored) = (AckerEntry(id: id, partition: message.partition, seen: 0,
                                              timestamps: Array(repeating: nil, count: topicIndex.count), acked: false), false)
            }
            entry.seen |= Int64(1) << Int64(index)
            let timestamp = message.timestamp ?? nowMilliseconds()
            entry.timestamps[index] = max(entry.timestamps[index] ?? timestamp, timestamp)
            if entry.seen == allSeen && !entry.acked {
                entry.acked = true
                due.append(entry)
            }
            entries[id] = (entry, stored)
        }
        store.endRead()
        if let fence, !due.isEmpty {
            let refused = try fence.refused(Set(offsets.keys))
            TestPausePoint.beforeCommit()
            let stillRefused = refused.isEmpty && !fence.leaseHeld ? try fence.refused(Set(offsets.keys)) : refused
            if !stillRefused.isEmpty {
                // Another member owns these now: their events in hand, and the acks they made due, are its.
                fenced.formUnion(stillRefused)
                counters.fencedWrites(stage: name, count: stillRefused.count)
                logger.warning("acker: \(FencedPartitions(partitions: stillRefused)); their acks in hand are left to the new owner, and this member stops handling them until the group assigns them again")
                store.endRead()
                let keep = batch.filter { !fenced.contains($0.topicPartition) }
                let keepOffsets = offsets.filter { !fenced.contains($0.key) }
                guard !keepOffsets.isEmpty else { return }
                return try await process(keep, offsets: keepOffsets, store: store, producer: producer, deadLetters: deadLetters, batch: number)
            }
        } else if !due.isEmpty {
            TestPausePoint.beforeCommit()
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
        // Ids stored in `acker_ids` are updated in place; the others (waiting, or acked by
        // this batch) are appended to the pending log.
        do {
            try store.transaction {
                try store.fence(fence?.epochs.filter { offsets[$0.key] != nil } ?? [:])
                for (entry, stored) in entries.values {
                    if stored { try store.save(entry) } else { try store.appendPending(entry) }
                }
                try store.setOffsets(offsets)
                try store.setOffsets(ackOffsets)
            }
        } catch let refused as FencedPartitions {
            // Claimed between the lease check and here: the new owner read back what was sent.
            fenced.formUnion(refused.partitions)
            counters.fencedWrites(stage: name, count: refused.partitions.count)
            logger.warning("acker: state commit \(refused)")
            return
        }
        // The keys, not the values: no entry (and its timestamps) is copied for a hint.
        var ahead = entries.keys.makeIterator()
        for _ in 0..<Self.prefetchDistance { if let next = ahead.next() { waiting.prefetch(next) } }
        for (entry, stored) in entries.values {
            if let next = ahead.next() { waiting.prefetch(next) }
            if stored || entry.acked { waiting[entry.id] = nil } else { waiting[entry.id] = entry }
            if entry.acked && !stored { recentlyAcked[entry.id] = entry.partition }
        }
        try compactState(store: store)
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

    /// How many messages ahead the waiting-id lookups are prefetched: far enough for a load from
    /// memory to arrive before it is needed, near enough to stay in the CPU cache meanwhile.
    static let prefetchDistance = 8

    /// Keeps memory and the pending log bounded: beyond `waitingCapacity` waiting ids, half
    /// are evicted to `acker_ids`; every `mergeEvery` acks, the acked ids are merged into
    /// `acker_ids` in id order; once the log holds more than `pendingRewriteFactor` rows per
    /// live one (plus `pendingSlack`), it is rewritten with the live ones only (after a merge).
    /// Each rewrite writes as many rows as it keeps, and comes after at least three times as
    /// many appends: a constant cost per event on average.
    private func compactState(store: any AckerStateStore) throws {
        // A shared store's rows of these partitions are this member's only while it owns them.
        let epochs = fence?.epochs ?? [:]
        if waiting.count > waitingCapacity {
            let evict = waiting.count - waitingCapacity / 2
            try store.transaction {
                try store.fence(epochs)
                try waiting.evict(evict) { try store.save($0) }
            }
            logger.info("acker: \(evict) waiting ids moved from memory to the store (more than \(waitingCapacity) waited)")
        }
        let rewrite = store.pendingRows > Self.pendingRewriteFactor * waiting.count + pendingSlack
        guard rewrite || recentlyAcked.count >= Self.mergeEvery else { return }
        do {
            try store.transaction {
                try store.fence(epochs)
                try store.mergeAcked(recentlyAcked)
                if rewrite {
                    try store.clearPending()
                    try waiting.forEach { try store.appendPending($0) }
                }
            }
        } catch let refused as FencedPartitions {
            // Claimed by another member meanwhile: the next batch's commit finds it too.
            logger.warning("acker: state rewrite \(refused)")
            return
        }
        recentlyAcked = [:]
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
