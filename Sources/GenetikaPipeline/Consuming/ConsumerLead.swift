import Synchronization
import GenetikaSupport

/// How far the producer of this process is ahead of the consuming stages of this process,
/// so that it can hold back (`stages.producer.maxLead`): a producer that reads its files
/// faster than the stages beside it consume them only builds a backlog in Kafka, which every
/// event then waits through (its ack delay grows with the data) while the producer takes CPU
/// the consumers need. Each consuming stage publishes its positions after every poll; the
/// lead on a topic is, for the stage furthest behind, the sum over the partitions that stage
/// owns of (producer's next delivered offset − stage's position). Partitions a stage does not
/// own (another member's, in a scale-out) do not count, and a stage that is not running has
/// no positions: nothing can hold the producer back for good.
final class ConsumerLead: Sendable {
    private let positions = Mutex<[String: [TopicPartition: Int64]]>([:])
    /// Notified whenever a stage publishes (every poll, at least every few hundred ms).
    let moved = EventCount()

    init() {}

    func update(_ stage: String, _ next: [TopicPartition: Int64]) {
        positions.withLock { $0[stage] = next }
        moved.notify()
    }

    func remove(_ stage: String) {
        positions.withLock { $0[stage] = nil }
        moved.notify()
    }

    /// Events delivered to the partitions in `delivered` (next offsets) that the stage
    /// furthest behind has not consumed yet.
    func lead(_ delivered: [TopicPartition: Int64]) -> Int64 {
        positions.withLock { stages in
            var most: Int64 = 0
            for next in stages.values {
                var lead: Int64 = 0
                for (partition, end) in delivered {
                    if let position = next[partition] { lead += max(0, end - position) }
                }
                most = max(most, lead)
            }
            return most
        }
    }

    /// Waits while the lead on `delivered()`'s partitions exceeds `limit`, or until `done()`.
    func wait(whileAbove limit: Int64, delivered: () -> [TopicPartition: Int64], done: () -> Bool) async {
        guard lead(delivered()) > limit else { return }
        await moved.wait { done() || lead(delivered()) <= limit }
    }
}
