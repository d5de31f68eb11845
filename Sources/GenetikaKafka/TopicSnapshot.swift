import Logging
import GenetikaSupport

/// Reads whole topics as they stand now: every partition from its beginning until librdkafka
/// reports its end (partition EOF, from the fetch responses), with an assign-only consumer,
/// so no consumer group (and no pipeline stage) is disturbed. The end is taken from fetch
/// responses rather than from ListOffsets, which some brokers (Tansu 0.6) answer with the
/// last batch's base offset.
package struct TopicSnapshot {
    package let configuration: KafkaClientConfiguration
    package let logger: Logger

    package init(configuration: KafkaClientConfiguration, logger: Logger = Logger(label: "genetika.report")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Calls `body` with every message of `topics` (per partition in offset order).
    package func read(_ topics: [String], timeout: Duration = .seconds(120), body: (KafkaMessage) throws -> Void) throws {
        let admin = try KafkaAdmin(configuration: configuration, name: "report-admin", logger: logger)
        let metadata = try admin.metadata()
        admin.close()
        var partitions: [TopicPartition: Int64] = [:]
        for topic in topics {
            guard let count = metadata.topics[topic] else {
                throw KafkaError(code: KafkaError.unknownTopic, message: "topic does not exist", context: "read topic \(topic)")
            }
            for partition in 0..<Int32(count) { partitions[TopicPartition(topic, partition)] = KafkaOffset.beginning }
        }
        let consumer = try KafkaConsumer(configuration: configuration, groupId: "genetika-report", name: "report", logger: logger)
        defer { consumer.close() }
        try consumer.readToEnd(partitions, timeout: timeout, body: body)
    }
}

/// A partition's start offset lies beyond its end: the broker lost the log that offset
/// pointed into (topic recreated, or a broker restarted without its data).
package struct PartitionBeyondEnd: Error, CustomStringConvertible {
    package var partition: TopicPartition
    package var offset: Int64
    package var end: Int64
    package var description: String {
        "\(partition): offset \(offset) is beyond the partition's end \(end): the broker lost its log (recreated, or restarted without its data)"
    }
}

/// Reading was given up because the run is stopping.
struct ReadStopped: Error, CustomStringConvertible {
    var description: String { "stopped while reading" }
}

extension KafkaConsumer {
    /// Assigns `partitions` at the given start offsets and calls `body` with every message
    /// until each partition reports its end (needs `enable.partition.eof`, on by default
    /// here); then unassigns. Throws `PartitionBeyondEnd` when a start offset stays beyond
    /// what the broker reports as the partition's end for `patience` (such a partition never
    /// reports its end), `ReadStopped` once `stop` is raised, and a timeout after `timeout`.
    package func readToEnd(_ partitions: [TopicPartition: Int64], timeout: Duration, stop: StopSignal? = nil,
                          patience: Duration = .seconds(3), body: (KafkaMessage) throws -> Void) throws {
        guard !partitions.isEmpty else { return }
        try assign(partitions)
        defer { try? assign([:]) }
        var remaining = Set(partitions.keys)
        var received: Set<TopicPartition> = []
        let started = ContinuousClock.now
        let deadline = started.advanced(by: timeout)
        while !remaining.isEmpty {
            if stop?.isRequested == true { throw ReadStopped() }
            guard ContinuousClock.now < deadline else {
                throw KafkaError(code: KafkaError.timedOut, message: "no end reached within \(timeout)",
                                 context: "\(name) read \(remaining.sorted().map(\.description).joined(separator: ", "))")
            }
            if let message = try poll(timeout: .milliseconds(200)) {
                received.insert(message.topicPartition)
                try body(message)
            }
            remaining.subtract(partitionsAtEnd)
            if ContinuousClock.now - started >= patience {
                for partition in remaining.sorted() where !received.contains(partition) {
                    if let start = partitions[partition], let end = confirmedEndBefore(start, in: partition) {
                        throw PartitionBeyondEnd(partition: partition, offset: start, end: end)
                    }
                }
            }
        }
    }
}
