import Foundation
import Testing
@testable import GenetikaStorage

@Suite("Instance lock")
struct InstanceLockTests {
    @Test("a second lock on the same state names the holder; releasing lets the next one in")
    func instanceLock() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-lock-\(UUID().uuidString)/acker.db.lock").path
        let first = try InstanceLock(path: path, guarding: "the acker state")
        do {
            _ = try InstanceLock(path: path, guarding: "the acker state")
            Issue.record("a second lock was granted")
        } catch let held as InstanceLock.Held {
            #expect(held.holder == "pid \(getpid())")
            #expect(held.description.contains("another Genetika instance (pid \(getpid())) is using the acker state"))
        }
        first.release()
        let second = try InstanceLock(path: path, guarding: "the acker state")
        second.release()
    }
}
