import CRdkafka
import Foundation
import Logging
import GenetikaSupport

/// What the cluster says about itself.
package struct ClusterMetadata: Sendable {
    package var brokers: [String]
    /// Partition count of every topic.
    package var topics: [String: Int]
}

/// A topic to create.
package struct TopicSpecification: Sendable, Equatable {
    package var name: String
    package var partitions: Int
    var replicationFactor: Int

    package init(name: String, partitions: Int, replicationFactor: Int = -1) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
    }
}

/// Cluster metadata and topic administration through librdkafka's Admin API.
package final class KafkaAdmin: Sendable {
    let handle: KafkaHandle
    private let context: KafkaClientContext
    private let bootstrapServers: String

    package init(configuration: KafkaClientConfiguration, name: String = "admin",
                logger: Logger = Logger(label: "genetika.kafka")) throws(KafkaError) {
        let context = KafkaClientContext(name: name, logger: logger, observer: configuration.observer)
        let conf = try configuration.makeConf(context: "create \(name)")
        context.install(on: conf)
        self.handle = try KafkaHandle(type: RD_KAFKA_PRODUCER, conf: conf, context: "create \(name)")
        self.context = context
        self.bootstrapServers = configuration["bootstrap.servers"] ?? ""
    }

    deinit {
        close()
    }

    /// Destroys the handle (which joins librdkafka's threads: it blocks). From async code,
    /// use `withAdmin`, which closes on a thread of its own.
    package func close() {
        guard handle.beginClose() else { return }
        handle.destroy()
    }

    /// Runs `body` with a new admin client and closes it afterwards, off Swift's shared pool.
    package static func withAdmin<T: Sendable>(configuration: KafkaClientConfiguration, name: String = "admin",
                                              logger: Logger = Logger(label: "genetika.kafka"),
                                              _ body: (KafkaAdmin) async throws -> T) async throws -> T {
        let admin = try KafkaAdmin(configuration: configuration, name: name, logger: logger)
        let result: Result<T, any Error>
        do { result = .success(try await body(admin)) } catch { result = .failure(error) }
        await onOwnThread("genetika-\(name)-close") { admin.close() }
        return try result.get()
    }

    /// Brokers and topics; throws librdkafka's error (e.g. `_TRANSPORT`) if no broker answers.
    package func metadata(timeout: Duration = .seconds(10)) throws(KafkaError) -> ClusterMetadata {
        var pointer: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle.pointer, 1, nil, &pointer, Int32(timeout.milliseconds))
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata = pointer else {
            throw KafkaError(err, context: "metadata request to \(bootstrapServers)")
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        var brokers: [String] = []
        for i in 0..<Int(metadata.pointee.broker_cnt) {
            let broker = metadata.pointee.brokers[i]
            brokers.append("\(String(cString: broker.host)):\(broker.port)")
        }
        var topics: [String: Int] = [:]
        for i in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[i]
            if topic.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                topics[String(cString: topic.topic)] = Int(topic.partition_cnt)
            }
        }
        return ClusterMetadata(brokers: brokers, topics: topics)
    }

    /// Retries the metadata request until a broker answers or `timeout` passes, then throws
    /// an error naming the bootstrap servers and librdkafka's last message.
    package func waitUntilReachable(timeout: Duration) async throws -> ClusterMetadata {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var last: KafkaError?
        while clock.now < deadline {
            let remaining = clock.now.duration(to: deadline)
            do {
                return try await onOwnThread("genetika-admin") { [self] in try metadata(timeout: min(remaining, .seconds(2))) }
            } catch {
                last = error as? KafkaError
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        throw KafkaError(
            code: last?.code ?? KafkaError.timedOut,
            message: "no broker answered within \(timeout.milliseconds) ms (last error: \(last?.message ?? "none"))",
            context: "connect to Kafka at \(bootstrapServers)")
    }

    /// Creates topics; one that already exists is not an error.
    package func createTopics(_ topics: [TopicSpecification], timeout: Duration = .seconds(30)) throws(KafkaError) {
        guard !topics.isEmpty else { return }
        var errstr = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        for topic in topics {
            guard let newTopic = rd_kafka_NewTopic_new(topic.name, Int32(topic.partitions), Int32(topic.replicationFactor), &errstr, errstr.count) else {
                let message = String(decoding: errstr.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw KafkaError.configuration(message, context: "create topic \(topic.name)")
            }
            newTopics.append(newTopic)
        }
        let options = rd_kafka_AdminOptions_new(handle.pointer, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, Int32(timeout.milliseconds), &errstr, errstr.count)
        let queue = rd_kafka_queue_new(handle.pointer)
        defer { rd_kafka_queue_destroy(queue) }
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(handle.pointer, buffer.baseAddress, buffer.count, options, queue)
        }
        let names = topics.map(\.name).joined(separator: ", ")
        guard let event = rd_kafka_queue_poll(queue, Int32(timeout.milliseconds + 1000)) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, context: "create topics \(names)")
        }
        defer { rd_kafka_event_destroy(event) }
        let err = rd_kafka_event_error(event)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "create topics \(names)", message: rd_kafka_event_error_string(event).map { String(cString: $0) })
        }
        guard let result = rd_kafka_event_CreateTopics_result(event) else { return }
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
        for i in 0..<count {
            let topicResult = results[i]
            let terr = rd_kafka_topic_result_error(topicResult)
            if terr != RD_KAFKA_RESP_ERR_NO_ERROR && terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                let name = String(cString: rd_kafka_topic_result_name(topicResult))
                throw KafkaError(terr, context: "create topic \(name)",
                                 message: rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) })
            }
        }
    }

    /// Creates the topics that are missing (when `create` is true) and checks that every
    /// topic exists with the expected partition count; throws an error naming the topic.
    /// The metadata requests and the creation block, so they run on a thread of their own.
    package func ensureTopics(_ topics: [TopicSpecification], create: Bool, timeout: Duration = .seconds(30)) async throws {
        let existing = try await onOwnThread("genetika-admin") { [self] in try metadata().topics }
        let missing = topics.filter { existing[$0.name] == nil }
        if !missing.isEmpty {
            guard create else {
                throw KafkaError(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, context: "topics \(missing.map(\.name).joined(separator: ", ")) on \(bootstrapServers)",
                                 message: "missing, and topics.create is false")
            }
            try await onOwnThread("genetika-admin") { [self] in try createTopics(missing, timeout: timeout) }
        }
        // Metadata can lag behind topic creation; wait until every topic shows up.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let current = try await onOwnThread("genetika-admin") { [self] in try metadata().topics }
            var pending: [String] = []
            for topic in topics {
                guard let partitions = current[topic.name] else { pending.append(topic.name); continue }
                if partitions != topic.partitions {
                    throw KafkaError(RD_KAFKA_RESP_ERR_INVALID_PARTITIONS, context: "topic \(topic.name)",
                                     message: "has \(partitions) partitions, the configuration expects \(topic.partitions) (topics.partitions); source topics must share one partition count")
                }
            }
            if pending.isEmpty { return }
            if clock.now >= deadline {
                throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, context: "topics \(pending.joined(separator: ", "))",
                                 message: "created but not visible in metadata after \(timeout.milliseconds) ms")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

extension KafkaAdmin {
    /// Each topic's id (base64), which changes when a topic is deleted and created again;
    /// topics the broker does not know, or brokers without topic ids, are left out.
    package func topicIds(_ topics: [String], timeout: Duration = .seconds(10)) throws(KafkaError) -> [String: String] {
        try describeTopicIds(handle.pointer, topics, timeout: timeout, context: "describe topics")
    }
}

extension KafkaProducer {
    /// As `KafkaAdmin.topicIds`, through this producer's own handle.
    package func topicIds(_ topics: [String], timeout: Duration = .seconds(10)) throws -> [String: String] {
        guard let ids = try withHandle({ try describeTopicIds($0, topics, timeout: timeout, context: "describe topics") }) else {
            throw Self.closedError("describe topics")
        }
        return ids
    }
}

extension KafkaConsumer {
    /// As `KafkaAdmin.topicIds`, through this consumer's own handle.
    package func topicIds(_ topics: [String], timeout: Duration = .seconds(10)) throws(KafkaError) -> [String: String] {
        try describeTopicIds(handle.pointer, topics, timeout: timeout, context: "\(name) describe topics")
    }
}

/// DescribeTopics through `rk`, waiting up to `timeout` for the answer.
func describeTopicIds(_ rk: OpaquePointer, _ topics: [String], timeout: Duration, context: String) throws(KafkaError) -> [String: String] {
    guard !topics.isEmpty else { return [:] }
    var names = topics.map { strdup($0) }
    defer { for name in names { free(name) } }
    let collection = names.withUnsafeMutableBufferPointer { buffer in
        buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) {
            rd_kafka_TopicCollection_of_topic_names($0, buffer.count)
        }
    }
    defer { rd_kafka_TopicCollection_destroy(collection) }
    var errstr = [CChar](repeating: 0, count: 512)
    let options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBETOPICS)
    defer { rd_kafka_AdminOptions_destroy(options) }
    _ = rd_kafka_AdminOptions_set_request_timeout(options, Int32(timeout.milliseconds), &errstr, errstr.count)
    let queue = rd_kafka_queue_new(rk)
    defer { rd_kafka_queue_destroy(queue) }
    rd_kafka_DescribeTopics(rk, collection, options, queue)
    guard let event = rd_kafka_queue_poll(queue, Int32(timeout.milliseconds + 1000)) else {
        throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, context: context)
    }
    defer { rd_kafka_event_destroy(event) }
    let err = rd_kafka_event_error(event)
    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
        throw KafkaError(err, context: context, message: rd_kafka_event_error_string(event).map { String(cString: $0) })
    }
    guard let result = rd_kafka_event_DescribeTopics_result(event) else { return [:] }
    var count = 0
    guard let descriptions = rd_kafka_DescribeTopics_result_topics(result, &count) else { return [:] }
    var ids: [String: String] = [:]
    for i in 0..<count {
        guard let description = descriptions[i],
              rd_kafka_error_code(rd_kafka_TopicDescription_error(description)) == RD_KAFKA_RESP_ERR_NO_ERROR,
              let uuid = rd_kafka_TopicDescription_topic_id(description),
              let text = rd_kafka_Uuid_base64str(uuid) else { continue }
        let id = String(cString: text)
        // The all-zero id means "no topic id" (brokers before Kafka 2.8).
        if id != "AAAAAAAAAAAAAAAAAAAAAA" { ids[String(cString: rd_kafka_TopicDescription_name(description))] = id }
    }
    return ids
}
