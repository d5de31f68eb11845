import Foundation
import Synchronization
import Testing
@testable import GenetikaPipeline

/// The DB stage's write-behind: one job at a time on its own thread, its result (or error)
/// handed back by `join`, nothing to join when none was started.
@Suite("Write-behind")
struct WriteBehindTests {
    struct Refused: Error, Equatable {}

    @Test("join returns nil when nothing is in flight, a job's value once, and its error")
    func joinsInOrder() throws {
        let writes = WriteBehind<Int>(name: "test-writer")
        defer { writes.shutdown() }
        #expect(writes.join() == nil)
        #expect(!writes.busy)
        writes.start { .success(7) }
        #expect(writes.busy)
        #expect(try writes.join()?.get() == 7)
        #expect(writes.join() == nil)
        writes.start { .failure(Refused()) }
        #expect(throws: Refused.self) { try writes.join()?.get() }
        #expect(!writes.busy)
    }

    @Test("the job runs on the writer's thread, not the caller's, and join waits for it to end")
    func runsBeside() throws {
        let writes = WriteBehind<Bool>(name: "test-writer")
        let caller = pthread_self()
        defer { writes.shutdown() }
        let finished = Atomic<Bool>(false)
        writes.start {
            Thread.sleep(forTimeInterval: 0.2)
            finished.store(true, ordering: .sequentiallyConsistent)
            return .success(pthread_equal(pthread_self(), caller) == 0)   // another thread
        }
        // The caller goes on at once while the job runs.
        let early = finished.load(ordering: .sequentiallyConsistent)
        #expect(!early)
        #expect(try writes.join()?.get() == true)
        let late = finished.load(ordering: .sequentiallyConsistent)
        #expect(late)
    }
}
