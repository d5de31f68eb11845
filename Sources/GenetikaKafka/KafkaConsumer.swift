import CRdkafka
import Logging
import GenetikaSupport

/// A change of the partitions a consumer group member owns.
package enum RebalanceEvent: Sendable, Equatable {
    /// Partitions newly assigned; the handler may return where to start reading each.
    case assigned([TopicPartition])
    /// Partitions taken away; the handler should finish work on them before returning.
    case revoked([TopicPartition])
}

/// Called synchronously, on the thread that polls, when the assignment changes. For
/// `.assigned` it returns start offsets for any partitions that should not resume from the
/// group's committed offset (e.g. offsets stored transactionally in a database).
package typealias RebalanceHandler = (RebalanceEvent) throws -> [TopicPartition: Int64]

/// A librdkafka high-level (consumer group) consumer.
///
/// Not `Sendable`: one owner, typically a stage actor running on its own thread, calls it.
/// `poll` blocks up to its timeout, and the rebalance handler runs inside `poll`, so seeking
/// to stored offsets on assignment happens before any message of the partition is returned.
/// Offsets are committed only when the owner says so (`enable.auto.commit=false`).
package final class KafkaConsumer {
    package static let defaults: [String: String] = [
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": "true",
        "partition.assignment.strategy": "range",
        // librdkafka prefetches up to 64 MB per consumer by default; 16 MB keeps a catching-up
        // stage just as busy and its memory well below that whatever the topics hold.
        "queued.max.messages.kbytes": "16384",
        // Subscribed topics that appear (recreated after a broker lost them) are noticed
        // within 10 s rather than librdkafka's 5 minutes.
        "topic.metadata.refresh.interval.ms": "10000",
    ]

    let handle: KafkaHandle
    private let context: KafkaClientContext
    private let state: RebalanceState
    package let groupId: String
    /// What the consumer was made with (for `confirmedEndBefore`'s probe).
    private let clientConfiguration: KafkaClientConfiguration
    /// Partitions whose end was reached and that have not delivered a message since.
    package private(set) var partitionsAtEnd: Set<TopicPartition> = []
    /// A poll reported a subscribed topic or partition that does not exist (a broker that
    /// lost its topics).
    package private(set) var sawUnknownTopic = false
    /// What is copied out of each message.
    package let contents: MessageContents
    /// Header names (and repeated values) shared between the messages this consumer copies.
    private var headerInterning = HeaderInterning()

    /// What a consumer copies out of librdkafka's messages.
    package enum MessageContents: Sendable {
        /// Key, value and headers.
        case all
        /// Key and metadata; value and headers only for a message without a key (which a
        /// consumer that works from keys dead-letters whole). Headers are the costly part:
        /// librdkafka parses them on request, and each becomes several Swift allocations.
        case keyUnlessKeyless
    }

    package init(configuration: KafkaClientConfiguration, groupId: String, name: String = "consumer",
                logger: Logger = Logger(label: "genetika.kafka"), contents: MessageContents = .all,
                onRebalance: RebalanceHandler? = nil) throws(KafkaError) {
        self.contents = contents
        clientConfiguration = configuration
        var configuration = configuration.with(defaults: Self.defaults)
        configuration["group.id"] = groupId
        let state = RebalanceState(handler: onRebalance, logger: logger, name: name)
        let context = KafkaClientContext(name: name, logger: logger, rebalance: state, observer: configuration.observer)
        let conf = try configuration.makeConf(context: "create \(name)")
        context.install(on: conf)
        rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback)
        handle = try KafkaHandle(type: RD_KAFKA_CONSUMER, conf: conf, context: "create \(name)")
        rd_kafka_poll_set_consumer(handle.pointer)
        self.context = context
        self.state = state
        self.groupId = groupId
    }

    deinit {
        close()
    }

    package var name: String { context.name }

    /// The partitions this member owns now.
    package var assignment: Set<TopicPartition> { state.assignment }

    package func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = TopicPartitionList.make(topics.map { (TopicPartition($0, RD_KAFKA_PARTITION_UA), KafkaOffset.invalid) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(handle.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "\(name) subscribe to \(topics.joined(separator: ", "))")
        }
    }

    /// Waits up to `timeout` for one message. Returns nil on timeout. Partition-end events
    /// update `partitionsAtEnd`; non-fatal consumer errors are logged; a fatal error, or an
    /// error thrown by the rebalance handler, is thrown.
    package func poll(timeout: Duration) throws -> KafkaMessage? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var remaining = timeout
        while true {
            switch try pollOnce(milliseconds: Int32(clamping: max(remaining.milliseconds, 0))) {
            case .message(let message): return message
            case .event, .nothing: break
            }
            remaining = clock.now.duration(to: deadline)
            if remaining <= .zero { return nil }
        }
    }

    /// Up to `maxMessages` messages: waits up to `timeout` for the first, then takes what
    /// is already there (waiting at most `linger` more) without blocking longer. The clock is
    /// read only when librdkafka's queue runs dry, not once per message.
    package func poll(maxMessages: Int, timeout: Duration, linger: Duration = .zero) throws -> [KafkaMessage] {
        var batch: [KafkaMessage] = []
        guard let first = try poll(timeout: timeout) else { return batch }
        batch.append(first)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: linger)
        while batch.count < maxMessages {
            switch try pollOnce(milliseconds: 0) {
            case .message(let message):
                batch.append(message)
                continue
            case .event:
                continue
            case .nothing:
                break
            }
            // The queue is empty: wait for more until the linger is over.
            let wait = clock.now.duration(to: deadline)
            guard wait > .zero else { break }
            switch try pollOnce(milliseconds: Int32(clamping: max(wait.milliseconds, 1))) {
            case .message(let message): batch.append(message)
            case .event, .nothing: break
            }
        }
        return batch
    }

    private enum Polled {
        case message(KafkaMessage)
        /// A partition end or a consumer error (handled here): the queue may hold more.
        case event
        /// Nothing arrived within the wait.
        case nothing
    }

    /// One `rd_kafka_consumer_poll`: the message copied out, or the event it carried handled.
    private func pollOnce(milliseconds: Int32) throws -> Polled {
        let message = rd_kafka_consumer_poll(handle.pointer, milliseconds)
        if let error = state.takeError() {
            if let message { rd_kafka_message_destroy(message) }
            throw error
        }
        guard let message else { return .nothing }
        defer { rd_kafka_message_destroy(message) }
        let m = message.pointee
        if m.err == RD_KAFKA_RESP_ERR_NO_ERROR {
            let copy = KafkaMessage(copying: message, whole: contents == .all || m.key == nil || m.key_len == 0, headers: &headerInterning)
            // Most messages come while no partition is at its end: no set lookup then.
            if !partitionsAtEnd.isEmpty { partitionsAtEnd.remove(copy.topicPartition) }
            return .message(copy)
        }
        let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
            partitionsAtEnd.insert(TopicPartition(topic, m.partition))
        } else {
            try checkFatal()
            if m.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || m.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
                || m.err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION {
                sawUnknownTopic = true
            }
            let text = rd_kafka_message_errstr(message).map { String(cString: $0) }
            let error = KafkaError(m.err, context: "\(name) consume \(topic)[\(m.partition)] at offset \(m.offset)", message: text)
            context.logger.warning("\(error)")
        }
        return .event
    }

    /// Reads `partitions` from the given offsets without joining a group (replaces any
    /// previous assignment; an empty map unassigns).
    func assign(_ partitions: [TopicPartition: Int64]) throws(KafkaError) {
        if partitions.isEmpty {
            let err = rd_kafka_assign(handle.pointer, nil)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "\(name) unassign") }
            state.assignment = []
            return
        }
        let list = TopicPartitionList.make(partitions.sorted(by: { $0.key < $1.key }).map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_assign(handle.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "\(name) assign \(partitions.keys.sorted().map(\.description).joined(separator: ", "))")
        }
        state.assignment = Set(partitions.keys)
        for partition in partitions.keys { partitionsAtEnd.remove(partition) }
    }

    /// Commits `offsets` to the group without waiting (informational commits, e.g. for lag
    /// monitoring, where the authoritative offsets live elsewhere).
    package func commitAsync(_ offsets: [TopicPartition: Int64]) {
        guard !offsets.isEmpty else { return }
        let list = TopicPartitionList.make(offsets.sorted(by: { $0.key < $1.key }).map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = rd_kafka_commit(handle.pointer, list, 1)
    }

    /// Stores `offsets` (each the next offset to read) locally, for the next `commitStored()`
    /// or, with `enable.auto.commit=true`, the next automatic commit.
    package func store(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = TopicPartitionList.make(offsets.sorted(by: { $0.key < $1.key }).map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_offsets_store(handle.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "\(name) store offsets \(offsets.keys.sorted().map(\.description).joined(separator: ", "))")
        }
    }

    /// Commits the stored offsets synchronously.
    package func commitStored() throws(KafkaError) {
        let err = rd_kafka_commit(handle.pointer, nil, 0)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw KafkaError(err, context: "\(name) commit stored offsets")
        }
    }

    /// Commits `offsets` (each the next offset to read) synchronously to the group.
    package func commit(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = TopicPartitionList.make(offsets.sorted(by: { $0.key < $1.key }).map { ($0.key, $0.value) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_commit(handle.pointer, list, 0)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "\(name) commit \(offsets.keys.sorted().map(\.description).joined(separator: ", "))")
        }
        for (tp, _, perr) in TopicPartitionList.entries(list) where perr != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(perr, context: "\(name) commit \(tp)")
        }
    }

    /// The group's committed offsets for `partitions` (absent where none is committed).
    package func committed(_ partitions: [TopicPartition], timeout: Duration = .seconds(10)) throws(KafkaError) -> [TopicPartition: Int64] {
        let list = TopicPartitionList.make(partitions.map { ($0, KafkaOffset.invalid) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_committed(handle.pointer, list, Int32(timeout.milliseconds))
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "\(name) read committed offsets") }
        var result: [TopicPartition: Int64] = [:]
        for (tp, offset, _) in TopicPartitionList.entries(list) where offset >= 0 { result[tp] = offset }
        return result
    }

    /// Moves the read position of an assigned partition.
    package func seek(_ partition: TopicPartition, to offset: Int64, timeout: Duration = .seconds(10)) throws(KafkaError) {
        let list = TopicPartitionList.make([(partition, offset)])
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let error = rd_kafka_seek_partitions(handle.pointer, list, Int32(timeout.milliseconds)) {
            throw KafkaError(consuming: error, context: "\(name) seek \(partition) to offset \(offset)")
        }
        partitionsAtEnd.remove(partition)
    }

    /// The next offset this member will read from each partition (absent if unknown).
    package func positions(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        let list = TopicPartitionList.make(partitions.map { ($0, KafkaOffset.invalid) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        _ = rd_kafka_position(handle.pointer, list)
        var result: [TopicPartition: Int64] = [:]
        for (tp, offset, _) in TopicPartitionList.entries(list) where offset >= 0 { result[tp] = offset }
        return result
    }

    /// The high watermark of a partition as the last fetch response reported it (no broker
    /// request); nil until the partition has been fetched. (Genetika never asks ListOffsets
    /// for a partition's end: Tansu 0.6 answers it with the last batch's base offset + 1.)
    package func cachedHighWatermark(_ partition: TopicPartition) -> Int64? {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_get_watermark_offsets(handle.pointer, partition.topic, partition.partition, &low, &high)
        return err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 ? high : nil
    }

    /// The partition's end as the last fetch response reported it, when that lies below
    /// `offset` (> 0): the broker lost the log `offset` points into. Nil otherwise, or until
    /// the partition has been fetched.
    package func endBefore(_ offset: Int64, in partition: TopicPartition) -> Int64? {
        guard offset > 0, let high = cachedHighWatermark(partition), high < offset else { return nil }
        return high
    }

    /// `endBefore`, confirmed by the broker twice: the end it reports when that lies below
    /// `offset`, in two fetch responses `recheck` apart, each to a new handle; nil when
    /// either answer does not, or when no answer came within `timeout`. A fetch response's
    /// high watermark can lag behind offsets the broker has already acknowledged (Tansu 0.6 on S3
    /// storage after a restart: docs/architecture.md, "What the nemesis found", seed 21), and a
    /// reset on such an answer moves stored offsets back. Tansu's object-store cache keeps an
    /// entry 5 s, hence the default 6 s between the answers. Blocks up to `2 × timeout + recheck`, on the owner's thread
    /// like `poll`; called only when the cached end already suggests it.
    package func confirmedEndBefore(_ offset: Int64, in partition: TopicPartition, timeout: Duration = .seconds(5),
                                   recheck: Duration = .seconds(6)) -> Int64? {
        guard endBefore(offset, in: partition) != nil,
              probeEndBefore(offset, in: partition, timeout: timeout) != nil else { return nil }
        blockThread(for: recheck)
        return probeEndBefore(offset, in: partition, timeout: timeout)
    }

    /// The end a fetch from `offset` with a new handle reports, when it lies below `offset`.
    private func probeEndBefore(_ offset: Int64, in partition: TopicPartition, timeout: Duration) -> Int64? {
        guard let probe = try? KafkaConsumer(configuration: clientConfiguration, groupId: groupId + "-probe",
                                             name: name + "-probe", logger: context.logger, contents: .keyUnlessKeyless)
        else { return nil }
        defer { probe.close() }
        do { try probe.assign([partition: offset]) } catch { return nil }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            // A message at or past `offset`, or the end reported there: the offset is not beyond.
            if let message = try? probe.poll(timeout: .milliseconds(100)), message.topicPartition == partition,
               message.offset >= offset {
                return nil
            }
            if probe.partitionsAtEnd.contains(partition) { return nil }
            if let high = probe.cachedHighWatermark(partition) { return high < offset ? high : nil }
        }
        return nil
    }

    /// Leaves the group (running the revoke handler) and destroys the handle.
    package func close() {
        guard handle.beginClose() else { return }
        let err = rd_kafka_consumer_close(handle.pointer)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            context.logger.warning("\(KafkaError(err, context: "\(name) close"))")
        }
        handle.destroy()
    }

    /// Destroys the handle without leaving the group (no LeaveGroup, no revoke callback): the
    /// coordinator drops the member when its session times out, as if it had crashed. For a
    /// stage that fails: its member may be its group's leader in the middle of a join, and
    /// Tansu 0.6 cannot take a LeaveGroup from such a member (it keeps it as the leader and
    /// the group never forms again); a session timeout it handles.
    package func abandon() {
        guard handle.beginClose() else { return }
        handle.destroy(leavingNoTrace: true)
    }

    private func checkFatal() throws(KafkaError) {
        var errstr = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(handle.pointer, &errstr, errstr.count)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let message = String(decoding: errstr.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw KafkaError(code: err.rawValue, message: message, context: name, isFatal: true)
        }
    }
}

/// What the rebalance callback works on. `@unchecked Sendable` because it hangs off the
/// (Sendable) client context, but it is only touched from inside `rd_kafka_consumer_poll`
/// and `rd_kafka_consumer_close` and from the consumer's own methods, all of which the
/// consumer's single owner calls one at a time.
final class RebalanceState: @unchecked Sendable {
    let handler: RebalanceHandler?
    let logger: Logger
    let name: String
    var assignment: Set<TopicPartition> = []
    /// Assignments received (a completed join), including empty ones.
    var assignments = 0
    private var error: Error?

    init(handler: RebalanceHandler?, logger: Logger, name: String) {
        self.handler = handler
        self.logger = logger
        self.name = name
    }

    func takeError() -> Error? {
        defer { error = nil }
        return error
    }

    func handle(_ rk: OpaquePointer, _ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        let partitions = TopicPartitionList.entries(list).map(\.0)
        if err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            do {
                let starts = try handler?(.assigned(partitions)) ?? [:]
                for i in 0..<Int(list.pointee.cnt) {
                    let tp = TopicPartition(String(cString: list.pointee.elems[i].topic), list.pointee.elems[i].partition)
                    if let offset = starts[tp] { list.pointee.elems[i].offset = offset }
                }
            } catch {
                self.error = error
            }
            if cooperative {
                if let failure = rd_kafka_incremental_assign(rk, list) {
                    self.error = self.error ?? KafkaError(consuming: failure, context: "\(name) assign")
                }
            } else {
                let result = rd_kafka_assign(rk, list)
                if result != RD_KAFKA_RESP_ERR_NO_ERROR { self.error = self.error ?? KafkaError(result, context: "\(name) assign") }
            }
            assignment.formUnion(partitions)
            assignments += 1
            logger.info("\(name) assigned \(partitions.sorted().map(\.description).joined(separator: ", "))")
        } else {
            do {
                _ = try handler?(.revoked(partitions))
            } catch {
                self.error = error
            }
            if cooperative {
                if let failure = rd_kafka_incremental_unassign(rk, list) { rd_kafka_error_destroy(failure) }
            } else {
                _ = rd_kafka_assign(rk, nil)
            }
            assignment.subtract(partitions)
            logger.info("\(name) revoked \(partitions.sorted().map(\.description).joined(separator: ", "))")
        }
    }
}

private let rebalanceCallback: @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = { rk, err, list, _ in
    guard let rk, let list, let state = KafkaClientContext.of(rk)?.rebalance else { return }
    state.handle(rk, err, list)
}
