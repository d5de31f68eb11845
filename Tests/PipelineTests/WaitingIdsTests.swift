import Testing
@testable import GenetikaPipeline
import GenetikaStorage

@Suite("The acker's waiting ids")
struct WaitingIdsTests {
    static func entry(_ id: String, partition: Int32, seen: Int64, _ timestamps: [Int64?]) -> AckerEntry {
        AckerEntry(id: id, partition: partition, seen: seen, timestamps: timestamps, acked: false)
    }

    @Test("integer and text ids round-trip with their partition, topics seen and timestamps; removed slots are reused")
    func roundTrip() {
        var waiting = WaitingIds(topicCount: 3)
        let ids = ["42", "-7", "007", "a-1", "9223372036854775807"]
        for (n, id) in ids.enumerated() {
            waiting[id] = Self.entry(id, partition: Int32(n), seen: 0b101, [Int64(n), nil, 30])
        }
        #expect(waiting.count == ids.count)
        for (n, id) in ids.enumerated() {
            #expect(waiting[id] == Self.entry(id, partition: Int32(n), seen: 0b101, [Int64(n), nil, 30]))
        }
        // "007" is not the integer 7: it keeps its text.
        #expect(waiting["7"] == nil)
        waiting["42"] = Self.entry("42", partition: 0, seen: 0b111, [1, 2, 3])
        #expect(waiting["42"]?.timestamps == [1, 2, 3])
        waiting["42"] = nil
        waiting["a-1"] = nil
        #expect(waiting["42"] == nil && waiting["a-1"] == nil && waiting.count == 3)
        waiting["43"] = Self.entry("43", partition: 9, seen: 1, [5, nil, nil])
        #expect(waiting["43"] == Self.entry("43", partition: 9, seen: 1, [5, nil, nil]))
        #expect(waiting["-7"] == Self.entry("-7", partition: 1, seen: 0b101, [1, nil, 30]))
    }

    @Test("revoked partitions' ids are forgotten, others kept; shrink keeps at most the limit")
    func partitionsAndShrink() {
        var waiting = WaitingIds(topicCount: 2)
        for id in 1...1000 {
            waiting[String(id)] = Self.entry(String(id), partition: Int32(id % 4), seen: 1, [Int64(id), nil])
        }
        waiting.removeAll(inPartitions: [1, 3])
        #expect(waiting.count == 500)
        #expect(waiting["1"] == nil && waiting["3"] == nil)
        #expect(waiting["2"] == Self.entry("2", partition: 2, seen: 1, [2, nil]))
        waiting.shrink(to: 100)
        #expect(waiting.count == 100)
        // Freed slots are reused without disturbing the ids kept.
        let kept = (1...1000).map(String.init).filter { waiting[$0] != nil }
        for id in 2001...2400 { waiting[String(id)] = Self.entry(String(id), partition: 0, seen: 2, [nil, Int64(id)]) }
        #expect(kept.allSatisfy { waiting[$0]?.timestamps[0] == Int64($0) })
        #expect(waiting["2400"] == Self.entry("2400", partition: 0, seen: 2, [nil, 2400]))
    }
}
