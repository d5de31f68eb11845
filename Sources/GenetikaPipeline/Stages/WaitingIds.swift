import GenetikaStorage

/// The acker's ids that reached some source topics but not all (those recorded in the store's
/// pending log), in a compact layout so that all of them fit in memory (with files in
/// different orders, about three quarters of all ids wait at mid-run). An id maps to a slot; each slot's partition, topics seen and per-topic
/// timestamps live in flat arrays, reused through a free list: 52 bytes an id with three
/// topics plus the tables' growth slack (about 90 measured), against about 200 for an
/// `AckerEntry` in a dictionary. Integer ids are keyed as integers (no string hashing);
/// other ids by their text.
struct WaitingIds {
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
        if let number = Int64(id), String(number) == id { return numeric[number] }
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
                if let number = Int64(id), String(number) == id { numeric[number] = Int32(slot) } else { textual[id] = Int32(slot) }
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
        if let number = Int64(id), String(number) == id { slot = numeric.removeValue(forKey: number) } else { slot = textual.removeValue(forKey: id) }
        if let slot { free.append(slot) }
    }

    /// Forgets the ids of `partitions` (revoked: their new owner works from the store). The
    /// maps are rebuilt rather than thinned in place, which would leave Swift's open-addressing
    /// tables clustered.
    mutating func removeAll(inPartitions numbers: Set<Int32>) {
        let partitions = self.partitions
        keep { numbers.contains(partitions[Int($0)]) == false }
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
        for id in evicted { remove(id) }
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

    /// Forgets every id and gives the memory back.
    mutating func removeAll() {
        self = WaitingIds(topicCount: topicCount)
    }
}
