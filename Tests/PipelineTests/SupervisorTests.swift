import Foundation
import GenetikaTestSupport
import Testing
@testable import GenetikaPipeline
@testable import GenetikaSupport

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
}
