import Foundation

/// One piece of work in flight on a thread of its own beside a stage: the DB stage decodes
/// batch N + 1 (and polls for it) while the database commits batch N, instead of waiting for
/// the commit before it reads on. At most one job runs at a time; `join` waits for it and
/// hands back its result.
final class WriteBehind<Outcome>: @unchecked Sendable {
    // @unchecked: `job`, `result`, `inFlight` and `running` are only touched with `condition`
    // locked. What a job works on (the stage's sink) is touched by one thread at a time: the
    // writer from `start` until `join` returns, the stage otherwise — it joins before any other
    // use of the sink, and before closing it.
    private let condition = NSCondition()
    private var job: (() -> Result<Outcome, any Error>)?
    private var result: Result<Outcome, any Error>?
    private var inFlight = false
    private var running = true

    init(name: String) {
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    /// Whether a job was started and not joined yet.
    var busy: Bool {
        condition.lock()
        defer { condition.unlock() }
        return inFlight
    }

    /// Runs `job` on the writer's thread. The previous job must have been joined.
    func start(_ job: @escaping () -> Result<Outcome, any Error>) {
        condition.lock()
        precondition(!inFlight, "WriteBehind.start with a job in flight")
        self.job = job
        inFlight = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits for the job in flight, if any, and returns its result (nil when none was started).
    /// Blocks the calling thread: call it from a stage's own thread, never from Swift's pool.
    func join() -> Result<Outcome, any Error>? {
        condition.lock()
        defer { condition.unlock() }
        guard inFlight else { return nil }
        while result == nil { condition.wait() }
        let done = result
        result = nil
        inFlight = false
        return done
    }

    /// Ends the thread once the job in flight is done (the result is dropped).
    func shutdown() {
        condition.lock()
        running = false
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while job == nil && running { condition.wait() }
            guard let next = job else {
                condition.unlock()
                return
            }
            job = nil
            condition.unlock()
            let outcome = next()
            condition.lock()
            result = outcome
            condition.broadcast()
            condition.unlock()
        }
    }
}
