import Synchronization
import Testing
@testable import GenetikaKafka

/// A count several tasks add to.
final class Tally: Sendable {
    private let atomic = Atomic<Int>(0)
    func add() { atomic.add(1, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .relaxed) }
}

@Suite("Kafka producer: closing while others send")
struct ProducerCloseTests {
    @Test("tasks that keep sending while the producer closes get 'producer is closed', never a destroyed handle",
          .timeLimit(.minutes(1)))
    func closeWhileSending() async throws {
        // No broker needed (nothing listens on port 1): messages only queue up, and close() purges them.
                for round in 0..<20 {
            let producer = try KafkaProducer(configuration: KafkaClientConfiguration(bootstrapServers: "127.0.0.1:1"),
                                             name: "close-test-\(round)")
            let accepted = Tally()
            let refused = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sender in 0..<4 {
                    group.addTask {
                        for n in 0..<2_000 {
                            do {
                                try await producer.send(OutgoingMessage(topic: "t", key: Array("\(sender)-\(n)".utf8), value: [1, 2, 3])) { _ in }
                                accepted.add()
                            } catch let error as KafkaError {
                                #expect(error.message == "producer is closed", "\(error)")
                                refused.add()
                                return
                            }
                        }
                    }
                }
                group.addTask {
                    try await Task.sleep(for: .milliseconds(Int.random(in: 1...20)))
                    producer.close(timeout: .zero)
                }
                try await group.waitForAll()
            }
            #expect(accepted.value + refused.value > 0)
            #expect(producer.outstanding == 0, "a closed producer reports nothing outstanding")
            await #expect(throws: KafkaError.self) {
                try await producer.send(OutgoingMessage(topic: "t", key: nil, value: [1])) { _ in }
            }
        }
    }
}
