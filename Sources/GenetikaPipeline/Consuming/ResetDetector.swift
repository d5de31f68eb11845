import GenetikaSupport
import GenetikaKafka

/// Finds assigned partitions whose next offset lies beyond the high watermark that fetch
/// responses report (what a broker that lost a partition's log answers, e.g. Tansu, which
/// does not reply OFFSET_OUT_OF_RANGE). A partition must stay so for `patience` before it
/// counts, so a watermark cached from an earlier fetch is not mistaken for one.
struct ResetDetector {
    var patience: Duration = .seconds(3)
    private var since: [TopicPartition: ContinuousClock.Instant] = [:]

    mutating func check(consumer: KafkaConsumer, tracker: CatchUpTracker) -> [(TopicPartition, Int64, Int64)] {
        let now = ContinuousClock.now
        var found: [(TopicPartition, Int64, Int64)] = []
        for partition in consumer.assignment.sorted() {
            guard let next = tracker.next[partition], consumer.endBefore(next, in: partition) != nil else {
                since[partition] = nil
                continue
            }
            if let start = since[partition] {
                if now - start >= patience {
                    // The cached end may be older than this assignment; ask the broker.
                    if let confirmed = consumer.confirmedEndBefore(next, in: partition) {
                        found.append((partition, next, confirmed))
                        since[partition] = nil
                    } else {
                        since[partition] = .now
                    }
                }
            } else {
                since[partition] = now
            }
        }
        return found
    }
}
