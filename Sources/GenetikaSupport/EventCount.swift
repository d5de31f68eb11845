import Synchronization

/// An event count: something that happens now and then (a delivery report, the last
/// outstanding one, a stop) and tasks that wait for the next time it does, without polling.
///
/// A waiter reads `current`, checks its own condition, and if it must wait calls
/// `wait(after:)` with what it read: a notification in between makes the wait return at once,
/// so no wakeup is lost. `notify()` costs one atomic add while nobody waits; the lock is taken
/// only when someone does. Both sides use sequentially consistent operations, so either the
/// notifier sees the waiter or the waiter sees the notification.
package final class EventCount: Sendable {
    private let count = Atomic<UInt64>(0)
    private let waiting = Atomic<Int>(0)
    private let waiters = Mutex<(next: UInt64, list: [UInt64: CheckedContinuation<Void, Never>])>((0, [:]))

    package init() {}

    /// Notifications so far.
    package var current: UInt64 { count.load(ordering: .sequentiallyConsistent) }

    package func notify() {
        count.add(1, ordering: .sequentiallyConsistent)
        guard waiting.load(ordering: .sequentiallyConsistent) > 0 else { return }
        let woken = waiters.withLock { state in
            defer { state.list = [:] }
            return Array(state.list.values)
        }
        waiting.subtract(woken.count, ordering: .sequentiallyConsistent)
        for waiter in woken { waiter.resume() }
    }

    /// Returns once `condition` holds: checked now, and again after each notification (the
    /// read-check-wait sequence above, so no wakeup is lost).
    package func wait(isolation: isolated (any Actor)? = #isolation, until condition: () -> Bool) async {
        while true {
            let seen = current
            if condition() { return }
            await wait(after: seen)
        }
    }

    /// Returns once a notification came after `seen` (at once if one already did), or when
    /// the task is cancelled.
    package func wait(after seen: UInt64) async {
        let id = waiters.withLock { state in
            defer { state.next += 1 }
            return state.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = waiters.withLock { state -> Bool in
                    waiting.add(1, ordering: .sequentiallyConsistent)
                    guard count.load(ordering: .sequentiallyConsistent) == seen, !Task.isCancelled else {
                        waiting.subtract(1, ordering: .sequentiallyConsistent)
                        return true
                    }
                    state.list[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = waiters.withLock { $0.list.removeValue(forKey: id) }
            if let waiter {
                waiting.subtract(1, ordering: .sequentiallyConsistent)
                waiter.resume()
            }
        }
    }
}
