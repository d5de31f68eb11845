import Foundation
import GenetikaTestSupport
import Testing
@testable import GenetikaStorage

@Suite("Acker state store")
struct AckerStoreTests {
    func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("acker-\(UUID().uuidString)/acker.db").path
    }

    @Test("entries round-trip with integer and with text ids; a state file created one way opens the other way", arguments: [true, false])
    func roundTrip(integerIds: Bool) throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let ids = integerIds ? ["1", "42", "9223372036854775807"] : ["a-1", "B 42", "ünï"]
        do {
            let store = try AckerStore(path: path, topicCount: 3, integerIds: integerIds)
            defer { store.close() }
            #expect(try store.entry(ids[0]) == nil)
            try store.transaction {
                try store.save(AckerEntry(id: ids[0], partition: 2, seen: 0b101, timestamps: [10, nil, 30], acked: false))
                try store.save(AckerEntry(id: ids[1], partition: 0, seen: 0b111, timestamps: [1, 2, 3], acked: true))
                try store.markAcked(ids[2], partition: 1)
            }
            #expect(try store.entry(ids[0]) == AckerEntry(id: ids[0], partition: 2, seen: 0b101, timestamps: [10, nil, 30], acked: false))
            #expect(try store.entry(ids[1])?.acked == true)
            #expect(try store.entry(ids[2]) == AckerEntry(id: ids[2], partition: 1, seen: 0, timestamps: [nil, nil, nil], acked: true))
            // An update replaces the entry.
            try store.transaction {
                try store.save(AckerEntry(id: ids[0], partition: 2, seen: 0b111, timestamps: [10, 20, 30], acked: true))
            }
            #expect(try ackedIds(inStateAt: path) == 3)
        }
        // Reopened with the other id kind (an existing file keeps its schema).
        let reopened = try AckerStore(path: path, topicCount: 3, integerIds: !integerIds)
        defer { reopened.close() }
        #expect(try reopened.entry(ids[0]) == AckerEntry(id: ids[0], partition: 2, seen: 0b111, timestamps: [10, 20, 30], acked: true))
        #expect(try ackedIds(inStateAt: path) == 3)
        #expect(try reopened.entry(integerIds ? "43" : "a-2") == nil)
    }

    @Test("the pending log: the latest row per id comes back on reopening, stored ids are left out, a rewrite keeps only what is appended again", arguments: [true, false])
    func pendingLog(integerIds: Bool) throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        func id(_ n: Int) -> String { integerIds ? String(n) : "id-\(n)" }
        func pending(_ store: AckerStore) throws -> [String: AckerEntry] {
            var found: [String: AckerEntry] = [:]
            try store.forEachPending { found[$0.id] = $0 }
            return found
        }
        do {
            let store = try AckerStore(path: path, topicCount: 3, integerIds: integerIds)
            defer { store.close() }
            try store.transaction {
                for n in 0..<10 { try store.appendPending(AckerEntry(id: id(n), partition: Int32(n % 3), seen: 0b001, timestamps: [Int64(n), nil, nil], acked: false)) }
            }
            try store.transaction {
                // Id 1 reaches a second topic; id 2 is acked (its row moves to acker_ids).
                try store.appendPending(AckerEntry(id: id(1), partition: 1, seen: 0b011, timestamps: [1, 11, nil], acked: false))
                try store.save(AckerEntry(id: id(2), partition: 2, seen: 0b111, timestamps: [2, 12, 22], acked: true))
            }
            #expect(store.pendingRows == 11)
            // Pending ids have no row: the filter answers without a read, and nothing is found.
            #expect(try store.entry(id(5)) == nil)
            #expect(try store.entry(id(2))?.acked == true)
        }
        let store = try AckerStore(path: path, topicCount: 3, integerIds: integerIds)
        defer { store.close() }
        #expect(store.pendingRows == 11)
        var found = try pending(store)
        #expect(found.count == 9 && found[id(2)] == nil)
        #expect(found[id(1)] == AckerEntry(id: id(1), partition: 1, seen: 0b011, timestamps: [1, 11, nil], acked: false))
        #expect(found[id(7)] == AckerEntry(id: id(7), partition: 1, seen: 0b001, timestamps: [7, nil, nil], acked: false))
        // The stored id is found after reopening (the filter is rebuilt from the table).
        #expect(try store.entry(id(2))?.acked == true)
        // An id acked from the log: a row with acked = 1, counted by the acker_acked view, then
        // merged into acker_ids (and left out of the log from then on).
        try store.transaction {
            try store.appendPending(AckerEntry(id: id(3), partition: 0, seen: 0b111, timestamps: [3, 13, 23], acked: true))
        }
        #expect(try pending(store)[id(3)]?.acked == true)
        #expect(try store.entry(id(3)) == nil)
        #expect(try ackedIds(inStateAt: path) == 2)
        try store.transaction { try store.mergeAcked([id(3): 0]) }
        #expect(try pending(store)[id(3)] == nil)
        #expect(try store.entry(id(3))?.acked == true)
        #expect(try ackedIds(inStateAt: path) == 2)
        try store.transaction {
            try store.clearPending()
            try store.appendPending(found[id(1)]!)
        }
        found = try pending(store)
        #expect(found.keys.sorted() == [id(1)] && store.pendingRows == 1)
        // Forgetting a partition drops its pending rows too.
        try store.forget(partition: 1)
        #expect(try pending(store).isEmpty && store.pendingRows == 0)
    }

    @Test("the stored-id filter has no false negatives as it grows past its first size")
    func filterGrows() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try AckerStore(path: path, topicCount: 3, integerIds: true)
        defer { store.close() }
        let count = 150_000
        try store.transaction {
            for n in 0..<count { try store.markAcked(String(n * 7), partition: 0) }
        }
        var missing = 0
        for n in 0..<count where try store.entry(String(n * 7))?.acked != true { missing += 1 }
        #expect(missing == 0)
        var filter = IdFilter(capacity: 10_000)
        for n in 0..<10_000 { filter.insert("k\(n)") }
        #expect((0..<10_000).allSatisfy { filter.mayContain("k\($0)") })
        let falsePositives = (10_000..<110_000).filter { filter.mayContain("k\($0)") }.count
        #expect(falsePositives < 2_000, "false positives: \(falsePositives) of 100,000")
    }
}
