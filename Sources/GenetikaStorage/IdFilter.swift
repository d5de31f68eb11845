/// A Bloom filter of ids: "certainly not in the set" without a read of the set. About 10
/// bits an id at capacity (7 probes): under 1 % false positives, 1.25 MB for a million ids.
/// `isFull` says when it holds `capacity` ids; its owner then builds a larger one.
struct IdFilter {
    private var words: [UInt64]
    private let bitCount: UInt64
    let capacity: Int
    private(set) var count = 0
    private static let probes: UInt64 = 7

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        let bits = max(UInt64(self.capacity) * 10, 64)
        words = Array(repeating: 0, count: Int((bits + 63) / 64))
        bitCount = UInt64(words.count) * 64
    }

    var isFull: Bool { count >= capacity }

    mutating func insert(_ id: String) {
        let (first, step) = Self.hashes(id)
        var probe = first
        for _ in 0..<Self.probes {
            let bit = probe % bitCount
            words[Int(bit >> 6)] |= 1 << (bit & 63)
            probe &+= step
        }
        count += 1
    }

    func mayContain(_ id: String) -> Bool {
        let (first, step) = Self.hashes(id)
        var probe = first
        for _ in 0..<Self.probes {
            let bit = probe % bitCount
            if words[Int(bit >> 6)] & (1 << (bit & 63)) == 0 { return false }
            probe &+= step
        }
        return true
    }

    /// Two hashes of the id's UTF-8 (FNV-1a, then a 64-bit finalizer for the second): the
    /// probes are `first + i × step` (Kirsch–Mitzenmacher).
    private static func hashes(_ id: String) -> (UInt64, UInt64) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        var mixed = hash
        mixed = (mixed ^ (mixed >> 33)) &* 0xff51_afd7_ed55_8ccd
        mixed = (mixed ^ (mixed >> 33)) &* 0xc4ce_b9fe_1a85_ec53
        mixed ^= mixed >> 33
        return (hash, mixed | 1)
    }
}
