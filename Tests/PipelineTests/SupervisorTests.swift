import GenetikaTestSupport
import Testing
@testable import GenetikaPipeline
@testable import GenetikaSupport
import Logging

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

@Suite("Supervisor")
struct SupervisorTests {
    actor FlakyStage: PipelineStage {
        nonisolated let name = "flaky"
        let failures: Counter
        let failTimes: Int
        init(failures: Counter, failTimes: Int) {
            self.failures = failures
            self.failTimes = failTimes
        }
        func run() async throws {
            if failures.value < failTimes {
                failures.add()
                throw TestSetupError("injected failure \(failures.value)")
            }
        }
    }

    static func policy(max: Int) -> RestartPolicy {
        RestartPolicy(initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(40), maxRestarts: max, window: .seconds(60))
    }

    @Test("a failing stage is restarted until it succeeds, and each restart is counted")
    func restarts() async throws {
        let failures = Counter()
        let counters = PipelineCounters()
        let supervisor = Supervisor(stages: [StageSpec(name: "flaky", finishes: true) { FlakyStage(failures: failures, failTimes: 3) }],
                                    policy: Self.policy(max: 5), stop: StopSignal(), counters: counters, logger: .init(label: "test"))
        try await supervisor.run()
        #expect(failures.value == 3)
        #expect(counters.stageRestarts.value == 3)
        #expect(await supervisor.states["flaky"] == .finished)
    }

    @Test("too many restarts within the window end the run with the stage and its last error")
    func givesUp() async throws {
        let failures = Counter()
        let supervisor = Supervisor(stages: [StageSpec(name: "flaky", finishes: true) { FlakyStage(failures: failures, failTimes: 100) }],
                                    policy: Self.policy(max: 2), stop: StopSignal(), counters: PipelineCounters(), logger: .init(label: "test"))
        let error = await #expect(throws: TooManyRestarts.self) { try await supervisor.run() }
        #expect(error?.stage == "flaky")
        #expect(error?.lastError == "injected failure 3")
        #expect(failures.value == 3)
        #expect(await supervisor.states["flaky"] == .failed)
    }

    @Test("backoff doubles from the initial delay up to the maximum")
    func backoff() {
        let policy = RestartPolicy(initialBackoff: .milliseconds(200), maxBackoff: .seconds(1), maxRestarts: 5, window: .seconds(60))
        #expect((1...5).map { policy.backoff(restart: $0) } == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
    }

    @Test("a stage the supervisor gives up on ends the run although the other stage is healthy, and stops that stage",
          .timeLimit(.minutes(1)))
    func giveUpEndsRun() async throws {
        let stop = StopSignal()
        let counters = PipelineCounters()
        let supervisor = Supervisor(
            stages: [StageSpec(name: "healthy") { RunsUntilStopped(stop: stop) }, StageSpec(name: "broken") { AlwaysFails() }],
            policy: RestartPolicy(initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(20), maxRestarts: 2, window: .seconds(60)),
            stop: stop, counters: counters, logger: .init(label: "test"))
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
                                    stop: StopSignal(), counters: counters, logger: .init(label: "test"))
        try await supervisor.run()
        #expect(runs.value == 4)
        #expect(counters.stageRestarts.value == 0)
    }
}
