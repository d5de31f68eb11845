import GenetikaSupport
import Synchronization

/// What the producer has done across restarts of its stage: the sources whose every row
/// was delivered (a restart does not send them again), the next offset after the last
/// delivered event of each partition, and whether deliveries are failing right now.
package final class ProducerLedger: Sendable {
    /// Complete sources with the id their topic had then (nil: unknown).
    private let state = Mutex<(complete: [Int: String?], offsets: [TopicPartition: Int64])>(([:], [:]))
    let outage = DeliveryOutage()

    package init() {}

    func isComplete(_ source: Int) -> Bool { state.withLock { $0.complete[source] != nil } }

    /// Deliveries of an inbox file: they count towards the targets of "caught up".
    func delivered(_ offsets: [TopicPartition: Int64]) {
        state.withLock { s in
            for (partition, offset) in offsets { s.offsets[partition] = max(s.offsets[partition] ?? 0, offset) }
        }
    }

    func complete(_ source: Int, offsets: [TopicPartition: Int64], topicId: String?) {
        state.withLock { s in
            s.complete[source] = .some(topicId)
            for (partition, offset) in offsets { s.offsets[partition] = max(s.offsets[partition] ?? 0, offset) }
        }
    }

    /// Forgets the complete sources whose topic now has another id (it was recreated, and
    /// what was sent to it is gone); returns their files.
    func forgetRecreated(_ ids: [String: String], sources: [SourceConfiguration]) -> [String] {
        state.withLock { s in
            var files: [String] = []
            for (index, recorded) in s.complete {
                let topic = sources[index].topic
                guard let recorded, let current = ids[topic], current != recorded else { continue }
                s.complete[index] = nil
                s.offsets = s.offsets.filter { $0.key.topic != topic }
                files.append(sources[index].label)
            }
            return files.sorted()
        }
    }

    var nextOffsets: [TopicPartition: Int64] { state.withLock { $0.offsets } }
}
