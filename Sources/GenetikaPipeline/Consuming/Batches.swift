import GenetikaSupport
import GenetikaKafka

/// The messages of `batch` whose partition is in `assignment`, in order. Messages come in runs
/// of one partition, so the set is asked once a run rather than once a message.
func owned(_ batch: [KafkaMessage], by assignment: Set<TopicPartition>) -> [KafkaMessage] {
    var previous: KafkaMessage?
    for message in batch {
        if let previous, previous.partition == message.partition, previous.topic == message.topic { continue }
        // A partition no longer owned (rare: a rebalance inside the poll): filter message by message.
        guard assignment.contains(message.topicPartition) else { return batch.filter { assignment.contains($0.topicPartition) } }
        previous = message
    }
    return batch
}

/// The highest next-offset per partition of a batch (one dictionary update per run of a
/// partition, not per message).
func nextOffsets(_ batch: [KafkaMessage]) -> [TopicPartition: Int64] {
    var offsets: [TopicPartition: Int64] = [:]
    var index = batch.startIndex
    while index < batch.endIndex {
        let first = batch[index]
        var next = first.offset + 1
        index += 1
        while index < batch.endIndex, batch[index].partition == first.partition, batch[index].topic == first.topic {
            next = max(next, batch[index].offset + 1)
            index += 1
        }
        let partition = first.topicPartition
        offsets[partition] = max(offsets[partition] ?? 0, next)
    }
    return offsets
}
