import GenetikaSupport

/// Where the run stands: whether the producer finished (and the source topics' high
/// watermarks at that moment), and which consuming stages have caught up with them.
package actor PipelineProgress {
    private(set) var producerFinished = false
    /// The consuming stages' positions, for the producer's lead limit.
    nonisolated let lead = ConsumerLead()
    /// Source partitions' high watermarks once the producer finished.
    private(set) var targets: [TopicPartition: Int64]?
    private var caughtUp: Set<String> = []
    private var ready: Set<String> = []
    /// Consuming stages the producer waits for before sending (those run by this process).
    private(set) var awaitedConsumers: Set<String> = []

    /// Tasks waiting for the progress to change (`waitUntil`).
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func expectConsumers(_ names: [String]) {
        awaitedConsumers = Set(names)
        changed()
    }

    /// A consuming stage has its partitions and is reading.
    func markReady(_ name: String) {
        ready.insert(name)
        changed()
    }

    /// Waits until every awaited consuming stage is ready, or `timeout` passed; returns
    /// whether they all were.
    func waitForConsumers(timeout: Duration) async -> Bool {
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.changed()
        }
        defer { timer.cancel() }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        await waitUntil { progress in progress.awaitedConsumers.isSubset(of: progress.ready) || ContinuousClock.now >= deadline }
        return awaitedConsumers.isSubset(of: ready)
    }

    /// Waits until the producer (when `needsProducer`) finished and every stage in
    /// `consuming` caught up with it (or, in a consume-only run, with the partitions' ends).
    /// Returns early when the task is cancelled.
    func waitUntilDone(consuming: [String], needsProducer: Bool) async {
        await waitUntil { progress in
            if needsProducer && !progress.producerFinished { return false }
            guard progress.targets != nil || progress.untilEnd else { return false }
            return progress.hasCaughtUp(consuming)
        }
    }

    /// Suspends until `condition` holds, re-checking it on every change (no polling), or
    /// until the task is cancelled.
    private func waitUntil(_ condition: (isolated PipelineProgress) -> Bool) async {
        while !condition(self) && !Task.isCancelled {
            await withTaskCancellationHandler {
                await withCheckedContinuation { waiters.append($0) }
            } onCancel: {
                Task { await self.changed() }
            }
        }
    }

    private func changed() {
        let woken = waiters
        waiters = []
        for waiter in woken { waiter.resume() }
    }

    package init() {}

    func producerDone(targets: [TopicPartition: Int64]) {
        producerFinished = true
        self.targets = targets
        changed()
    }

    /// True for runs without a producer that end once every source partition is read to
    /// its end (partition EOF).
    private(set) var untilEnd = false

    func consumeToEnd() {
        untilEnd = true
        changed()
    }

    /// Records whether a consuming stage caught up: with the producer's targets or, in a
    /// consume-only run, with the end of every source partition (`allAtEnd`).
    func update(_ name: String, tracker: CatchUpTracker, allAtEnd: Bool) {
        if let targets {
            stage(name, caughtUp: tracker.isCaughtUp(targets))
        } else if untilEnd {
            stage(name, caughtUp: allAtEnd)
        }
    }

    package func stage(_ name: String, caughtUp: Bool) {
        if caughtUp { self.caughtUp.insert(name) } else { self.caughtUp.remove(name) }
        changed()
    }

    func hasCaughtUp(_ stages: [String]) -> Bool {
        stages.allSatisfy(caughtUp.contains)
    }
}
