import Logging
import GenetikaSupport
import GenetikaKafka
import GenetikaStorage

/// What the acker knows of each id, and the rules that keep memory and the store in step.
/// `AckerStage` owns one and keeps Kafka and the lifecycle; this type never touches Kafka.
///
/// An id lives in one tier at a time:
/// 1. `waiting` (memory): it reached some source topics but not all — its committed state,
///    loaded when the stage starts (SQLite) or when its partition is assigned (PostgreSQL);
///    its later events need no database read, and its changes are appended to the store's
///    pending log rather than written in place.
/// 2. `recentlyAcked` (memory): acked since the last merge, recorded in the pending log and
///    not yet in `acker_ids`; merged once there are `mergeEvery`, and whenever the log is
///    rewritten.
/// 3. the store's `acker_ids` (with SQLite, a filter in front of it answers "never stored"
///    without a read): acked ids, and ids set aside — reported incomplete, or evicted from
///    memory when more than `waitingCapacity` wait.
/// With the source files in different orders about three quarters of all ids wait at
/// mid-run, compactly (`WaitingIds`; its size per id: docs/architecture.md, "Stages").
struct AckerState {
    private(set) var waiting: WaitingIds
    private var recentlyAcked: [String: Int32] = [:]
    let topicCount: Int
    /// `seen` with every source topic's bit set.
    let allSeen: Int64
    let waitingCapacity: Int
    let pendingSlack: Int

    /// Most ids `waiting` holds; beyond it, half are evicted:
    /// written to the store's `acker_ids`, and their events are answered from there.
    static let defaultWaitingCapacity = 1_000_000
    /// The pending log is rewritten once it holds more than `pendingRewriteFactor` rows per
    /// live one plus `pendingSlack`: each rewrite writes the live rows and comes after at least
    /// `pendingRewriteFactor − 1` times as many appends, so rewriting adds at most a third of a
    /// row per append on average (why 4 and not 2: docs/benchmarks.md, "Tuning decisions").
    static let pendingRewriteFactor = 4
    /// Superseded rows the pending log may hold beyond `pendingRewriteFactor` per live one
    /// before it is rewritten (tests make it small).
    static let defaultPendingSlack = 100_000
    static let mergeEvery = 65_536
    /// How many messages ahead the waiting-id lookups are prefetched: far enough for a load from
    /// memory to arrive before it is needed, near enough to stay in the CPU cache meanwhile.
    static let prefetchDistance = 8

    init(topicCount: Int, waitingCapacity: Int = defaultWaitingCapacity, pendingSlack: Int = defaultPendingSlack) {
        self.topicCount = topicCount
        allSeen = (Int64(1) << Int64(topicCount)) - 1
        self.waitingCapacity = waitingCapacity
        self.pendingSlack = pendingSlack
        waiting = WaitingIds(topicCount: topicCount)
    }

    /// Forgets everything held in memory (a new run of the stage starts from its store).
    mutating func clear() {
        waiting = WaitingIds(topicCount: topicCount)
        recentlyAcked = [:]
    }

    /// Puts the stored waiting ids of `partitions` (a local store: of all) in memory; returns
    /// how many entries the store gave.
    @discardableResult
    mutating func load(from store: any AckerStateStore, partitions: Set<Int32>) throws -> Int {
        var count = 0
        try store.loadPending(partitions: partitions) { entry in
            count += 1
            if entry.acked {
                waiting[entry.id] = nil
                recentlyAcked[entry.id] = entry.partition
            } else {
                waiting[entry.id] = entry
            }
        }
        return count
    }

    /// Forgets what memory holds of the ids of `partitions` (revoked or reset: the store, or
    /// their next owner, has them).
    mutating func forget(partitions numbers: Set<Int32>) {
        waiting.removeAll(inPartitions: numbers)
        recentlyAcked = recentlyAcked.filter { !numbers.contains($0.value) }
    }

    /// The waiting entry of `id`, if it waits.
    func waitingEntry(_ id: String) -> AckerEntry? { waiting[id] }

    /// `id` left the waiting tier outside a batch (read back as acked or reported, or set aside).
    mutating func stopWaiting(_ id: String) { waiting[id] = nil }

    /// The waiting ids of `partitions` whose earliest event is older than `cutoff`.
    func overdue(in partitions: Set<Int32>, olderThan cutoff: Int64) -> [AckerEntry] {
        waiting.overdue(in: partitions, olderThan: cutoff)
    }

    /// The ids of `batch` neither waiting nor just acked: a shared store reads what it has of
    /// them in one query (`prefetch`) before the batch is applied.
    func unknownIds(in batch: [KafkaMessage]) -> [String] {
        var unknown = Set<String>()
        for message in batch {
            if let id = message.keyText, !id.isEmpty, waiting[id] == nil, recentlyAcked[id] == nil { unknown.insert(id) }
        }
        return Array(unknown)
    }

    /// What a batch changes: each id it touched with its new state and whether the id has a
    /// row in `acker_ids` (otherwise it is new or in the pending log), and the ids that became
    /// due for an ack.
    struct BatchChanges {
        var entries: [String: (entry: AckerEntry, stored: Bool)] = [:]
        var due: [AckerEntry] = []
        /// Events without a key (no id): the stage dead-letters them.
        var keyless: [KafkaMessage] = []
    }

    /// Applies `batch` to the ids' states (memory is not changed until `committed`):
    /// `topicIndex` maps each source topic to its bit. Reads from `store` what memory does not
    /// hold (inside the store's read transaction).
    mutating func apply(_ batch: [KafkaMessage], topicIndex: [String: Int], store: any AckerStateStore) throws -> BatchChanges {
        var changes = BatchChanges()
        changes.entries.reserveCapacity(batch.count)
        let distance = Self.prefetchDistance
        // The waiting-id lookup of message i + `prefetchDistance` starts while message i is handled.
        for message in batch.prefix(distance) { if let key = message.key { waiting.prefetch(key: key) } }
        for (position, message) in batch.enumerated() {
            if position + distance < batch.count, let key = batch[position + distance].key { waiting.prefetch(key: key) }
            guard let id = message.keyText, !id.isEmpty else {
                changes.keyless.append(message)
                continue
            }
            // The consumer subscribes to exactly the source topics and only batches of partitions
            // it owns get here: an event of another topic cannot occur.
            guard let index = topicIndex[message.topic] else { preconditionFailure("acker: event of unsubscribed topic \(message.topic)") }
            var (entry, stored) = try lookUp(id, partition: message.partition, in: changes, store: store)
            entry.seen |= Int64(1) << Int64(index)
            let timestamp = message.timestamp ?? nowMilliseconds()
            entry.timestamps[index] = max(entry.timestamps[index] ?? timestamp, timestamp)
            if entry.seen == allSeen && !entry.acked {
                entry.acked = true
                changes.due.append(entry)
            }
            changes.entries[id] = (entry, stored)
        }
        return changes
    }

    /// An id's state, from the first tier that has it: this batch, waiting, just acked, the store.
    private func lookUp(_ id: String, partition: Int32, in changes: BatchChanges,
                        store: any AckerStateStore) throws -> (AckerEntry, stored: Bool) {
        if let known = changes.entries[id] { return known }
        if let pending = waiting[id] { return (pending, false) }
        if let partition = recentlyAcked[id] {
            // Acked already (a duplicate event): any change goes to its row in `acker_ids`.
            return (AckerEntry(id: id, partition: partition, seen: allSeen, timestamps: Array(repeating: nil, count: topicCount),
                               acked: true), true)
        }
        if let row = try store.entry(id) { return (row, true) }
        return (AckerEntry(id: id, partition: partition, seen: 0, timestamps: Array(repeating: nil, count: topicCount), acked: false), false)
    }

    /// Writes a batch's changes into the store's open transaction: ids stored in `acker_ids`
    /// are updated in place; the others (waiting, or acked by this batch) are appended to the
    /// pending log.
    func record(_ changes: BatchChanges, in store: any AckerStateStore) throws {
        for (entry, stored) in changes.entries.values {
            if stored { try store.save(entry) } else { try store.appendPending(entry) }
        }
    }

    /// The batch's changes were committed: memory follows.
    mutating func committed(_ changes: BatchChanges) {
        // The keys, not the values: no entry (and its timestamps) is copied for a hint.
        var ahead = changes.entries.keys.makeIterator()
        for _ in 0..<Self.prefetchDistance { if let next = ahead.next() { waiting.prefetch(next) } }
        for (entry, stored) in changes.entries.values {
            if let next = ahead.next() { waiting.prefetch(next) }
            if stored || entry.acked { waiting[entry.id] = nil } else { waiting[entry.id] = entry }
            if entry.acked && !stored { recentlyAcked[entry.id] = entry.partition }
        }
    }

    /// Keeps memory and the pending log bounded: beyond `waitingCapacity` waiting ids, half
    /// are evicted to `acker_ids`; every `mergeEvery` acks, the acked ids are merged into
    /// `acker_ids` in id order; once the log holds more than `pendingRewriteFactor` rows per
    /// live one (plus `pendingSlack`), it is rewritten with the live ones only (after a merge).
    /// Each rewrite writes as many rows as it keeps, and comes after at least three times as
    /// many appends: a constant cost per event on average. `epochs` fence a shared store's
    /// writes (the partitions are this member's only while it owns them).
    mutating func compact(store: any AckerStateStore, epochs: [TopicPartition: Int64], logger: Logger) throws {
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
}
