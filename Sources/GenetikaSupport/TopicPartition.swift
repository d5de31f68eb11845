/// A topic and partition number.
package struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    package var topic: String
    package var partition: Int32

    @inlinable package init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    package var description: String { "\(topic)[\(partition)]" }

    // Spelled out and inlinable: other modules hash partitions per message (offset maps).
    @inlinable package func hash(into hasher: inout Hasher) {
        hasher.combine(topic)
        hasher.combine(partition)
    }

    @inlinable package static func == (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        lhs.partition == rhs.partition && lhs.topic == rhs.topic
    }

    package static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }
}
