import GenetikaTestSupport
import Synchronization
import Testing
@testable import GenetikaKafka
import GenetikaSupport

@Suite("Kafka layer against a real broker", .serialized)
struct KafkaRoundTripTests {
    @Test("a producer whose queue holds 5 messages sends 3,000 from 3 tasks: senders wait for delivery reports, none is refused", .timeLimit(.minutes(2)))
    func fullQueueWaitsForDeliveryReports() async throws {
        let broker = try await TestBroker.start()
        defer { broker.stop() }
        let topic = TestBroker.uniqueName("tinyqueue")
        try await broker.createTopics([topic], partitions: 3)
        var configuration = broker.clientConfiguration()
        configuration["queue.buffering.max.messages"] = "5"
        let producer = try KafkaProducer(configuration: configuration, name: "tiny-queue")
        let delivered = DeliveredCount()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<3 {
                group.addTask {
                    for i in 0..<1000 {
                        try await producer.send(OutgoingMessage(topic: topic, key: Array("\(task)-\(i)".utf8), value: [1])) { report in
                            if report.error == nil { delivered.value.add(1, ordering: .relaxed) }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        await producer.shutdown(timeout: .seconds(30))
        #expect(delivered.value.load(ordering: .relaxed) == 3000)
    }

    @Test("a message with headers that the partitioner refuses (a partition the topic does not have) is an error, not a crash (librdkafka issue #4627)")
    func refusedMessageWithHeaders() async throws {
        let broker = try await TestBroker.start()
        defer { broker.stop() }
        let topic = TestBroker.uniqueName("refused")
        try await broker.createTopics([topic], partitions: 3)
        let producer = try KafkaProducer(configuration: broker.clientConfiguration(), name: "refused")
        let headers = [KafkaHeader("genetika-source-file", "a.xlsx"), KafkaHeader("genetika-source-row", "2"), KafkaHeader("empty", nil)]
        // The first delivery makes the producer know the topic's partitions.
        _ = try await producer.send(OutgoingMessage(topic: topic, key: [1], value: [1], headers: headers))
        for _ in 0..<200 {
            do {
                _ = try await producer.send(OutgoingMessage(topic: topic, partition: 7, key: [2], value: [2], headers: headers))
                Issue.record("a message to partition 7 of a 3-partition topic was accepted")
            } catch let error as KafkaError {
                #expect("\(error)".contains("partition"), "\(error)")
            }
        }
        await producer.shutdown()
    }

    @Test("a fatal producer error while several tasks send with headers: every send ends in a report or an error, and shutdown does not crash")
    func fatalErrorWhileSending() async throws {
        let broker = try await TestBroker.start()
        defer { broker.stop() }
        let topic = TestBroker.uniqueName("fatal")
        try await broker.createTopics([topic], partitions: 3)
        for round in 0..<10 {
            let producer = try KafkaProducer(configuration: broker.clientConfiguration(), name: "fatal-\(round)")
            let tally = SendTally()
            await withTaskGroup(of: Void.self) { group in
                for task in 0..<3 {
                    group.addTask {
                        for i in 0..<3000 {
                            let message = OutgoingMessage(topic: topic, key: Array("k\(task)-\(i)".utf8), value: Array(repeating: 7, count: 200),
                                                          headers: [KafkaHeader("genetika-source-file", "f\(task).xlsx"), KafkaHeader("genetika-source-row", "\(i)")])
                            do {
                                try await producer.send(message) { report in
                                    if report.error == nil { tally.delivered.add(1, ordering: .relaxed) } else { tally.failed.add(1, ordering: .relaxed) }
                                }
                            } catch {
                                tally.refused.add(1, ordering: .relaxed)
                                return
                            }
                        }
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(Int.random(in: 5...60)))
                    producer.raiseFatalErrorForTesting()
                }
            }
            await producer.shutdown()
            let reported = tally.delivered.load(ordering: .relaxed) + tally.failed.load(ordering: .relaxed)
            #expect(tally.refused.load(ordering: .relaxed) > 0 || reported == 9000, "round \(round)")
        }
    }

    @Test("an offset is taken to lie beyond a partition's end only on the broker's answer to a fresh fetch, asked twice",
          .timeLimit(.minutes(2)))
    func endBeyondIsConfirmed() async throws {
        let broker = try await TestBroker.start()
        defer { broker.stop() }
        let topic = TestBroker.uniqueName("cachedend")
        try await broker.createTopics([topic], partitions: 1)
        let partition = TopicPartition(topic, 0)
        let producer = try KafkaProducer(configuration: broker.clientConfiguration(), name: "cached-end-producer")
        func produce(_ count: Int) async throws {
            for i in 0..<count {
                _ = try await producer.send(OutgoingMessage(topic: topic, partition: 0, key: Array("k\(i)".utf8), value: [1]))
            }
        }
        try await produce(10)
        let reader = try KafkaConsumer(configuration: broker.clientConfiguration(), groupId: TestBroker.uniqueName("cachedend"),
                                       name: "cached-end-reader")
        defer { reader.close() }
        var read = 0
        try reader.readToEnd([partition: KafkaOffset.beginning], timeout: .seconds(60)) { _ in read += 1 }
        #expect(read == 10)
        try await produce(15)
        await producer.shutdown()
        // Reading from 20 gets the 5 events there and ends: no beyond-end error.
        var tail: [Int64] = []
        try reader.readToEnd([partition: 20], timeout: .seconds(60)) { tail.append($0.offset) }
        #expect(tail == Array(20..<25))
        // 25 is the end (not beyond it); 40 lies beyond, and the end the broker gave is reported.
        #expect(reader.confirmedEndBefore(25, in: partition, recheck: .milliseconds(200)) == nil)
        let started = ContinuousClock.now
        #expect(reader.confirmedEndBefore(40, in: partition, recheck: .milliseconds(500)) == 25)
        #expect(ContinuousClock.now - started >= .milliseconds(500), "the answer is asked for twice, recheck apart")
        // The stage-facing check: a read from 40 fails with the partition's end, not a timeout.
        #expect(throws: PartitionBeyondEnd.self) {
            try reader.readToEnd([partition: 40], timeout: .seconds(60), patience: .milliseconds(500)) { _ in }
        }
    }

    @Test("1,000 keyed messages go through a consumer group; after a commit and restart nothing is redelivered")
    func roundTripWithoutRedelivery() async throws {
        let broker = try await TestBroker.start()
        defer { broker.stop() }
        let topic = TestBroker.uniqueName("roundtrip")
        try await broker.createTopics([topic], partitions: 3)

        // Produce 1,000 keyed messages asynchronously, collecting every delivery report.
        let producer = try KafkaProducer(configuration: broker.clientConfiguration(), name: "test-producer")
        let reports = Mutex<[DeliveryReport]>([])
        for i in 0..<1000 {
            let message = OutgoingMessage(topic: topic, key: Array("key-\(i)".utf8), value: Array("value-\(i)".utf8),
                                          headers: [KafkaHeader("row", "\(i)")])
            try await producer.send(message) { report in reports.withLock { $0.append(report) } }
        }
        try producer.flush()
        producer.close()
        let delivered = reports.withLock { $0 }
        #expect(delivered.count == 1000)
        #expect(delivered.allSatisfy { $0.error == nil && $0.offset >= 0 })
        #expect(Set(delivered.map(\.partition)).count == 3, "keys should spread over all three partitions")

        // Consume them back through a group, checking key, value, header and partition.
        let group = TestBroker.uniqueName("group")
        let consumer = try KafkaConsumer(configuration: broker.clientConfiguration(), groupId: group, name: "test-consumer-1")
        try consumer.subscribe([topic])
        var values: [String: String] = [:]
        var next: [TopicPartition: Int64] = [:]
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while values.count < 1000, ContinuousClock.now < deadline {
            guard let message = try consumer.poll(timeout: .milliseconds(200)) else { continue }
            let key = try #require(message.keyText)
            values[key] = String(decoding: message.value, as: UTF8.self)
            #expect(message.header("row")?.text == String(key.dropFirst("key-".count)))
            next[message.topicPartition] = message.offset + 1
        }
        #expect(values.count == 1000)
        #expect(values.allSatisfy { $0.value == "value-" + $0.key.dropFirst("key-".count) })
        try consumer.commit(next)
        consumer.close()

        // Restart in the same group: every partition is at its end and nothing comes back.
        let restarted = try KafkaConsumer(configuration: broker.clientConfiguration(), groupId: group, name: "test-consumer-2")
        try restarted.subscribe([topic])
        let committed = try restarted.committed(next.keys.sorted())
        #expect(committed == next)
        var redelivered = 0
        let all = Set(next.keys)
        let restartDeadline = ContinuousClock.now.advanced(by: .seconds(60))
        while !(restarted.assignment == all && all.isSubset(of: restarted.partitionsAtEnd)), ContinuousClock.now < restartDeadline {
            if try restarted.poll(timeout: .milliseconds(200)) != nil { redelivered += 1 }
        }
        #expect(restarted.assignment == all)
        #expect(all.isSubset(of: restarted.partitionsAtEnd))
        #expect(redelivered == 0)
        restarted.close()
    }

    @Test("start offsets returned by the rebalance handler are where reading begins; stored offsets are committed")
    func rebalanceHandlerSeeks() async throws {
        let broker = try await TestBroker.start()
        defer { broker.stop() }
        let topic = TestBroker.uniqueName("seek")
        try await broker.createTopics([topic], partitions: 2)
        let producer = try KafkaProducer(configuration: broker.clientConfiguration())
        for i in 0..<40 {
            try await producer.send(OutgoingMessage(topic: topic, partition: Int32(i % 2), key: Array("k\(i)".utf8), value: Array("\(i)".utf8)))
        }
        producer.close()

        let events = Mutex<[RebalanceEvent]>([])
        let consumer = try KafkaConsumer(configuration: broker.clientConfiguration(), groupId: TestBroker.uniqueName("seek-group")) { event in
            events.withLock { $0.append(event) }
            guard case .assigned(let partitions) = event else { return [:] }
            return Dictionary(uniqueKeysWithValues: partitions.map { ($0, Int64(17)) })
        }
        try consumer.subscribe([topic])
        var offsets: [TopicPartition: [Int64]] = [:]
        let all: Set<TopicPartition> = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while !(consumer.assignment == all && all.isSubset(of: consumer.partitionsAtEnd)), ContinuousClock.now < deadline {
            if let message = try consumer.poll(timeout: .milliseconds(200)) {
                offsets[message.topicPartition, default: []].append(message.offset)
            }
        }
        #expect(offsets[TopicPartition(topic, 0)] == Array(17..<20))
        #expect(offsets[TopicPartition(topic, 1)] == Array(17..<20))
        #expect(events.withLock { $0 }.contains(.assigned(all.sorted())))
        // Store offsets locally, commit what is stored, and read the group's offsets back.
        try consumer.store([TopicPartition(topic, 0): 19, TopicPartition(topic, 1): 18])
        try consumer.commitStored()
        #expect(try consumer.committed(all.sorted()) == [TopicPartition(topic, 0): 19, TopicPartition(topic, 1): 18])
        consumer.close()
        #expect(events.withLock { $0 }.last == .revoked(all.sorted()))
    }

    @Test("an unreachable broker is reported with the address and librdkafka's message")
    func unreachableBroker() async throws {
        let port = try freePort()
        let admin = try KafkaAdmin(configuration: KafkaClientConfiguration(bootstrapServers: "127.0.0.1:\(port)"))
        defer { admin.close() }
        let error = await #expect(throws: KafkaError.self) {
            try await admin.waitUntilReachable(timeout: .seconds(2))
        }
        #expect(error?.description.contains("127.0.0.1:\(port)") == true)
    }
}

/// Delivery reports counted across the tasks that send.
final class DeliveredCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Outcomes of concurrent sends, counted from the senders and the delivery callbacks.
private final class SendTally: Sendable {
    let delivered = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
}
