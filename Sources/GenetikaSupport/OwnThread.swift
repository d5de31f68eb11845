import Foundation

/// Runs `body` on a thread of its own and returns (or throws) what it did.
///
/// For a blocking call (a librdkafka metadata request or flush, topic creation, SQLite,
/// libpq) made from async code that does not run on an executor of its own: Swift's shared
/// cooperative pool has one thread per core (two here), and a call that blocks one of them
/// for seconds stalls every task that needs it. The caller suspends without holding a thread.
/// Meant for occasional calls (start-up checks, restarts, shutdown), not per event.
package func onOwnThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.start()
    }
}

/// `onOwnThread` for a call that cannot fail.
package func onOwnThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.start()
    }
}
