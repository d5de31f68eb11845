import GenetikaSupport
import GenetikaKafka

extension ProducerStage {
    /// Deliveries that make no progress for 5 s while events are outstanding may be waiting
    /// for a topic the broker lost (librdkafka would hold them until `message.timeout.ms`):
    /// if a source topic is gone or was recreated, the stage is aborted, and its restart
    /// creates the topics again and resends.
    static func watchTopics(producer: KafkaProducer, ids: [String: String], topics: [String],
                                    outage: DeliveryOutage, abort: AbortSignal) -> Task<Void, Never> {
        Task.detached {
            var last = outage.reports
            var since = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let reports = outage.reports
                if reports != last || producer.outstanding == 0 {
                    last = reports
                    since = .now
                    continue
                }
                guard ContinuousClock.now - since >= .seconds(5) else { continue }
                since = .now
                // DescribeTopics blocks: on a thread of its own, not on Swift's shared pool.
                let current = await onOwnThread("genetika-producer-watch") { try? producer.topicIds(topics, timeout: .seconds(3)) }
                guard let current else { continue }  // no broker answered: librdkafka keeps trying
                let gone = topics.filter { current[$0] != ids[$0] }
                if !gone.isEmpty {
                    abort.raise(TopicsGone(topics: gone))
                    return
                }
            }
        }
    }

    /// Source topics disappeared or were recreated while events waited for them.
    struct TopicsGone: Error, CustomStringConvertible {
        var topics: [String]
        var description: String {
            "topics \(topics.joined(separator: ", ")) are gone or were recreated while events waited for them (the broker lost its data); the restart creates them and sends again"
        }
    }
}
