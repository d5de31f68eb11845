import CoreMetrics
import GenetikaSupport
import GenetikaKafka

/// Publishes a consuming stage's lag per partition (high watermark from the last fetch −
/// next offset to process) as `genetika_consumer_lag`, at most once a second.
struct LagReporter {
    let stage: String
    let counters: PipelineCounters
    private var gauges: [TopicPartition: Gauge] = [:]
    private var last = ContinuousClock.now - .seconds(10)

    init(stage: String, counters: PipelineCounters) {
        self.stage = stage
        self.counters = counters
    }

    /// At most once a second (returns whether it ran): the gauges, and the total lag for `/health`.
    mutating func update(consumer: KafkaConsumer, tracker: CatchUpTracker) -> Bool {
        guard ContinuousClock.now - last >= .seconds(1) else { return false }
        last = ContinuousClock.now
        var total: Int64 = 0
        for partition in consumer.assignment {
            guard let high = consumer.cachedHighWatermark(partition) else { continue }
            let position = tracker.next[partition] ?? 0
            let lag = max(0, high - position)
            total += lag
            if counters.factory != nil {
                if gauges[partition] == nil { gauges[partition] = counters.lagGauge(stage: stage, partition: partition) }
                gauges[partition]?.record(Double(lag))
            }
        }
        counters.health.lag(stage, total)
        return true
    }
}
