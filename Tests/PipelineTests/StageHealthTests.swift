import Synchronization
import Testing
import GenetikaJSON
@testable import GenetikaPipeline

/// A clock for `StageHealth` that moves only when the test says.
private final class HandClock: Sendable {
    private let offset = Mutex<Duration>(.zero)
    private let origin = ContinuousClock.now
    var now: ContinuousClock.Instant { origin + offset.withLock { $0 } }
    func advance(_ by: Duration) { offset.withLock { $0 += by } }
}

@Suite("/health")
struct StageHealthTests {
    @Test("/health: a running stage with lag and no progress is stuck; a busy step too; brokers down after the grace")
    func healthProblems() async throws {
        // A clock moved by hand: the ages are exact and the test does not sleep.
        let clock = HandClock()
        let health = StageHealth(stages: ["db", "acker"], stuckAfter: .milliseconds(200), brokerGrace: .seconds(2),
                                 now: { clock.now })
        health.set("db", .running)
        health.set("acker", .running)
        #expect(health.isHealthy)
        health.lag("db", 0)
        clock.advance(.milliseconds(300))
        #expect(health.isHealthy, "no lag: idle, not stuck")
        health.lag("db", 42)
        #expect(health.problems.contains { $0.hasPrefix("stage db is stuck: no progress") && $0.contains("lag of 42") })
        #expect(!health.isHealthy("db") && health.isHealthy("acker"))
        health.progressed("db", lag: 0)
        #expect(health.isHealthy, "progress clears it")
        health.lag("db", 5)
        clock.advance(.milliseconds(199))
        #expect(health.isHealthy, "lag, but progress within stuckAfter")
        health.busy("acker", "reading back ack[0] from offset 7")
        clock.advance(.milliseconds(150))
        #expect(health.isHealthy("acker"), "a step younger than stuckAfter")
        clock.advance(.milliseconds(150))
        let busy = health.problems.filter { $0.contains("acker") }
        #expect(busy.count == 1 && busy[0].hasPrefix("stage acker is stuck: reading back ack[0] from offset 7 for "), "\(busy)")
        health.idle("acker")
        health.progressed("db", lag: 0)
        health.brokersDown(client: "db", reason: "1/1 brokers are down")
        clock.advance(.milliseconds(1900))
        #expect(health.isHealthy, "within the grace period")
        clock.advance(.milliseconds(200))
        let response = health.response()
        #expect(response.status == 503)
        let body = try JSONParser.parse(response.body)
        guard case .array(let problems)? = body["problems"] else { Issue.record("no problems array"); return }
        #expect(problems.count == 1)
        health.brokersUp(client: "db")
        #expect(health.response().status == 200)
        health.set("db", .restarting)
        health.failed("db", "COMMIT: database or disk is full")
        #expect(health.problems == ["stage db is restarting: COMMIT: database or disk is full"])
    }
}

@Suite("Quiet progress log")
struct QuietLogTests {
    @Test("a line is logged when its counts change; an unchanged one at most once a heartbeat, as idle")
    func quiet() {
        let log = QuietLog(heartbeat: .seconds(60))
        let start = ContinuousClock.now
        func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }
        #expect(log.next("sent 0 written 0", now: at(0)) == "progress: sent 0 written 0")
        // 30 idle seconds at one line every 5 s: nothing more.
        for t in stride(from: 5, through: 30, by: 5) { #expect(log.next("sent 0 written 0", now: at(t)) == nil) }
        #expect(log.next("sent 10 written 0", now: at(35)) == "progress: sent 10 written 0")
        for t in stride(from: 40, through: 90, by: 5) { #expect(log.next("sent 10 written 0", now: at(t)) == nil) }
        #expect(log.next("sent 10 written 0", now: at(95)) == "idle: sent 10 written 0")
        #expect(log.next("sent 10 written 0", now: at(100)) == nil)
        #expect(log.next("sent 10 written 0", now: at(155)) == "idle: sent 10 written 0")
    }
}
