import Synchronization
import Testing
import GenetikaSupport

@Suite("Stop signal")
struct StopSignalTests {
    @Test("the stop signal wakes waiters, runs its handlers once, and keeps the first reason")
    func stopSignal() async throws {
        let stop = StopSignal()
        let calls = Tally()
        stop.onRequest { reason in
            #expect(reason == "first")
            calls.value.add(1, ordering: .relaxed)
        }
        let started = ContinuousClock.now
        // Woken by the request, not by its own timeout: the margin between the two is wide
        // because CI runs this beside a hundred other tests on two cores (6.9 s seen once).
        async let waited: Void = stop.wait(upTo: .seconds(120))
        try await Task.sleep(for: .milliseconds(50))
        stop.request(reason: "first")
        stop.request(reason: "second")
        await waited
        #expect(ContinuousClock.now - started < .seconds(60))
        #expect(calls.value.load(ordering: .relaxed) == 1)
        #expect(stop.reason == "first")
        let late = Tally()
        stop.onRequest { _ in late.value.add(1, ordering: .relaxed) }
        #expect(late.value.load(ordering: .relaxed) == 1, "a handler added after the request runs at once")
        // A wait that times out on its own returns after its duration.
        let quiet = StopSignal()
        let before = ContinuousClock.now
        await quiet.wait(upTo: .milliseconds(100))
        #expect(ContinuousClock.now - before >= .milliseconds(100))
    }
}
