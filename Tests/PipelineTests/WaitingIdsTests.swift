import Testing
import GenetikaSupport
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

    @Test("entries the compact table cannot hold (time far off, a topic reached without a time, negative or large partition, id beyond 32 bits, non-canonical id) round-trip through the general layout; an id is never in both")
    func fallback() {
        let now = nowMilliseconds()
        var waiting = WaitingIds(topicCount: 3)
        let cases: [AckerEntry] = [
            Self.entry("1", partition: 0, seen: 0b001, [now, nil, nil]),             // compact
            Self.entry("2", partition: 0, seen: 0b001, [0, nil, nil]),               // 1970: general
            Self.entry("3", partition: 1, seen: 0b011, [now, nil, nil]),             // reached without a time
            Self.entry("4", partition: -1, seen: 0b001, [now, nil, nil]),            // negative partition
            Self.entry("6", partition: 255, seen: 0b001, [now, nil, nil]),           // partition beyond the compact 254
            Self.entry("7", partition: 254, seen: 0b001, [now, nil, nil]),           // compact: the largest
            Self.entry("4294967295", partition: 3, seen: 0b010, [nil, now, nil]),    // compact: the largest id
            Self.entry("4294967296", partition: 3, seen: 0b010, [nil, now + 1, nil]), // beyond 32 bits: general
            Self.entry("4294967297", partition: 4, seen: 0b100, [nil, nil, now + 2]), // general; 1 in its low 32 bits
            Self.entry("05", partition: 2, seen: 0b001, [now, nil, nil]),            // non-canonical integer
            Self.entry("-9223372036854775808", partition: 2, seen: 0b100, [nil, nil, now + 1]),
        ]
        for entry in cases { waiting[entry.id] = entry }
        #expect(waiting.count == cases.count)
        for entry in cases { #expect(waiting[entry.id] == entry) }
        // Moving between layouts: id 1 gets a far time (general), then a near one (compact again).
        waiting["1"] = Self.entry("1", partition: 0, seen: 0b011, [now, now + 40 * 86_400_000, nil])
        #expect(waiting.count == cases.count)
        #expect(waiting["1"] == Self.entry("1", partition: 0, seen: 0b011, [now, now + 40 * 86_400_000, nil]))
        waiting["1"] = Self.entry("1", partition: 0, seen: 0b111, [now, now + 5, now + 6])
        #expect(waiting.count == cases.count)
        var seen: [String] = []
        waiting.forEach { seen.append($0.id) }
        #expect(seen.count == cases.count && Set(seen).count == cases.count)
        for entry in cases { waiting[entry.id] = nil }
        #expect(waiting.count == 0)
    }

    @Test("against a dictionary model: 200,000 random sets and removes over colliding ids, through growth and shrinking")
    func differential() {
        let now = nowMilliseconds()
        var waiting = WaitingIds(topicCount: 3)
        var model: [String: AckerEntry] = [:]
        var generator = SystemRandomNumberGenerator()
        // Ids from a few dense and a few sparse ranges (ids that differ only in high bits too).
        func randomId() -> String {
            switch Int.random(in: 0..<4, using: &generator) {
            case 0: String(Int64.random(in: 0..<5_000, using: &generator))
            case 1: Bool.random(using: &generator) ? String(Int64.random(in: 0..<64, using: &generator) << 44)
                : String((Int64.random(in: 1..<4, using: &generator) << 32) + Int64.random(in: 0..<5_000, using: &generator))
            case 2: String(Int64.random(in: -3_000 ... -1, using: &generator))
            default: "t\(Int.random(in: 0..<500, using: &generator))"
            }
        }
        for step in 0..<200_000 {
            let id = randomId()
            // Remove more often in the second half, so that the table shrinks too.
            if Int.random(in: 0..<10, using: &generator) < (step < 100_000 ? 3 : 7) {
                waiting[id] = nil
                model[id] = nil
            } else {
                let seen = Int64.random(in: 1...7, using: &generator)
                let far = Int.random(in: 0..<50, using: &generator) == 0
                let timestamps: [Int64?] = (0..<3).map { index in
                    seen & (1 << index) == 0 ? nil : (far ? 5 : now + Int64.random(in: -1_000_000...1_000_000, using: &generator))
                }
                // Now and then a partition beyond the compact layout's 254 (general layout).
                let partition = Int.random(in: 0..<50, using: &generator) == 0 ? Int32.random(in: 250...40_000, using: &generator)
                    : Int32.random(in: 0..<6, using: &generator)
                let entry = Self.entry(id, partition: partition, seen: seen, timestamps)
                waiting[id] = entry
                model[id] = entry
            }
            if step % 20_000 == 0 {
                #expect(waiting.count == model.count)
            }
        }
        #expect(waiting.count == model.count)
        var all: [String: AckerEntry] = [:]
        waiting.forEach { all[$0.id] = $0 }
        #expect(all == model)
        for (id, entry) in model { #expect(waiting[id] == entry) }
        waiting.removeAll(inPartitions: [0, 1, 2])
        #expect(waiting.count == model.values.filter { $0.partition >= 3 }.count)
        for (id, entry) in model { #expect(waiting[id] == (entry.partition >= 3 ? entry : nil)) }
    }
}
