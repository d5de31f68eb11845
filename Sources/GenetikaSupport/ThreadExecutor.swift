import Foundation

/// A serial executor that runs an actor's jobs on one dedicated thread.
///
/// Consuming stages block in `rd_kafka_consumer_poll` and in SQLite; on their own thread
/// that never starves Swift's shared cooperative pool (two threads on a two-core machine).
/// It also lets librdkafka's rebalance callback, which runs inside `poll`, use the actor's
/// state synchronously (`assumeIsolated`): it is on the actor's thread by construction.
package final class ThreadExecutor: SerialExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `running` are only touched with `condition` locked; `thread`
    // is written once in init before any job can be enqueued.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var running = true
    private var thread: Thread?
    package let name: String

    package init(name: String) {
        self.name = name
        // The thread keeps the executor alive until `shutdown()` lets the loop end.
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.stackSize = 4 << 20
        self.thread = thread
        thread.start()
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        condition.signal()
        condition.unlock()
    }

    package func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    package func checkIsolated() {
        precondition(Thread.current === thread, "not on executor thread \(name)")
    }

    /// Ends the thread once the jobs already queued have run.
    package func shutdown() {
        condition.lock()
        running = false
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && running { condition.wait() }
            if jobs.isEmpty && !running {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
        }
    }
}
