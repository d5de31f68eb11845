import CRdkafka
import Foundation
import Synchronization

/// Owns one `rd_kafka_t`. librdkafka documents its handle as thread-safe for produce,
/// poll, flush and metadata calls, which is all that is shared across threads here;
/// destruction happens once, after `beginClose()` won and the poll thread stopped.
final class KafkaHandle: Sendable {
    // Safe to share: see the type's comment. `nonisolated(unsafe)` only because
    // OpaquePointer is not Sendable; the pointer itself never changes.
    nonisolated(unsafe) let pointer: OpaquePointer
    private let closed = Atomic<Bool>(false)
    private let destroyed = Atomic<Bool>(false)

    init(type: rd_kafka_type_t, conf: OpaquePointer, context: String) throws(KafkaError) {
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            let message = String(decoding: errstr.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KafkaError.configuration(message, context: context)
        }
        pointer = rk
    }

    /// True for the one caller that gets to close the handle.
    func beginClose() -> Bool {
        closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    /// Destroys the handle; `leavingNoTrace` (consumers) skips `rd_kafka_consumer_close`'s
    /// work: no LeaveGroup, no revoke callback, no final commit.
    func destroy(leavingNoTrace: Bool = false) {
        if destroyed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged {
            if leavingNoTrace {
                rd_kafka_destroy_flags(pointer, Int32(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE))
            } else {
                rd_kafka_destroy(pointer)
            }
        }
    }
}

/// A thread that runs `body` in a loop until stopped (librdkafka's poll calls block for
/// up to their timeout, so they get a thread of their own rather than a pool thread).
final class PollThread: Sendable {
    private let running = Atomic<Bool>(true)
    private let finished = DispatchSemaphore(value: 0)

    init(name: String, body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            while running.load(ordering: .acquiring) { body() }
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    func stop() {
        if running.exchange(false, ordering: .acquiringAndReleasing) {
            finished.wait()
        }
    }
}
