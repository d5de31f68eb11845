/// A topic and partition number.
public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    @inlinable public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }

    // Spelled out and inlinable: other modules hash partitions per message (offset maps).
    @inlinable public func hash(into hasher: inout Hasher) {
        hasher.combine(topic)
        hasher.combine(partition)
    }

    @inlinable public static func == (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        lhs.partition == rhs.partition && lhs.topic == rhs.topic
    }

    public static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }
}
