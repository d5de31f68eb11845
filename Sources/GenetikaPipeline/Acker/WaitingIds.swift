import CPrefetch
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

/// log2 of the number of `CompactIdTable`s in `CompactIds`.
private let compactShardBits: UInt64 = 4

/// Fibonacci hashing: key × 2^64/φ. Its top `compactShardBits` bits pick the table, the bits
/// below them the bucket.
@inline(__always)
private func compactHash(_ key: Int64) -> UInt64 { UInt64(bitPattern: key) &* 0x9E37_79B9_7F4A_7C15 }

/// Integer ids with their partition and per-topic times, inline, in 16 open-addressing
/// tables (`CompactIdTable`) chosen by the top bits of the id's hash. Each table grows by a
/// quarter on its own, so growing never holds the old and the new copy of the whole set at once: at
/// most one sixteenth of it is copied at a time.
struct CompactIds {
    private var shards: [CompactIdTable]

    init(topicCount: Int, base: Int64) {
        shards = (0..<(1 << compactShardBits)).map { _ in CompactIdTable(topicCount: topicCount, base: base) }
    }

    var count: Int { shards.reduce(0) { $0 + $1.count } }

    /// The key's table, and the hash bits below those that picked it (the table's own hash).
    @inline(__always)
    private static func locate(_ key: Int64) -> (shard: Int, hash: UInt64) {
        let hash = compactHash(key)
        return (Int(truncatingIfNeeded: hash >> (64 - compactShardBits)), hash << compactShardBits)
    }

    /// Starts loading the bucket where a lookup of `key` begins: a CPU prefetch, nothing else.
    /// Lookups in tables larger than the CPU caches wait for memory; the acker hints the ids of
    /// the next few messages so that those loads overlap instead of following one another.
    func prefetch(_ key: Int64) {
        guard CompactIdTable.holds(key: key) else { return }
        let (shard, hash) = Self.locate(key)
        shards[shard].prefetch(hash: hash)
    }

    func entry(_ id: String, key: Int64) -> AckerEntry? {
        let (shard, hash) = Self.locate(key)
        return shards[shard].entry(id, key: key, hash: hash)
    }

    /// Stores the entry if it fits this layout (see `WaitingIds`); false (nothing stored) if not.
    mutating func set(_ key: Int64, _ entry: AckerEntry) -> Bool {
        let (shard, hash) = Self.locate(key)
        return shards[shard].set(key, hash: hash, entry)
    }

    /// Removes the id; false if it was not here.
    mutating func remove(_ key: Int64) -> Bool {
        let (shard, hash) = Self.locate(key)
        return shards[shard].remove(key, hash: hash)
    }

    func forEach(_ body: (AckerEntry) throws -> Void) rethrows {
        for shard in shards { try shard.forEach(body) }
    }

    func overdue(in numbers: Set<Int32>, olderThan cutoff: Int64) -> [AckerEntry] {
        shards.flatMap { $0.overdue(in: numbers, olderThan: cutoff) }
    }

    mutating func removeAll(inPartitions numbers: Set<Int32>) {
        for index in shards.indices { shards[index].removeAll(inPartitions: numbers) }
    }
}

/// One open-addressing hash table of `CompactIds` (linear probing, at most four fifths full,
/// growing by a quarter, deletion by backward shift; the home bucket is the hash scaled to the
/// capacity, so the capacity need not be a power of two). A bucket is one run of bytes, so a
/// lookup touches one place in memory (with separate arrays for ids, partitions and times, a
/// lookup in a table larger than the CPU caches missed three times): the id (32 bits), its
/// partition plus one (8 bits, 0: empty bucket), then 4 bytes a topic of time, in milliseconds
/// relative to `base` (`Int32.min`: topic not reached). 17 bytes a bucket with three topics, at
/// 64 % to 80 % load: about 24 bytes a waiting id (the layout before it: docs/benchmarks.md,
/// "Tuning decisions"). Ids beyond 32 bits and partitions above 254 go to the general layout.
struct CompactIdTable {
    private(set) var count = 0
    private var buckets: [UInt8]
    private var capacity: Int
    let topicCount: Int
    let base: Int64
    /// Bytes a bucket: the id at 0, the partition tag at `tagOffset`, the times from `timesOffset`.
    private let stride: Int
    private static let tagOffset = 4
    private static let timesOffset = 5
    private static let minimumCapacity = 64
    /// The largest partition a bucket holds (its tag is the partition plus one).
    static let largestPartition: Int32 = 254
    /// Whether the table can hold `key` at all (an id that fits 32 bits, unsigned).
    @inline(__always)
    static func holds(key: Int64) -> Bool { key >= 0 && key <= Int64(UInt32.max) }

    /// Whether `count` ids keep a table of `capacity` buckets at most four fifths full.
    @inline(__always)
    private static func holds(_ count: Int, in capacity: Int) -> Bool { count * 5 <= capacity * 4 }

    /// The next capacity when growing: a quarter more.
    @inline(__always)
    private static func grown(_ capacity: Int) -> Int { capacity + capacity / 4 }

    init(topicCount: Int, base: Int64, capacity: Int = CompactIdTable.minimumCapacity) {
        self.topicCount = topicCount
        self.base = base
        self.capacity = capacity
        stride = Self.timesOffset + 4 * topicCount
        buckets = Array(repeating: 0, count: capacity * stride)
    }

    // Bucket fields. Offsets are not aligned: loads and stores are unaligned ones.
    @inline(__always)
    private func key(_ bucket: Int) -> UInt32 {
        buckets.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: bucket * stride, as: UInt32.self) }
    }

    @inline(__always)
    private func tag(_ bucket: Int) -> UInt8 { buckets[bucket * stride + Self.tagOffset] }

    @inline(__always)
    private func time(_ bucket: Int, _ index: Int) -> Int32 {
        buckets.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: bucket * stride + Self.timesOffset + 4 * index, as: Int32.self) }
    }

    @inline(__always)
    private mutating func setKey(_ bucket: Int, _ key: UInt32) {
        let offset = bucket * stride
        buckets.withUnsafeMutableBytes { $0.storeBytes(of: key, toByteOffset: offset, as: UInt32.self) }
    }

    @inline(__always)
    private mutating func setTag(_ bucket: Int, _ tag: UInt8) { buckets[bucket * stride + Self.tagOffset] = tag }

    @inline(__always)
    private mutating func setTime(_ bucket: Int, _ index: Int, _ time: Int32) {
        let offset = bucket * stride + Self.timesOffset + 4 * index
        buckets.withUnsafeMutableBytes { $0.storeBytes(of: time, toByteOffset: offset, as: Int32.self) }
    }

    /// A stored key's home bucket (its hash as `CompactIds` hands it over).
    @inline(__always)
    private func home(_ key: UInt32) -> Int { home(hash: compactHash(Int64(key)) << compactShardBits) }

    /// The hash's top bits scaled to the capacity (`hash` × capacity / 2^64), which keeps buckets
    /// in hash order whatever the capacity.
    @inline(__always)
    private func home(hash: UInt64) -> Int { Self.home(hash: hash, capacity: capacity) }

    @inline(__always)
    private static func home(hash: UInt64, capacity: Int) -> Int {
        Int(truncatingIfNeeded: hash.multipliedFullWidth(by: UInt64(capacity)).high)
    }

    @inline(__always)
    private func next(_ bucket: Int) -> Int { Self.next(bucket, capacity: capacity) }

    @inline(__always)
    private static func next(_ bucket: Int, capacity: Int) -> Int { bucket + 1 == capacity ? 0 : bucket + 1 }

    /// See `CompactIds.prefetch`.
    func prefetch(hash: UInt64) {
        let offset = home(hash: hash) * stride
        buckets.withUnsafeBytes { genetika_prefetch($0.baseAddress! + offset) }
    }

    private func find(_ key: Int64, hash: UInt64) -> Int? {
        guard Self.holds(key: key) else { return nil }
        let key = UInt32(key)
        var bucket = home(hash: hash)
        while tag(bucket) != 0 {
            if self.key(bucket) == key { return bucket }
            bucket = next(bucket)
        }
        return nil
    }

    func entry(_ id: String, key: Int64, hash: UInt64) -> AckerEntry? {
        find(key, hash: hash).map { entry(id, bucket: $0) }
    }

    private func entry(_ id: String, bucket: Int) -> AckerEntry {
        var seen: Int64 = 0
        var timestamps: [Int64?] = []
        timestamps.reserveCapacity(topicCount)
        for index in 0..<topicCount {
            let time = time(bucket, index)
            if time == .min {
                timestamps.append(nil)
            } else {
                seen |= Int64(1) << Int64(index)
                timestamps.append(base + Int64(time))
            }
        }
        return AckerEntry(id: id, partition: Int32(tag(bucket)) - 1, seen: seen, timestamps: timestamps, acked: false)
    }

    mutating func set(_ key: Int64, hash: UInt64, _ entry: AckerEntry) -> Bool {
        guard Self.holds(key: key), entry.partition >= 0, entry.partition <= Self.largestPartition,
              entry.timestamps.count == topicCount, entry.seen >> Int64(topicCount) == 0 || topicCount >= 63 else { return false }
        for index in 0..<topicCount {
            let reached = entry.seen & (Int64(1) << Int64(index)) != 0
            switch entry.timestamps[index] {
            case nil:
                guard !reached else { return false }
            case let timestamp?:
                let relative = timestamp &- base
                guard reached, relative > Int64(Int32.min), relative <= Int64(Int32.max) else { return false }
            }
        }
        var bucket: Int
        if let existing = find(key, hash: hash) {
            bucket = existing
        } else {
            if !Self.holds(count + 1, in: capacity) { resize(to: Self.grown(capacity)) }
            bucket = home(hash: hash)
            while tag(bucket) != 0 { bucket = next(bucket) }
            setKey(bucket, UInt32(key))
            count += 1
        }
        setTag(bucket, UInt8(entry.partition + 1))
        for index in 0..<topicCount {
            setTime(bucket, index, entry.timestamps[index].map { Int32($0 - base) } ?? .min)
        }
        return true
    }

    mutating func remove(_ key: Int64, hash: UInt64) -> Bool {
        guard var hole = find(key, hash: hash) else { return false }
        // Backward shift: move later members of the run into the hole when their home bucket
        // does not lie cyclically in (hole, current].
        var current = next(hole)
        while tag(current) != 0 {
            let wanted = home(self.key(current))
            let stays = hole <= current ? (hole < wanted && wanted <= current) : (hole < wanted || wanted <= current)
            if !stays {
                move(from: current, to: hole)
                hole = current
            }
            current = next(current)
        }
        setTag(hole, 0)
        count -= 1
        if capacity > Self.minimumCapacity && count * 8 < capacity { resize(to: capacity / 2) }
        return true
    }

    private mutating func move(from source: Int, to target: Int) {
        let stride = stride
        buckets.withUnsafeMutableBytes { bytes in
            let base = bytes.baseAddress!
            (base + target * stride).copyMemory(from: base + source * stride, byteCount: stride)
        }
    }

    private mutating func resize(to newCapacity: Int, keeping keeps: (Int32) -> Bool = { _ in true }) {
        var table = CompactIdTable(topicCount: topicCount, base: base, capacity: max(newCapacity, Self.minimumCapacity))
        // Through raw bytes: the new table's accessors cannot be called while its bytes are borrowed.
        let (stride, capacity, newCapacity, tag) = (stride, capacity, table.capacity, Self.tagOffset)
        var moved = 0
        buckets.withUnsafeBytes { old in
            table.buckets.withUnsafeMutableBytes { new in
                for bucket in 0..<capacity where old[bucket * stride + tag] != 0 && keeps(Int32(old[bucket * stride + tag]) - 1) {
                    let key = old.loadUnaligned(fromByteOffset: bucket * stride, as: UInt32.self)
                    var target = Self.home(hash: compactHash(Int64(key)) << compactShardBits, capacity: newCapacity)
                    while new[target * stride + tag] != 0 { target = Self.next(target, capacity: newCapacity) }
                    new.baseAddress!.advanced(by: target * stride)
                        .copyMemory(from: old.baseAddress!.advanced(by: bucket * stride), byteCount: stride)
                    moved += 1
                }
            }
        }
        table.count = moved
        self = table
    }

    func forEach(_ body: (AckerEntry) throws -> Void) rethrows {
        for bucket in 0..<capacity where tag(bucket) != 0 {
            try body(entry(String(key(bucket)), bucket: bucket))
        }
    }

    func overdue(in numbers: Set<Int32>, olderThan cutoff: Int64) -> [AckerEntry] {
        var found: [AckerEntry] = []
        for bucket in 0..<capacity where tag(bucket) != 0 && numbers.contains(Int32(tag(bucket)) - 1) {
            var first = Int64.max
            for index in 0..<topicCount where time(bucket, index) != .min {
                first = min(first, base + Int64(time(bucket, index)))
            }
            if first < cutoff { found.append(entry(String(key(bucket)), bucket: bucket)) }
        }
        return found
    }

    mutating func removeAll(inPartitions numbers: Set<Int32>) {
        var kept = 0
        for bucket in 0..<capacity where tag(bucket) != 0 && !numbers.contains(Int32(tag(bucket)) - 1) { kept += 1 }
        var newCapacity = Self.minimumCapacity
        while !Self.holds(kept, in: newCapacity) { newCapacity = Self.grown(newCapacity) }
        resize(to: newCapacity) { !numbers.contains($0) }
    }
}
