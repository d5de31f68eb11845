import Testing
@testable import GenetikaStorage

@Suite("The acker's journal value (PostgreSQL)")
struct AckerJournalTests {
    static func decoded(_ bytes: [UInt8], partition: Int32 = 2, topicCount: Int = 3) throws -> [AckerEntry] {
        var out: [AckerEntry] = []
        try AckerJournal.decode(bytes, partition: partition, topicCount: topicCount) { out.append($0) }
        return out
    }

    @Test("entries survive encode, hex and back: any id text, missing times, negative and extreme values")
    func roundTrip() throws {
        let entries = [
            AckerEntry(id: "7", partition: 2, seen: 0b001, timestamps: [10, nil, nil], acked: false),
            AckerEntry(id: "ü \t\n\\\"'x", partition: 2, seen: 0b110, timestamps: [nil, -5, Int64.max], acked: false),
            AckerEntry(id: "", partition: 2, seen: 0, timestamps: [nil, nil, nil], acked: false),
        ]
        let hex = AckerJournal.hex(AckerJournal.encode(entries, topicCount: 3))
        #expect(hex.hasPrefix("\\x01"))
        #expect(try Self.decoded(try AckerJournal.unhex(hex)) == entries)
        #expect(try Self.decoded(AckerJournal.encode([AckerEntry](), topicCount: 3)).isEmpty)
    }

    @Test("a value written with another topic count gains empty times or drops the extra ones")
    func topicCountChanges() throws {
        let two = AckerJournal.encode([AckerEntry(id: "a", partition: 0, seen: 0b11, timestamps: [1, 2], acked: false)], topicCount: 2)
        #expect(try Self.decoded(two, partition: 0) == [AckerEntry(id: "a", partition: 0, seen: 0b11, timestamps: [1, 2, nil], acked: false)])
        #expect(try Self.decoded(two, partition: 0, topicCount: 1) == [AckerEntry(id: "a", partition: 0, seen: 0b11, timestamps: [1], acked: false)])
    }

    @Test("a truncated value, another version or a bytea not in hex form is refused, naming what is wrong")
    func refused() throws {
        let bytes = AckerJournal.encode([AckerEntry(id: "abc", partition: 0, seen: 1, timestamps: [1, nil, nil], acked: false)], topicCount: 3)
        #expect { try Self.decoded(Array(bytes.dropLast())) } throws: { "\($0)".contains("ends at byte") }
        var other = bytes
        other[0] = 9
        #expect { try Self.decoded(other) } throws: { "\($0)".contains("version 9") }
        #expect(throws: AckerJournal.Malformed.self) { try AckerJournal.unhex("0102") }
        #expect(throws: AckerJournal.Malformed.self) { try AckerJournal.unhex("\\x0g") }
    }
}
