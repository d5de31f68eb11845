import CPrefetch
import GenetikaStorage

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
