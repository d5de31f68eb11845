import CRdkafka
import Foundation
import Logging
import Synchronization
import GenetikaSupport

/// A librdkafka producer: asynchronous produce with per-message delivery reports.
///
/// Messages are handed to librdkafka without waiting (`rd_kafka_produceva`); a dedicated
/// thread serves `rd_kafka_poll`, which runs each message's delivery callback once the broker
/// acknowledged it or librdkafka gave up after its retries. Idempotence is on by default.
/// The handle lives inside this object and is destroyed by `close()`.
package final class KafkaProducer: Sendable {
    /// Defaults that make delivery safe: idempotent, acks from all in-sync replicas.
    static let safeDefaults: [String: String] = [
        "enable.idempotence": "true",
        "acks": "all",
        // librdkafka's own default. At 1 ms a producer sending steadily wakes its broker thread
        // about once per message while requests are in flight and sends the broker many small
        // requests, each costing it CPU (docs/benchmarks.md, "Tuning decisions": linger.ms).
        "linger.ms": "5",
        "message.timeout.ms": "120000",
        // At most 20,000 messages wait in librdkafka's queue (default 100,000): a fast reader
        // waits for the broker instead of buffering, so memory does not depend on the data.
        "queue.buffering.max.messages": "20000",
        // A topic that vanished (a broker restarted without its data) must not come back
        // through auto-creation with the broker's default partition count: Genetika creates
        // its topics itself, with `topics.partitions`.
        "allow.auto.create.topics": "false",
    ]

    let handle: KafkaHandle
    private let context: KafkaClientContext
    private let pollThread: PollThread
    /// Order closing against every other use of the handle: a use announces itself in
    /// `users`, then backs off if `closed` is set; `close()` sets `closed`, then waits for
    /// `users` to drain before it destroys the handle. Both sides use sequentially consistent
    /// operations, so either the use sees `closed` or `close()` sees the use: no call ever
    /// reaches a destroyed handle, and an enqueue (the hot path) takes no lock.
    private let closed = Atomic<Bool>(false)
    private let users = Atomic<Int>(0)

    /// Runs `body` with the handle, or returns nil once the producer is closed.
    func withHandle<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T? {
        users.add(1, ordering: .sequentiallyConsistent)
        defer { users.subtract(1, ordering: .sequentiallyConsistent) }
        guard !closed.load(ordering: .sequentiallyConsistent) else { return nil }
        return try body(handle.pointer)
    }

    /// Creates the producer; `name` identifies it in logs and errors.
    package init(configuration: KafkaClientConfiguration, name: String = "producer",
                logger: Logger = Logger(label: "genetika.kafka")) throws(KafkaError) {
        let context = KafkaClientContext(name: name, logger: logger, observer: configuration.observer)
        let conf = try configuration.with(defaults: Self.safeDefaults).makeConf(context: "create \(name)")
        context.install(on: conf)
        rd_kafka_conf_set_dr_msg_cb(conf, deliveryReportCallback)
        let handle = try KafkaHandle(type: RD_KAFKA_PRODUCER, conf: conf, context: "create \(name)")
        self.context = context
        self.handle = handle
        self.pollThread = PollThread(name: "genetika-\(name)-poll") {
            _ = rd_kafka_poll(handle.pointer, 100)
        }
    }

    deinit {
        close()
    }

    /// Hands one message to librdkafka; `onDelivery` runs (on the poll thread) with its
    /// delivery report. Waits, without blocking a thread, while librdkafka's queue is full.
    package func send(_ message: OutgoingMessage, onDelivery: @escaping @Sendable (DeliveryReport) -> Void) async throws {
        let box = Unmanaged.passRetained(DeliveryCallback(onDelivery))
        while true {
            let reports = context.queueSpace.current
            if let error = enqueue(message, opaque: box.toOpaque()) {
                if error.code == KafkaError.queueFull {
                    // The queue empties only as delivery reports come in: wait for the next one.
                    await context.queueSpace.wait(after: reports)
                    continue
                }
                box.release()
                throw error
            }
            return
        }
    }

    /// Sends one message and waits for its delivery report; throws if it was not delivered.
    @discardableResult
    package func send(_ message: OutgoingMessage) async throws -> DeliveryReport {
        let report = try await sendAll([message])[0]
        if let error = report.error { throw error }
        return report
    }

    /// Sends all `messages` and waits for every delivery report (in the messages' order).
    /// Everything is handed over from the calling task, so nothing touches the producer after
    /// this returns or throws (the caller may close it then).
    package func sendAll(_ messages: [OutgoingMessage]) async throws -> [DeliveryReport] {
        guard !messages.isEmpty else { return [] }
        let collector = ReportCollector(count: messages.count)
        for (index, message) in messages.enumerated() {
            try await send(message) { collector.record($0, at: index) }
        }
        return await withCheckedContinuation { continuation in
            collector.onComplete { continuation.resume(returning: $0) }
        }
    }

    /// Waits until every message handed over so far has its delivery report.
    package func flush(timeout: Duration = .seconds(30)) throws(KafkaError) {
        let result = withHandle { rk in (rd_kafka_flush(rk, Int32(timeout.milliseconds)), rd_kafka_outq_len(rk)) }
        guard let (err, left) = result else { throw Self.closedError("flush \(context.name)") }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "flush \(context.name) (\(left) messages outstanding)")
        }
    }

    /// Messages handed over whose delivery report has not run yet (0 once closed).
    package var outstanding: Int { withHandle { Int(rd_kafka_outq_len($0)) } ?? 0 }

    static func closedError(_ what: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__DESTROY.rawValue, message: "producer is closed", context: what)
    }

    /// `close(timeout:)` from async code: it blocks for up to `timeout`, so it runs on a
    /// thread of its own rather than on Swift's shared pool.
    package func shutdown(timeout: Duration = .seconds(10)) async {
        await onOwnThread("genetika-\(context.name)-close") { [self] in close(timeout: timeout) }
    }

    /// Flushes for up to `timeout`, fails whatever is still undelivered (its delivery
    /// callback runs with an error), stops the poll thread and destroys the handle. Blocks:
    /// from async code, use `shutdown(timeout:)`.
    package func close(timeout: Duration = .seconds(10)) {
        guard !closed.exchange(true, ordering: .sequentiallyConsistent), handle.beginClose() else { return }
        // Uses that began before the producer was marked closed end first (enqueues return at
        // once; a flush within its timeout).
        while users.load(ordering: .sequentiallyConsistent) > 0 { usleep(200) }
        _ = rd_kafka_flush(handle.pointer, Int32(timeout.milliseconds))
        let purge = Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        _ = rd_kafka_purge(handle.pointer, purge)
        pollThread.stop()
        _ = rd_kafka_poll(handle.pointer, 0)
        handle.destroy()
        context.queueSpace.notify()  // a sender waiting for room sees the closed producer
        withExtendedLifetime(context) {}
    }

    /// Makes librdkafka raise a fatal error, as a broker answering UNKNOWN_PRODUCER_ID to an
    /// idempotent producer does (`rd_kafka_test_fatal_error`): for tests of that path.
    func raiseFatalErrorForTesting() {
        _ = withHandle { rd_kafka_test_fatal_error($0, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, "raised by a test") }
    }

    /// Enqueues without waiting; returns librdkafka's error if it refused the message.
    private func enqueue(_ message: OutgoingMessage, opaque: UnsafeMutableRawPointer) -> KafkaError? {
        // Headers go in as one list Genetika builds (RD_KAFKA_VTYPE_HEADERS): a message that
        // is accepted owns it; one that is refused leaves it to be destroyed here. Not one
        // RD_KAFKA_VTYPE_HEADER per header: for those, librdkafka up to 2.8 frees the list
        // twice when the partitioner refuses the message (a topic that lost its partitions;
        // librdkafka issue #4627), which crashed `broker_restart_loses_data` now and then.
        var headers: OpaquePointer?
        if !message.headers.isEmpty {
            headers = rd_kafka_headers_new(message.headers.count)
            for header in message.headers {
                header.name.withCString { name in
                    if let value = header.value {
                        value.withUnsafeBytes { bytes in
                            _ = rd_kafka_header_add(headers, name, -1, bytes.baseAddress, bytes.count)
                        }
                    } else {
                        _ = rd_kafka_header_add(headers, name, -1, nil, 0)
                    }
                }
            }
        }
        return message.topic.withCString { topic in
            message.value.withUnsafeBytes { value in
                (message.key ?? []).withUnsafeBytes { key in
                    var vus: [rd_kafka_vu_t] = []
                    vus.reserveCapacity(8)
                    func add(_ type: rd_kafka_vtype_t, _ fill: (inout rd_kafka_vu_t) -> Void) {
                        var vu = rd_kafka_vu_t()
                        vu.vtype = type
                        fill(&vu)
                        vus.append(vu)
                    }
                    add(RD_KAFKA_VTYPE_TOPIC) { $0.u.cstr = topic }
                    add(RD_KAFKA_VTYPE_MSGFLAGS) { $0.u.i = RD_KAFKA_MSG_F_COPY }
                    add(RD_KAFKA_VTYPE_VALUE) {
                        $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                        $0.u.mem.size = value.count
                    }
                    if message.key != nil {
                        add(RD_KAFKA_VTYPE_KEY) {
                            $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: key.baseAddress)
                            $0.u.mem.size = key.count
                        }
                    }
                    if let partition = message.partition { add(RD_KAFKA_VTYPE_PARTITION) { $0.u.i32 = partition } }
                    if let timestamp = message.timestamp { add(RD_KAFKA_VTYPE_TIMESTAMP) { $0.u.i64 = timestamp } }
                    add(RD_KAFKA_VTYPE_OPAQUE) { $0.u.ptr = opaque }
                    if let headers { add(RD_KAFKA_VTYPE_HEADERS) { $0.u.headers = headers } }
                    guard let produced = withHandle({ rd_kafka_produceva($0, vus, vus.count) }) else {
                        if let headers { rd_kafka_headers_destroy(headers) }
                        return Self.closedError("produce to \(message.topic)")
                    }
                    guard let error = produced else { return nil }
                    if let headers { rd_kafka_headers_destroy(headers) }
                    return KafkaError(consuming: error, context: "produce to \(message.topic)")
                }
            }
        }
    }
}

/// A delivery callback carried through librdkafka as the message's opaque pointer.
final class DeliveryCallback {
    let body: @Sendable (DeliveryReport) -> Void
    init(_ body: @escaping @Sendable (DeliveryReport) -> Void) { self.body = body }
}

private let deliveryReportCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = { _, message, clientOpaque in
    if let clientOpaque { Unmanaged<KafkaClientContext>.fromOpaque(clientOpaque).takeUnretainedValue().queueSpace.notify() }
    guard let message, let opaque = message.pointee._private else { return }
    let callback = Unmanaged<DeliveryCallback>.fromOpaque(opaque).takeRetainedValue()
    let m = message.pointee
    let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
    var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
    let timestamp = rd_kafka_message_timestamp(message, &type)
    var error: KafkaError?
    if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
        error = KafkaError(m.err, context: "deliver to \(topic)[\(m.partition)]")
    }
    callback.body(DeliveryReport(
        topic: topic, partition: m.partition, offset: m.offset,
        timestamp: type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp, error: error))
}

/// Gathers the delivery reports of `sendAll` and hands them over once, when all arrived
/// (to a completion registered before or after the last one).
private final class ReportCollector: Sendable {
    private let state: Mutex<(reports: [DeliveryReport?], remaining: Int, completion: (@Sendable ([DeliveryReport]) -> Void)?)>

    init(count: Int) {
        state = Mutex((Array(repeating: nil, count: count), count, nil))
    }

    func onComplete(_ body: @escaping @Sendable ([DeliveryReport]) -> Void) {
        let ready: [DeliveryReport]? = state.withLock { s in
            guard s.remaining == 0 else {
                s.completion = body
                return nil
            }
            return s.reports.compactMap { $0 }
        }
        if let ready { body(ready) }
    }

    func record(_ report: DeliveryReport, at index: Int) {
        let finished: ((([DeliveryReport]) -> Void), [DeliveryReport])? = state.withLock { s in
            s.reports[index] = report
            s.remaining -= 1
            guard s.remaining == 0, let completion = s.completion else { return nil }
            s.completion = nil
            return (completion, s.reports.compactMap { $0 })
        }
        if let (completion, reports) = finished { completion(reports) }
    }
}
