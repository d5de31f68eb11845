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
}
