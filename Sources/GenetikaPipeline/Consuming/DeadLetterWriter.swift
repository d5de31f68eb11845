import Logging
import GenetikaKafka

/// Sends events a stage cannot use to the dead-letter topic: the original bytes and key,
/// the reason, and where they came from (topic, partition, offset, plus the source file
/// and row headers they carried). Waits for delivery, so the stage commits its offsets only
/// after the dead letter is safe.
struct DeadLetterWriter {
    let producer: KafkaProducer
    let topic: String
    let stage: String
    let counters: PipelineCounters
    let logger: Logger

    func send(_ message: KafkaMessage, reason: String) async throws {
        logger.warning("\(stage): \(message.topic)[\(message.partition)] offset \(message.offset): \(reason); sent to \(topic)")
        var headers = message.headers.filter { $0.name == GenetikaHeader.sourceFile || $0.name == GenetikaHeader.sourceRow }
        headers += [
            KafkaHeader(GenetikaHeader.error, reason), KafkaHeader(GenetikaHeader.stage, stage),
            KafkaHeader(GenetikaHeader.sourceTopic, message.topic),
            KafkaHeader(GenetikaHeader.sourcePartition, String(message.partition)),
            KafkaHeader(GenetikaHeader.sourceOffset, String(message.offset)),
        ]
        try await producer.send(OutgoingMessage(topic: topic, key: message.key, value: message.value,
                                                timestamp: message.timestamp, headers: headers))
        counters.deadLettered(stage: stage)
    }
}
