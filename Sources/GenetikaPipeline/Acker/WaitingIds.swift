import GenetikaStorage
import GenetikaSupport

/// Waiting ids in the general layout: any id, any times. An id maps to a slot; each slot's
/// partition, topics seen and per-topic timestamps live in flat arrays, reused through a free
/// list. Integer ids are keyed as integers (no string hashing); other ids by their text.
struct GeneralWaitingIds {
    private var numeric: [Int64: Int32] = [:]
    private var textual: [String: Int32] = [:]
    private var partitions: [Int32] = []
    private var seen: [Int64] = []
    /// `topicCount` per slot; `Int64.min` stands for "not seen".
    private var timestamps: [Int64] = []
    private var free: [Int32] = []
    private let topicCount: Int

    init(topicCount: Int) {
        self.topicCount = topicCount
    }

    /// How many ids wait.
    var count: Int { numeric.count + textual.count }

    private func slot(_ id: String) -> Int32? {
        if let number = integerId(id) { return numeric[number] }
        return textual[id]
    }

    subscript(id: String) -> AckerEntry? {
        get {
            guard let slot = slot(id).map(Int.init) else { return nil }
            return entry(id, slot: slot)
        }
        set {
            guard let entry = newValue else {
                remove(id)
                return
            }
            let slot: Int
            if let existing = self.slot(id) {
                slot = Int(existing)
            } else {
                slot = allocate()
                if let number = integerId(id) { numeric[number] = Int32(slot) } else { textual[id] = Int32(slot) }
            }
            partitions[slot] = entry.partition
            seen[slot] = entry.seen
            let base = slot * topicCount
            for index in 0..<topicCount { timestamps[base + index] = entry.timestamps[index] ?? .min }
        }
    }

    private mutating func allocate() -> Int {
        if let slot = free.popLast() { return Int(slot) }
        partitions.append(0)
        seen.append(0)
        timestamps.append(contentsOf: repeatElement(.min, count: topicCount))
        return partitions.count - 1
    }

    private mutating func remove(_ id: String) {
        let slot: Int32?
        if let number = integerId(id) { slot = numeric.removeValue(forKey: number) } else { slot = textual.removeValue(forKey: id) }
        if let slot { free.append(slot) }
    }

    /// Forgets the ids of `partitions` (revoked: their new owner works from the store). The
    /// maps are rebuilt rather than thinned in place, which would leave Swift's open-addressing
    /// tables clustered.
    mutating func removeAll(inPartitions numbers: Set<Int32>) {
        let partitions = self.partitions
        keep { numbers.contains(partitions[Int($0)]) == false }
    }

    /// Every waiting id, in no particular order.
    func forEach(_ body: (AckerEntry) throws -> Void) rethrows {
        for (number, slot) in numeric { try body(entry(String(number), slot: Int(slot))) }
        for (id, slot) in textual { try body(entry(id, slot: Int(slot))) }
    }

    /// The ids of `partitions` whose earliest event is older than `cutoff` (ms since the epoch).
    func overdue(in partitions: Set<Int32>, olderThan cutoff: Int64) -> [AckerEntry] {
        var found: [AckerEntry] = []
        func check(_ id: @autoclosure () -> String, _ slot: Int) {
            guard partitions.contains(self.partitions[slot]) else { return }
            let base = slot * topicCount
            var first = Int64.max
            for index in 0..<topicCount where timestamps[base + index] != .min { first = min(first, timestamps[base + index]) }
            if first < cutoff { found.append(entry(id(), slot: slot)) }
        }
        for (number, slot) in numeric { check(String(number), Int(slot)) }
        for (id, slot) in textual { check(id, Int(slot)) }
        return found
    }

    private func entry(_ id: String, slot: Int) -> AckerEntry {
        let base = slot * topicCount
        return AckerEntry(id: id, partition: partitions[slot], seen: seen[slot],
                          timestamps: (0..<topicCount).map { timestamps[base + $0] == .min ? nil : timestamps[base + $0] },
                          acked: false)
    }

    private mutating func keep(_ keeps: (Int32) -> Bool) {
        var dropped: [Int32] = []
        numeric = numeric.filter { member in
            if keeps(member.value) { return true }
            dropped.append(member.value)
            return false
        }
        textual = textual.filter { member in
            if keeps(member.value) { return true }
            dropped.append(member.value)
            return false
        }
        free += dropped
    }
}

/// The acker's ids that reached some source topics but not all (those recorded in the store's
/// pending log), laid out so that all of them fit in memory: with files in different orders,
/// about three quarters of all ids wait at mid-run. An integer id from 0 to 2^32 − 1 whose
/// partition is 0 to 254, whose topics seen are exactly those with a timestamp, and whose
/// timestamps lie within ±24 days of the set's creation lives in `CompactIds`: open-addressing
/// tables holding id, partition and 32-bit relative times inline, 17 bytes a bucket with three
/// topics (about 24 bytes an id). Any other id lives in the general layout
/// (`GeneralWaitingIds`, about 90 bytes an id). An id is in one of the two, never both.
struct WaitingIds {
    private var compact: CompactIds
    private var general: GeneralWaitingIds
    private let topicCount: Int

    init(topicCount: Int) {
        self.topicCount = topicCount
        compact = CompactIds(topicCount: topicCount, base: nowMilliseconds())
        general = GeneralWaitingIds(topicCount: topicCount)
    }

    /// How many ids wait.
    var count: Int { compact.count + general.count }

    subscript(id: String) -> AckerEntry? {
        get {
            if let number = integerId(id), let entry = compact.entry(id, key: number) { return entry }
            return general.count == 0 ? nil : general[id]
        }
        set {
            let number = integerId(id)
            guard let entry = newValue else {
                if let number, compact.remove(number) { return }
                if general.count > 0 { general[id] = nil }
                return
            }
            if let number, compact.set(number, entry) {
                if general.count > 0 { general[id] = nil }
            } else {
                if let number { _ = compact.remove(number) }
                general[id] = entry
            }
        }
    }

    /// Starts loading the memory a lookup of the id will touch (see `CompactIds.prefetch`).
    func prefetch(_ id: String) {
        if let number = Self.digits(id.utf8) { compact.prefetch(number) }
    }

    /// As `prefetch(_:)`, from the id's UTF-8 (a message key) without making a string of it.
    func prefetch(key bytes: [UInt8]) {
        if let number = Self.digits(bytes) { compact.prefetch(number) }
    }

    /// 1 to 10 decimal digits as a number, for a prefetch only: cheaper than `integerId`, and a
    /// hint has nothing to get right (an id with leading zeros prefetches another's bucket).
    @inline(__always)
    private static func digits<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Int64? {
        guard !bytes.isEmpty, bytes.count <= 10 else { return nil }
        var number: Int64 = 0
        for byte in bytes {
            guard byte &- 48 < 10 else { return nil }
            number = number * 10 + Int64(byte &- 48)
        }
        return number
    }

    /// Hands up to `count` ids to `body` and forgets them (evicted to the store).
    mutating func evict(_ count: Int, _ body: (AckerEntry) throws -> Void) rethrows {
        var evicted: [String] = []
        evicted.reserveCapacity(min(count, self.count))
        try forEach { entry in
            guard evicted.count < count else { return }
            try body(entry)
            evicted.append(entry.id)
        }
        for id in evicted { self[id] = nil }
    }

    /// Every waiting id, in no particular order.
    func forEach(_ body: (AckerEntry) throws -> Void) rethrows {
        try compact.forEach(body)
        try general.forEach(body)
    }

    /// The ids of `partitions` whose earliest event is older than `cutoff` (ms since the epoch).
    func overdue(in partitions: Set<Int32>, olderThan cutoff: Int64) -> [AckerEntry] {
        compact.overdue(in: partitions, olderThan: cutoff) + general.overdue(in: partitions, olderThan: cutoff)
    }

    /// Forgets the ids of `partitions` (their log was lost: they are read again).
    mutating func removeAll(inPartitions numbers: Set<Int32>) {
        compact.removeAll(inPartitions: numbers)
        general.removeAll(inPartitions: numbers)
    }

    /// Forgets every id and gives the memory back.
    mutating func removeAll() {
        self = WaitingIds(topicCount: topicCount)
    }
}
