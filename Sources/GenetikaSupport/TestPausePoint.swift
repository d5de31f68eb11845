#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// A test-only pause that widens a narrow window on purpose: `make chaos` sets
/// `GENETIKA_TEST_PAUSE_BEFORE_COMMIT_MS` so that the consuming stages hold each batch's writes
/// (rows and offsets; acks) that long before committing them, which a random SIGSTOP or network
/// cut then hits often enough to show a zombie write. Unset (every real run), it costs one load.
package enum TestPausePoint {
    /// Milliseconds to pause before a batch is committed (0: unset).
    static let beforeCommitMs: Int = {
        guard let text = getenv("GENETIKA_TEST_PAUSE_BEFORE_COMMIT_MS").map({ String(cString: $0) }),
              let value = Int(text), value > 0 else { return 0 }
        return min(value, 60_000)
    }()

    /// Sleeps `beforeCommitMs` on the calling thread (a stage's own thread, never the shared pool).
    package static func beforeCommit() {
        guard beforeCommitMs > 0 else { return }
        usleep(useconds_t(beforeCommitMs) * 1000)
    }
}

/// This process as a group member, for the records operators read (`genetika_owners.member`):
/// `host/pid`.
package let memberName: String = {
    var name = [CChar](repeating: 0, count: 256)
    gethostname(&name, name.count - 1)
    return "\(String(cString: name))/\(getpid())"
}()

/// Blocks the calling thread (a stage's own thread, never Swift's shared pool) for `duration`.
package func blockThread(for duration: Duration) {
    let ms = max(0, duration.milliseconds)
    var request = timespec(tv_sec: Int(ms / 1000), tv_nsec: Int(ms % 1000) * 1_000_000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}
