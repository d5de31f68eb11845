import Synchronization
/// Decides which progress lines to log: a line whose counts changed since the last logged one
/// (`progress: …`), else one heartbeat (`idle: …`) once `heartbeat` has passed without one.
package final class QuietLog: Sendable {
    private struct State {
        var last: String?
        var loggedAt: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    package let heartbeat: Duration

    package init(heartbeat: Duration) { self.heartbeat = heartbeat }

    /// The text to log for `line` at `now`, or nil to stay quiet.
    package func next(_ line: String, now: ContinuousClock.Instant) -> String? {
        state.withLock { state in
            if line != state.last {
                state.last = line
                state.loggedAt = now
                return "progress: \(line)"
            }
            if let at = state.loggedAt, now - at < heartbeat { return nil }
            state.loggedAt = now
            return "idle: \(line)"
        }
    }
}
