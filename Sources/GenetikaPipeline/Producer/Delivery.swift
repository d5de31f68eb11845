import Logging
import Synchronization
import GenetikaSupport

extension ProducerStage {
    /// Deliveries that failed for good in this run of the stage.
    struct DeliveryFailures: Error, CustomStringConvertible, UndeliveredEvents {
        var count: Int
        var first: String
        var description: String { "\(count) event(s) were not delivered; first: \(first)" }
        var undelivered: Int { count }
    }

    /// The stage failed (`cause`) with events handed to Kafka and not delivered.
    struct FailedWithUndelivered: Error, CustomStringConvertible, UndeliveredEvents {
        var cause: any Error
        var undelivered: Int
        var description: String { "\(cause)" }
    }
}

/// A reason to give up the stage's work, raised by a watchdog and seen by every sender.
final class AbortSignal: Sendable {
    private let state = Mutex<(any Error)?>(nil)
    private let events: EventCount

    /// `events` is notified when the abort is raised.
    init(_ events: EventCount = EventCount()) { self.events = events }

    var error: (any Error)? { state.withLock { $0 } }
    func raise(_ error: any Error) {
        state.withLock { if $0 == nil { $0 = error } }
        events.notify()
    }
}

/// Logs the start of a spell of failing deliveries once (with the first error) and its end
/// once (with how many failed meanwhile), rather than a line per event.
final class DeliveryOutage: Sendable {
    private let state = Mutex<(failing: Bool, since: ContinuousClock.Instant, failed: Int)>((false, .now, 0))
    private let reported = Atomic<Int>(0)
    /// `state.failing`, readable without the lock: a delivery while nothing fails (every
    /// event, normally) takes no lock.
    private let failing = Atomic<Bool>(false)

    /// Delivery reports so far, successful or not.
    var reports: Int { reported.load(ordering: .relaxed) }

    func failed(_ text: String, logger: Logger) {
        reported.add(1, ordering: .relaxed)
        let first = state.withLock { s -> Bool in
            s.failed += 1
            guard !s.failing else { return false }
            s.failing = true
            s.since = .now
            failing.store(true, ordering: .releasing)
            return true
        }
        if first { logger.error("deliveries are failing: \(text); further failures are counted, not logged one by one") }
    }

    func delivered(logger: Logger) {
        reported.add(1, ordering: .relaxed)
        guard failing.load(ordering: .acquiring) else { return }
        let ended = state.withLock { s -> (Int, Duration)? in
            guard s.failing else { return nil }
            defer { s.failing = false; s.failed = 0; failing.store(false, ordering: .releasing) }
            return (s.failed, .now - s.since)
        }
        if let (failed, duration) = ended {
            logger.notice("deliveries succeed again after \(duration): \(failed) failed meanwhile (their files are sent again)")
        }
    }
}

/// One source's messages awaiting their delivery report, the failures among those
/// reported, and the next offset after the last delivered message of each partition.
final class DeliveryTracker: Sendable {
    private let pending = Atomic<Int>(0)
    private let handed = Atomic<Int>(0)
    private let rejected = Atomic<Int>(0)
    private let failure = Mutex<ProducerStage.DeliveryFailures?>(nil)
    private let offsets = Mutex<[TopicPartition: Int64]>([:])
    private let outage: DeliveryOutage
    /// Notified when the last outstanding delivery report arrives.
    private let drained: EventCount
    let logger: Logger

    init(outage: DeliveryOutage, drained: EventCount = EventCount(), logger: Logger) {
        self.outage = outage
        self.drained = drained
        self.logger = logger
    }

    var nextOffsets: [TopicPartition: Int64] { offsets.withLock { $0 } }

    func delivered(_ partition: TopicPartition, offset: Int64) {
        offsets.withLock { $0[partition] = max($0[partition] ?? 0, offset + 1) }
        outage.delivered(logger: logger)
    }

    var inFlight: Int { pending.load(ordering: .acquiring) }
    /// Rows sent to the dead-letter topic instead (they failed validation).
    var rowsRejected: Int { rejected.load(ordering: .relaxed) }
    func rejectedRow() { rejected.add(1, ordering: .relaxed) }
    /// Events handed to librdkafka so far.
    var handedOver: Int { handed.load(ordering: .relaxed) }
    var failures: ProducerStage.DeliveryFailures? { failure.withLock { $0 } }

    func started() {
        pending.add(1, ordering: .relaxed)
        handed.add(1, ordering: .relaxed)
    }
    func finished() {
        if pending.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { drained.notify() }
    }

    func failed(_ text: String) {
        failure.withLock { state in
            if state == nil { state = ProducerStage.DeliveryFailures(count: 0, first: text) }
            state?.count += 1
        }
        outage.failed(text, logger: logger)
    }
}
