import GenetikaKafka

extension KafkaAdmin {
    /// Every topic the configuration names (sources, ack, dead letters) exists with
    /// `topics.partitions` partitions; missing ones are created if `topics.create`.
    func ensureTopics(of configuration: GenetikaConfiguration) async throws {
        let topics = configuration.sources.map(\.topic)
            + [configuration.topics.ack, configuration.topics.deadLetter, configuration.topics.incomplete]
        try await ensureTopics(topics.map { TopicSpecification(name: $0, partitions: configuration.topics.partitions) },
                               create: configuration.topics.create)
    }
}

/// The Kafka client settings of a stage: the configured ones, reporting broker outages to `/health`.
func clientConfiguration(_ configuration: GenetikaConfiguration, _ counters: PipelineCounters) -> KafkaClientConfiguration {
    var client = KafkaClientConfiguration(configuration.kafka)
    client.observer = counters.health
    return client
}
