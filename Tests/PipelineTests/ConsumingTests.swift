import Testing
import GenetikaKafka
import GenetikaSupport
@testable import GenetikaPipeline

@Suite("A consumed batch's owned messages and next offsets")
struct BatchOffsetsTests {
    static func message(_ topic: String, _ partition: Int32, _ offset: Int64) -> KafkaMessage {
        KafkaMessage(topic: topic, partition: partition, offset: offset, key: nil, value: [], timestamp: nil)
    }

    /// What the per-run shortcuts must equal: one lookup per message.
    static func modelOffsets(_ batch: [KafkaMessage]) -> [TopicPartition: Int64] {
        var offsets: [TopicPartition: Int64] = [:]
        for message in batch { offsets[message.topicPartition] = max(offsets[message.topicPartition] ?? 0, message.offset + 1) }
        return offsets
    }

    @Test("runs of one partition, a partition coming back in a later run, partitions with equal numbers on other topics")
    func runs() {
        let batch = [Self.message("t1", 0, 5), Self.message("t1", 0, 6), Self.message("t1", 0, 7),
                     Self.message("t2", 0, 3), Self.message("t1", 1, 2), Self.message("t1", 0, 8), Self.message("t2", 0, 1)]
        #expect(nextOffsets(batch) == [TopicPartition("t1", 0): 9, TopicPartition("t2", 0): 4, TopicPartition("t1", 1): 3])
        #expect(nextOffsets([]) == [:])
        let all: Set = [TopicPartition("t1", 0), TopicPartition("t1", 1), TopicPartition("t2", 0)]
        #expect(owned(batch, by: all).map(\.offset) == batch.map(\.offset))
        // t2[0] was revoked: its messages go, the others stay in order, t1[0]'s later run too.
        let kept = owned(batch, by: [TopicPartition("t1", 0), TopicPartition("t1", 1)])
        #expect(kept.map(\.offset) == [5, 6, 7, 2, 8])
        #expect(owned(batch, by: []).isEmpty)
    }

    @Test("against one lookup per message: 2,000 random batches")
    func random() {
        var generator = SystemRandomNumberGenerator()
        let partitions = (0..<3).flatMap { topic in (0..<3).map { TopicPartition("topic\(topic)", Int32($0)) } }
        for _ in 0..<2_000 {
            var batch: [KafkaMessage] = []
            for _ in 0..<Int.random(in: 0..<8, using: &generator) {
                let partition = partitions.randomElement(using: &generator)!
                var offset = Int64.random(in: 0..<1_000, using: &generator)
                for _ in 0..<Int.random(in: 1..<5, using: &generator) {
                    batch.append(Self.message(partition.topic, partition.partition, offset))
                    offset += Int64.random(in: -2...3, using: &generator)
                }
            }
            #expect(nextOffsets(batch) == Self.modelOffsets(batch))
            let assignment = Set(partitions.filter { _ in Bool.random(using: &generator) })
            let expected = batch.filter { assignment.contains($0.topicPartition) }
            #expect(owned(batch, by: assignment).map(\.topicPartition) == expected.map(\.topicPartition))
            #expect(owned(batch, by: assignment).map(\.offset) == expected.map(\.offset))
        }
    }
}

@Suite("Catching up")
struct CatchUpTests {
    @Test("caught up: only partitions this member owns count; owning nothing is never caught up")
    func catchUp() {
        let a = TopicPartition("topic1", 0), b = TopicPartition("topic1", 1)
        var tracker = CatchUpTracker()
        #expect(!tracker.isCaughtUp([a: 10, b: 10]), "before any assignment")
        tracker.assigned([a: 4])
        #expect(!tracker.isCaughtUp([a: 10, b: 10]))
        tracker.processed([a: 10])
        #expect(tracker.isCaughtUp([a: 10, b: 10]), "b belongs to another member")
        tracker.revoked([a])
        #expect(!tracker.isCaughtUp([a: 10, b: 10]), "between a revoke and the next assignment")
    }
}
