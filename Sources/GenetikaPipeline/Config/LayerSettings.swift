import GenetikaKafka
import GenetikaXlsx

// The lower layers take their own settings types; these build them from the configuration.

extension XlsxLimits {
    package init(_ configuration: XlsxConfiguration) {
        self.init(maxPartBytes: configuration.maxPartBytes, maxCompressionRatio: configuration.maxCompressionRatio)
    }
}

extension KafkaClientConfiguration {
    package init(_ kafka: KafkaConfiguration) {
        self.init(bootstrapServers: kafka.bootstrapServers, properties: kafka.properties)
    }
}
