#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Milliseconds since the Unix epoch with sub-millisecond precision.
@inlinable package func nowMillisecondsPrecise() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Double(time.tv_sec) * 1000 + Double(time.tv_nsec) / 1_000_000
}

/// Milliseconds since the Unix epoch, now.
@inlinable package func nowMilliseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
}

extension Duration {
    /// Whole milliseconds, rounded down.
    @inlinable package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
