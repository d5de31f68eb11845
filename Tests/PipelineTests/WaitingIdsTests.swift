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

    @Test("revoked partitions' ids are forgotten, others kept; evict hands over and forgets exactly that many")
    func partitionsAndEvict() {
        var waiting = WaitingIds(topicCount: 2)
        for id in 1...1000 {
            waiting[String(id)] = Self.entry(String(id), partition: Int32(id % 4), seen: 1, [Int64(id), nil])
        }
        waiting.removeAll(inPartitions: [1, 3])
        #expect(waiting.count == 500)
        #expect(waiting["1"] == nil && waiting["3"] == nil)
        #expect(waiting["2"] == Self.entry("2", partition: 2, seen: 1, [2, nil]))
        var evicted: [AckerEntry] = []
        waiting.evict(400) { evicted.append($0) }
        #expect(waiting.count == 100)
        #expect(evicted.count == 400 && Set(evicted.map(\.id)).count == 400)
        #expect(evicted.allSatisfy { waiting[$0.id] == nil && $0 == Self.entry($0.id, partition: Int32(Int($0.id)! % 4), seen: 1, [Int64($0.id)!, nil]) })
        // Freed slots are reused without disturbing the ids kept.
        let kept = (1...1000).map(String.init).filter { waiting[$0] != nil }
        for id in 2001...2400 { waiting[String(id)] = Self.entry(String(id), partition: 0, seen: 2, [nil, Int64(id)]) }
        #expect(kept.allSatisfy { waiting[$0]?.timestamps[0] == Int64($0) })
        #expect(waiting["2400"] == Self.entry("2400", partition: 0, seen: 2, [nil, 2400]))
    }

    @Test("overdue: the ids of the given partitions whose earliest event is older than the cutoff; forEach sees every id once")
    func overdueAndForEach() {
        var waiting = WaitingIds(topicCount: 3)
        waiting["1"] = Self.entry("1", partition: 0, seen: 0b001, [100, nil, nil])
        waiting["2"] = Self.entry("2", partition: 0, seen: 0b110, [nil, 900, 50])
        waiting["3"] = Self.entry("3", partition: 1, seen: 0b001, [10, nil, nil])
        waiting["x"] = Self.entry("x", partition: 0, seen: 0b010, [nil, 1000, nil])
        waiting["y"] = Self.entry("y", partition: 0, seen: 0b010, [nil, 20, nil])
        let overdue = waiting.overdue(in: [0], olderThan: 101)
        #expect(Set(overdue.map(\.id)) == ["1", "2", "y"])
        #expect(overdue.first { $0.id == "2" } == Self.entry("2", partition: 0, seen: 0b110, [nil, 900, 50]))
        #expect(waiting.overdue(in: [0, 1], olderThan: 11).map(\.id) == ["3"])
        var seen: [String] = []
        waiting.forEach { seen.append($0.id) }
        #expect(seen.sorted() == ["1", "2", "3", "x", "y"])
    }
}
