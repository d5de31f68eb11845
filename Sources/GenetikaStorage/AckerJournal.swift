/// The waiting ids' changes of one batch and one partition as one value: what
/// `PostgresAckerStore` appends to `genetika_acker_journal` as a single row, so the server
/// writes one tuple (and one index entry) per batch and partition instead of one per change
/// (docs/benchmarks.md, "Tuning decisions"). Entries merge in any order on load, as the
/// per-change rows did.
///
/// Layout (little-endian): a version byte (1), the topic count (UInt16), then per entry the
/// id's UTF-8 length (UInt32) and bytes, `seen` (Int64) and one Int64 per topic (`Int64.min`
/// for a topic not reached). A value of another version or a truncated one is refused whole.
package enum AckerJournal {
    static let version: UInt8 = 1
    static let noTime = Int64.min
    /// Most entries in one row: a rewrite of a large partition becomes several rows of
    /// bounded size rather than one value of hundreds of megabytes.
    static let entriesPerRow = 50_000

    package struct Malformed: Error, CustomStringConvertible {
        package var description: String
    }

    /// `entries` as one value of `topicCount` topics.
    static func encode(_ entries: some Collection<AckerEntry>, topicCount: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(3 + entries.count * (16 + 8 * topicCount))
        out.append(version)
        append(UInt16(topicCount), to: &out)
        for entry in entries {
            let id = Array(entry.id.utf8)
            append(UInt32(id.count), to: &out)
            out.append(contentsOf: id)
            append(UInt64(bitPattern: entry.seen), to: &out)
            for index in 0..<topicCount {
                let time = index < entry.timestamps.count ? entry.timestamps[index] : nil
                append(UInt64(bitPattern: time ?? noTime), to: &out)
            }
        }
        return out
    }

    /// The entries of one value, in `partition`, with `topicCount` times each (a value written
    /// with fewer topics gains empty times; with more, the extra ones are dropped).
    static func decode(_ bytes: [UInt8], partition: Int32, topicCount: Int, _ body: (AckerEntry) -> Void) throws {
        var at = 0
        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, bytes.count - at >= count else {
                throw Malformed(description: "acker journal: value ends at byte \(bytes.count), \(count) more expected at \(at)")
            }
            defer { at += count }
            return bytes[at..<at + count]
        }
        func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
            var value: T = 0
            for (shift, byte) in try take(MemoryLayout<T>.size).enumerated() { value |= T(byte) << (8 * shift) }
            return value
        }
        guard try take(1).first == version else {
            throw Malformed(description: "acker journal: value of version \(bytes.first.map(String.init) ?? "none"), expected \(version)")
        }
        let written = Int(try integer(UInt16.self))
        while at < bytes.count {
            let length = Int(try integer(UInt32.self))
            let id = String(decoding: try take(length), as: UTF8.self)
            let seen = Int64(bitPattern: try integer(UInt64.self))
            var times: [Int64?] = []
            times.reserveCapacity(topicCount)
            for index in 0..<written {
                let time = Int64(bitPattern: try integer(UInt64.self))
                if index < topicCount { times.append(time == noTime ? nil : time) }
            }
            while times.count < topicCount { times.append(nil) }
            body(AckerEntry(id: id, partition: partition, seen: seen, timestamps: times, acked: false))
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        for shift in 0..<MemoryLayout<T>.size { out.append(UInt8(truncatingIfNeeded: value >> (8 * shift))) }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// `bytes` as PostgreSQL's hex text form of `bytea` (`\x…`).
    static func hex(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(2 + 2 * bytes.count)
        out.append(0x5C)
        out.append(0x78)
        for byte in bytes {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of a `bytea` in PostgreSQL's hex text form.
    static func unhex(_ text: String) throws -> [UInt8] {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == 0x5C, utf8[1] == 0x78, utf8.count % 2 == 0 else {
            throw Malformed(description: "acker journal: a bytea value not in hex form")
        }
        func nibble(_ c: UInt8) throws -> UInt8 {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: throw Malformed(description: "acker journal: \(c) is not a hex digit")
            }
        }
        var out = [UInt8]()
        out.reserveCapacity((utf8.count - 2) / 2)
        var index = 2
        while index < utf8.count {
            out.append(try nibble(utf8[index]) << 4 | nibble(utf8[index + 1]))
            index += 2
        }
        return out
    }
}
