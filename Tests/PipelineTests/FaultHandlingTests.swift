import Synchronization
import Foundation
import GenetikaTestSupport
import Logging
import Testing
@testable import GenetikaPipeline
@testable import GenetikaJSON
@testable import GenetikaStorage
@testable import GenetikaKafka
@testable import GenetikaSupport

/// A stage that runs until the stop signal, like the consuming stages.
private actor RunsUntilStopped: PipelineStage {
    nonisolated let name = "healthy"
    let stop: StopSignal
    init(stop: StopSignal) { self.stop = stop }
    func run() async throws {
        while !stop.isRequested && !Task.isCancelled { await stop.wait(upTo: .seconds(60)) }
    }
}

/// A stage that fails at once, every time.
private actor AlwaysFails: PipelineStage {
    nonisolated let name = "broken"
    struct Broken: Error {}
    func run() async throws { throw Broken() }
}

/// A clock for `StageHealth` that moves only when the test says.
private final class HandClock: Sendable {
    private let offset = Mutex<Duration>(.zero)
    private let origin = ContinuousClock.now
    var now: ContinuousClock.Instant { origin + offset.withLock { $0 } }
    func advance(_ by: Duration) { offset.withLock { $0 += by } }
}

@Suite("Faults: supervisor, stop signal, health, instance lock")
struct FaultHandlingTests {
    let logger = Logger(label: "test")

    @Test("a stage the supervisor gives up on ends the run although the other stage is healthy, and stops that stage",
          .timeLimit(.minutes(1)))
    func giveUpEndsRun() async throws {
        let stop = StopSignal()
        let counters = PipelineCounters()
        let supervisor = Supervisor(
            stages: [StageSpec(name: "healthy") { RunsUntilStopped(stop: stop) }, StageSpec(name: "broken") { AlwaysFails() }],
            policy: RestartPolicy(initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(20), maxRestarts: 2, window: .seconds(60)),
            stop: stop, counters: counters, logger: logger)
        let started = ContinuousClock.now
        await #expect(throws: TooManyRestarts.self) { try await supervisor.run() }
        // The healthy stage would wait 60 s on its own; well under that means it was stopped.
        #expect(ContinuousClock.now - started < .seconds(40), "the run must end promptly, not wait for the healthy stage")
        #expect(stop.isRequested, "the other stages must be told to stop")
        #expect(counters.stageRestarts.value == 2)
        #expect(await supervisor.states["broken"] == .failed)
    }

    @Test("a restart request restarts the stage at once without counting against the policy")
    func restartRequest() async throws {
        struct Again: RestartRequest {}
        actor AsksTwice: PipelineStage {
            nonisolated let name = "asks"
            let count: Counter
            init(count: Counter) { self.count = count }
            func run() async throws {
                count.add()
                if count.value <= 3 { throw Again() }
            }
        }
        let runs = Counter()
        let counters = PipelineCounters()
        let supervisor = Supervisor(stages: [StageSpec(name: "asks", finishes: true) { AsksTwice(count: runs) }],
                                    policy: RestartPolicy(initialBackoff: .seconds(30), maxBackoff: .seconds(30), maxRestarts: 1, window: .seconds(60)),
                                    stop: StopSignal(), counters: counters, logger: logger)
        try await supervisor.run()
        #expect(runs.value == 4)
        #expect(counters.stageRestarts.value == 0)
    }

    @Test("the stop signal wakes waiters, runs its handlers once, and keeps the first reason")
    func stopSignal() async throws {
        let stop = StopSignal()
        let calls = Counter()
        stop.onRequest { reason in
            #expect(reason == "first")
            calls.add()
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
        #expect(calls.value == 1)
        #expect(stop.reason == "first")
        let late = Counter()
        stop.onRequest { _ in late.add() }
        #expect(late.value == 1, "a handler added after the request runs at once")
        // A wait that times out on its own returns after its duration.
        let quiet = StopSignal()
        let before = ContinuousClock.now
        await quiet.wait(upTo: .milliseconds(100))
        #expect(ContinuousClock.now - before >= .milliseconds(100))
    }

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

    @Test("caught up: only partitions this member owns count; owning nothing is never caught up")
    func catchUp() {
        let a = TopicPartition("topic1", 0), b = TopicPartition("topic1", 1)
        var tracker = CatchUpTracker()
        #expect(!tracker.isCaughtUp([a: 10, b: 10]), "before any assignment")
        tracker.assigned([a: 4])
        #expect(!tracker.isCaughtUp([a: 10, b: 10]))
        tracker.processed([a: 10])
        #expect(tracker.isCaughtUp([a: 10, b: 10]), "b belongs to another member")
        tracker.revoked([a])
        #expect(!tracker.isCaughtUp([a: 10, b: 10]), "between a revoke and the next assignment")
    }

    @Test("GENETIKA_TOPIC_PARTITIONS and GENETIKA_OBSERVABILITY_PORT override the file; bad values name the variable")
    func environmentOverrides() throws {
        let path = repositoryRoot.appendingPathComponent("config.json").path
        let configuration = try GenetikaConfiguration.load(path: path, environment: ["GENETIKA_TOPIC_PARTITIONS": "6", "GENETIKA_OBSERVABILITY_PORT": "0"])
        #expect(configuration.topics.partitions == 6)
        #expect(configuration.observability.port == 0)
        for (name, value) in [("GENETIKA_TOPIC_PARTITIONS", "three"), ("GENETIKA_TOPIC_PARTITIONS", "0"), ("GENETIKA_OBSERVABILITY_PORT", "70000")] {
            do {
                _ = try GenetikaConfiguration.load(path: path, environment: [name: value])
                Issue.record("\(name)=\(value) was accepted")
            } catch let error as ConfigError {
                #expect(error.issues.first?.path.hasPrefix(name) == true)
            }
        }
    }
}

@Suite("Kafka producer: closing while others send")
struct ProducerCloseTests {
    @Test("tasks that keep sending while the producer closes get 'producer is closed', never a destroyed handle",
          .timeLimit(.minutes(1)))
    func closeWhileSending() async throws {
        // No broker needed: messages only queue up, and close() purges them.
        let port = try freePort()
        for round in 0..<20 {
            let producer = try KafkaProducer(configuration: KafkaClientConfiguration(bootstrapServers: "127.0.0.1:\(port)"),
                                             name: "close-test-\(round)")
            let accepted = Counter()
            let refused = Counter()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sender in 0..<4 {
                    group.addTask {
                        for n in 0..<2_000 {
                            do {
                                try await producer.send(OutgoingMessage(topic: "t", key: Array("\(sender)-\(n)".utf8), value: [1, 2, 3])) { _ in }
                                accepted.add()
                            } catch let error as KafkaError {
                                #expect(error.message == "producer is closed", "\(error)")
                                refused.add()
                                return
                            }
                        }
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(Int.random(in: 1...20)))
                    producer.close(timeout: .zero)
                }
                try await group.waitForAll()
            }
            #expect(accepted.value + refused.value > 0)
            #expect(producer.outstanding == 0, "a closed producer reports nothing outstanding")
            await #expect(throws: KafkaError.self) {
                try await producer.send(OutgoingMessage(topic: "t", key: nil, value: [1])) { _ in }
            }
        }
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
