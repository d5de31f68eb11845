import Logging
import GenetikaSupport

/// When and how often the supervisor restarts failed stages.
package struct RestartPolicy: Sendable {
    var initialBackoff: Duration
    var maxBackoff: Duration
    /// More than this many restarts of one stage within `window` ends the run.
    var maxRestarts: Int
    var window: Duration

    package init(initialBackoff: Duration, maxBackoff: Duration, maxRestarts: Int, window: Duration) {
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxRestarts = maxRestarts
        self.window = window
    }

    package init(_ configuration: SupervisorConfiguration) {
        self.init(initialBackoff: .milliseconds(configuration.initialBackoffMs), maxBackoff: .milliseconds(configuration.maxBackoffMs),
                  maxRestarts: configuration.maxRestarts, window: .seconds(configuration.windowSeconds))
    }

    /// The pause before the n-th restart within the window (n ≥ 1): doubling, capped.
    func backoff(restart n: Int) -> Duration {
        var delay = initialBackoff
        for _ in 1..<max(n, 1) {
            delay = delay * 2
            if delay >= maxBackoff { return maxBackoff }
        }
        return min(delay, maxBackoff)
    }
}

/// An error by which a stage asks to be started again at once, as part of its normal work
/// (not a failure: no backoff, and it does not count against the restart policy).
protocol RestartRequest: Error {}

/// A failure that left events handed to Kafka but not delivered (the producer's).
protocol UndeliveredEvents: Error {
    var undelivered: Int { get }
}

/// A stage gave up: it failed more often than the policy allows.
package struct TooManyRestarts: Error, CustomStringConvertible {
    package var stage: String
    package var restarts: Int
    var window: Duration
    var lastError: String
    package var description: String {
        "stage \(stage) failed \(restarts + 1) times within \(window); giving up. Last error: \(lastError)"
    }
}

/// How a supervised stage is made: a fresh instance for every (re)start.
package struct StageSpec: Sendable {
    package var name: String
    /// True for stages that finish their work and end (the producer); others run until stopped.
    var finishes: Bool
    package var make: @Sendable () throws -> any PipelineStage

    package init(name: String, finishes: Bool = false, make: @escaping @Sendable () throws -> any PipelineStage) {
        self.name = name
        self.finishes = finishes
        self.make = make
    }
}

/// Runs the stages concurrently, restarts one that throws with exponential backoff (logging
/// each restart with its cause), and ends the run with `TooManyRestarts` when a stage fails
/// too often within the policy's window. A stage whose `run()` returns normally is done.
package actor Supervisor {
    package enum StageState: String, Sendable {
        case starting, running, restarting, finished, stopped, failed
    }

    private let stages: [StageSpec]
    private let policy: RestartPolicy
    private let stop: StopSignal
    private let counters: PipelineCounters
    private let logger: Logger
    private let health: StageHealth?
    private(set) var states: [String: StageState] = [:]

    package init(stages: [StageSpec], policy: RestartPolicy, stop: StopSignal, counters: PipelineCounters, logger: Logger,
                health: StageHealth? = nil) {
        self.stages = stages
        self.policy = policy
        self.stop = stop
        self.counters = counters
        self.logger = logger
        self.health = health
        for stage in stages {
            states[stage.name] = .starting
            health?.set(stage.name, .starting)
        }
    }

    private func set(_ name: String, _ state: StageState) {
        states[name] = state
        health?.set(name, state)
    }

    /// Runs every stage until each has finished or the stop signal ends it. `until`, when
    /// given, returns once the run's work is done (it must return when cancelled); the stop
    /// signal is then raised, with `reason`.
    package func run(until done: (@Sendable () async -> Void)? = nil, reason: String = "done") async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for spec in stages {
                group.addTask {
                    try await self.supervise(spec)
                    return true
                }
            }
            if let done {
                group.addTask { [stop] in
                    await done()
                    if !Task.isCancelled { stop.request(reason: reason) }
                    return false
                }
            }
            // The first stage to give up ends the run: `waitForAll()` would wait for the
            // healthy stages, which never end on their own, so take results one by one.
            do {
                var running = stages.count
                while running > 0, let isStage = try await group.next() {
                    if isStage { running -= 1 }
                }
                group.cancelAll()  // the `until` waiter, if it still waits
            } catch {
                stop.request(reason: "\(error)")
                group.cancelAll()
                while !group.isEmpty { _ = try? await group.next() }
                throw error
            }
        }
    }

    private func supervise(_ spec: StageSpec) async throws {
        var restarts: [ContinuousClock.Instant] = []
        while true {
            if stop.isRequested {
                set(spec.name, .stopped)
                return
            }
            set(spec.name, .running)
            do {
                let stage = try spec.make()
                try await stage.run()
                set(spec.name, stop.isRequested && !spec.finishes ? .stopped : .finished)
                if stop.isRequested || spec.finishes { return }
                // A long-running stage that returned without a stop request is restarted.
                logger.warning("stage \(spec.name) ended unexpectedly; restarting")
            } catch let request as RestartRequest where !stop.isRequested {
                logger.notice("stage \(spec.name): \(request)")
                continue
            } catch {
                let undelivered = (error as? UndeliveredEvents)?.undelivered ?? 0
                health?.failed(spec.name, "\(error)")
                if stop.isRequested {
                    counters.deliveryFailures.add(undelivered)
                    logger.info("stage \(spec.name) ended while stopping: \(error)")
                    set(spec.name, .stopped)
                    return
                }
                let now = ContinuousClock.now
                restarts = restarts.filter { now - $0 < policy.window }
                if restarts.count >= policy.maxRestarts {
                    counters.deliveryFailures.add(undelivered)
                    set(spec.name, .failed)
                    let failure = TooManyRestarts(stage: spec.name, restarts: restarts.count, window: policy.window, lastError: "\(error)")
                    logger.critical("\(failure)")
                    throw failure
                }
                restarts.append(now)
                counters.stageRestarts.add()
                counters.deliveriesResent.add(undelivered)
                let delay = policy.backoff(restart: restarts.count)
                set(spec.name, .restarting)
                logger.error("stage \(spec.name) failed: \(error); restart \(restarts.count) of at most \(policy.maxRestarts) in \(policy.window), in \(delay)")
                await stop.wait(upTo: delay)
            }
        }
    }
}
