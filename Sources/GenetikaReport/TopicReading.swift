import GenetikaJSON
import GenetikaKafka

extension AckDelayReport {
    /// Reads `sourceTopics` and `ackTopic` from the beginning to their current end (a
    /// `TopicSnapshot`: no consumer group joined) and records every event and ack, then the
    /// acker's reports from `incompleteTopic`. `reportsRead` is false when that topic does
    /// not exist (a deployment from before the acker reported incomplete ids).
    package static func read(kafka: KafkaClientConfiguration, sourceTopics: [String], ackTopic: String,
                            incompleteTopic: String) throws -> (report: AckDelayReport, reportsRead: Bool) {
        var report = AckDelayReport(sourceTopics: sourceTopics)
        try TopicSnapshot(configuration: kafka).read(sourceTopics + [ackTopic]) { message in
            guard let id = message.keyText, let timestamp = message.timestamp else { return }
            let isAck = message.topic == ackTopic
            report.record(id: id, topic: message.topic, timestamp: timestamp, isAck: isAck, partition: message.partition,
                          claims: isAck ? claimedTimes(message.value, sourceTopics: sourceTopics) : nil)
        }
        let reportsRead: Bool
        do {
            try TopicSnapshot(configuration: kafka).read([incompleteTopic]) { message in
                if let id = message.keyText { report.recordIncompleteReport(id: id, timestamp: message.timestamp) }
            }
            reportsRead = true
        } catch {
            reportsRead = false
        }
        return (report, reportsRead)
    }

    /// The source-topic times an ack names (`topics`: topic → ms, nil for a topic it lacks);
    /// an ack without its topics field claims nothing and so matches nothing.
    static func claimedTimes(_ value: [UInt8], sourceTopics: [String]) -> [String: Int64?] {
        guard case .object(let fields)? = try? JSONParser.parse(value), case .object(let seen)? = fields["topics"] else { return [:] }
        return Dictionary(uniqueKeysWithValues: sourceTopics.map { topic in
            if case .int(let ms)? = seen[topic] { return (topic, Optional(ms)) }
            return (topic, nil)
        })
    }
}
