import Synchronization

/// A stop request shared by the supervisor and every stage; stages check it between
/// batches. Whoever raises it may say why; `onRequest` handlers (the command's stop
/// deadline) run once, on the first request, and `wait(upTo:)` ends early when it comes.
package final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    private struct State {
        var reason: String?
        var handlers: [@Sendable (String) -> Void] = []
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var woken: Set<UInt64> = []
        var next: UInt64 = 0
    }
    private let state = Mutex(State())
    package init() {}
    package var isRequested: Bool { flag.load(ordering: .acquiring) }
    /// Why the stop was requested (nil until it was, or when no reason was given).
    package var reason: String? { state.withLock { $0.reason } }

    package func request(reason: String = "stop requested") {
        guard !flag.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let (handlers, waiters) = state.withLock { s in
            s.reason = reason
            defer { s.waiters = [:]; s.woken = [] }
            return (s.handlers, Array(s.waiters.values))
        }
        for handler in handlers { handler(reason) }
        for waiter in waiters { waiter.resume() }
    }

    /// Runs `handler` on the first request (at once if it already came).
    package func onRequest(_ handler: @escaping @Sendable (String) -> Void) {
        let already: String? = state.withLock { s in
            if flag.load(ordering: .acquiring) { return s.reason ?? "stop requested" }
            s.handlers.append(handler)
            return nil
        }
        if let already { handler(already) }
    }

    /// Waits until a stop is requested and returns its reason.
    package func requested() async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            onRequest { continuation.resume(returning: $0) }
        }
    }

    /// Sleeps for `duration`, or less if a stop is requested (or the task is cancelled) first.
    package func wait(upTo duration: Duration) async {
        let id: UInt64 = state.withLock { s in
            defer { s.next += 1 }
            return s.next
        }
        let timer = Task { [self] in
            do { try await Task.sleep(for: duration) } catch { return }
            wake(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if flag.load(ordering: .acquiring) || s.woken.remove(id) != nil { return true }
                    s.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            wake(id)
        }
        timer.cancel()
    }

    /// Resumes waiter `id`, or records that it is to return at once if it has not started waiting.
    private func wake(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let waiter = s.waiters.removeValue(forKey: id) { return waiter }
            if !flag.load(ordering: .acquiring) { s.woken.insert(id) }
            return nil
        }
        waiter?.resume()
    }
}
