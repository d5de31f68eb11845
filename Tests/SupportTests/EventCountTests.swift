import Synchronization
import Testing
import GenetikaSupport

@Suite("EventCount: waiting for events without polling")
struct EventCountTests {
    /// Runs `body`; records an issue and cancels it if it has not returned within `limit`
    /// (a lost wakeup would otherwise hang the test run).
    static func within(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async -> Void) async {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { await body(); return true }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            if await group.next() == false { Issue.record("\(what) did not finish within \(limit): a wakeup was lost") }
            group.cancelAll()
        }
    }

    @Test("a waiter that read the count before a notification returns at once; one that waits is woken")
    func waitAfterNotification() async {
        let events = EventCount()
        await Self.within(.seconds(10), "waiting after a notification") {
            let seen = events.current
            events.notify()
            await events.wait(after: seen)
        }
        await Self.within(.seconds(10), "waiting for a notification") {
            let waiting = Task { await events.wait(after: events.current) }
            try? await Task.sleep(for: .milliseconds(50))
            events.notify()
            await waiting.value
        }
    }

    @Test("wait(until:) returns once its condition holds, however the notifications race the checks")
    func waitUntilCondition() async {
        let events = EventCount()
        let done = Tally()
        await Self.within(.seconds(10), "waiting until 1,000 events were counted") {
            let notifier = Task {
                for _ in 0..<1000 {
                    done.value.add(1, ordering: .sequentiallyConsistent)
                    events.notify()
                }
            }
            await events.wait { done.value.load(ordering: .sequentiallyConsistent) == 1000 }
            #expect(done.value.load(ordering: .sequentiallyConsistent) == 1000)
            await notifier.value
        }
    }

    @Test("no wakeup is lost: 4 waiters each see all 20,000 notifications of a racing notifier")
    func noLostWakeups() async {
        let events = EventCount()
        let produced = Tally()
        let total = 20_000
        await Self.within(.seconds(30), "4 waiters") {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        // Wait until every notification happened, checking only after each wakeup.
                        while !Task.isCancelled {
                            let seen = events.current
                            if produced.value.load(ordering: .sequentiallyConsistent) == total { return }
                            await events.wait(after: seen)
                        }
                    }
                }
                group.addTask {
                    for _ in 0..<total {
                        produced.value.add(1, ordering: .sequentiallyConsistent)
                        events.notify()
                        if Bool.random() { await Task.yield() }
                    }
                }
            }
        }
        #expect(events.current == UInt64(total))
    }
}

/// A counter that closures sent to other tasks can share.
final class Tally: Sendable {
    let value = Atomic<Int>(0)
}
