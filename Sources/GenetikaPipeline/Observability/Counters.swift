import CoreMetrics
import Synchronization
import GenetikaSupport
import GenetikaReport
import GenetikaStorage

/// A counter shared across threads, also exported as a swift-metrics counter when the
/// pipeline has a metrics factory.
package final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)
    private let metric: CoreMetrics.Counter?

    package init() { metric = nil }

    init(_ label: String, _ dimensions: [(String, String)] = [], factory: (any MetricsFactory)?) {
        metric = factory.map { CoreMetrics.Counter(label: label, dimensions: dimensions, factory: $0) }
    }

    func add(_ amount: Int = 1) {
        atomic.add(amount, ordering: .relaxed)
        metric?.increment(by: Int64(amount))
    }

    package var value: Int { atomic.load(ordering: .relaxed) }
}

/// A level shared across threads (set, not added to), also exported as a swift-metrics
/// gauge when the pipeline has a metrics factory.
package final class Level: Sendable {
    private let atomic = Atomic<Int>(0)
    private let metric: CoreMetrics.Gauge?

    package init() { metric = nil }

    init(_ label: String, factory: (any MetricsFactory)?) {
        metric = factory.map { CoreMetrics.Gauge(label: label, dimensions: [], factory: $0) }
        metric?.record(0)
    }

    package func set(_ value: Int) {
        atomic.store(value, ordering: .relaxed)
        metric?.record(value)
    }

    package var value: Int { atomic.load(ordering: .relaxed) }
}

/// When a stage first took work in and last finished some (epoch milliseconds), for the
/// run summary's throughput figures: the producer from its first row read to its last
/// delivery report, the DB stage from its first batch to its last commit, the acker from its
/// first batch to its last acks delivered and recorded.
package final class ActivitySpan: Sendable {
    private let firstMs = Atomic<Int64>(0)
    private let lastMs = Atomic<Int64>(0)

    package init() {}

    /// Work came in at `time`: the span starts here if it has not started yet.
    func started(at time: Int64 = nowMilliseconds()) {
        _ = firstMs.compareExchange(expected: 0, desired: time, ordering: .relaxed)
    }

    /// Work was finished at `time`.
    package func finished(at time: Int64 = nowMilliseconds()) {
        var current = lastMs.load(ordering: .relaxed)
        while time > current {
            let (exchanged, original) = lastMs.compareExchange(expected: current, desired: time, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
    }

    package var first: Int64? { let v = firstMs.load(ordering: .relaxed); return v == 0 ? nil : v }
    package var last: Int64? { let v = lastMs.load(ordering: .relaxed); return v == 0 ? nil : v }
}

/// A bounded sample of durations (milliseconds) for percentiles: every value while fewer
/// than `capacity` were recorded, then a uniform reservoir sample of them all.
package final class DurationSample: Sendable {
    private struct State {
        var values: [Double] = []
        var seen = 0
        var random: UInt64 = 0x5EED
    }
    private let state = Mutex(State())
    package let capacity: Int

    package init(capacity: Int = 100_000) { self.capacity = capacity }

    package func record(_ milliseconds: Double) {
        state.withLock { s in
            s.seen += 1
            if s.values.count < capacity {
                s.values.append(milliseconds)
            } else {
                // xorshift64: uniform enough for a reservoir, and no syscall per value.
                s.random ^= s.random << 13
                s.random ^= s.random >> 7
                s.random ^= s.random << 17
                let slot = Int(s.random % UInt64(s.seen))
                if slot < capacity { s.values[slot] = milliseconds }
            }
        }
    }

    package var statistics: DelayStatistics? { DelayStatistics(state.withLock { $0.values }) }
}

/// Counters shared by the stages (for logs, progress, tests, and `/metrics`).
package final class PipelineCounters: Sendable {
    package let rowsRead: Counter
    package let eventsProduced: Counter
    /// Events whose delivery failed for good: the producer stage was not restarted to send them again.
    package let deliveryFailures: Counter
    /// Events whose delivery failed in a producer stage that the supervisor then restarted,
    /// which sends their source again.
    package let deliveriesResent: Counter
    /// Rows the producer could not map to their columns' types (each also a dead letter).
    package let rowsRejected: Counter
    package let eventsConsumed: Counter
    package let rowsWritten: Counter
    /// Dead letters sent by any stage (the sum of `deadLetteredPerStage`).
    package let deadLettered: Counter
    /// Dead letters per stage (`producer`: rejected rows; `db`, `acker`: unusable events).
    package let deadLetteredPerStage: [String: Counter]
    package let acks: Counter
    /// Partitions found reset by the broker (topic recreated, or a stored offset beyond the
    /// partition's end) and read again from the beginning.
    package let partitionResets: Counter
    /// Writes refused because another member had claimed their partitions (a zombie's writes),
    /// per stage (`genetika_fenced_writes_total{stage}`), counted per partition.
    let fencedWritesPerStage: [String: Counter]
    /// Ids reported incomplete (each once).
    let incompleteReported: Counter
    /// Ids reported incomplete that still have no ack (in the partitions this process owns).
    let incompleteIds: Level
    /// Inbox files that reached each status in this process, per source topic
    /// (`genetika_files_total{source,status}`).
    package let files: [String: [FileStatus: Counter]]
    /// What `/health` reports: each stage's state, progress and problems.
    let health: StageHealth
    package let stageRestarts: Counter
    /// Per source topic: events delivered to it.
    package let producedPerTopic: [String: Counter]
    /// Per table: rows written to it.
    package let writtenPerTable: [String: Counter]
    /// Ack delay (ack time − latest topic time), in milliseconds, as a histogram.
    let ackDelay: Recorder?
    /// The ack delay split in two (for `genetika run --summary`): from the latest event's
    /// creation until the acker had it in hand (producer, broker, fetch), and from then until
    /// its ack was created (the acker's own share), in milliseconds.
    package let ackTransit = DurationSample()
    package let ackProcessing = DurationSample()
    /// When each stage worked (for `genetika run --summary`).
    package let producing = ActivitySpan()
    package let writing = ActivitySpan()
    package let acking = ActivitySpan()
    let factory: (any MetricsFactory)?

    /// Counters for `sources`, exported through `factory` when given.
    package init(sources: [SourceConfiguration] = [], factory: (any MetricsFactory)? = nil, health: StageHealth = StageHealth()) {
        self.factory = factory
        self.health = health
        rowsRead = Counter("genetika_rows_read_total", factory: factory)
        eventsProduced = Counter("genetika_events_produced_total", factory: nil)
        deliveryFailures = Counter("genetika_delivery_failures_total", factory: factory)
        deliveriesResent = Counter("genetika_deliveries_resent_total", factory: factory)
        rowsRejected = Counter("genetika_rows_rejected_total", factory: factory)
        eventsConsumed = Counter("genetika_events_consumed_total", factory: factory)
        rowsWritten = Counter("genetika_rows_written_total", factory: nil)
        deadLettered = Counter("genetika_dead_lettered_total", factory: nil)
        deadLetteredPerStage = Dictionary(uniqueKeysWithValues: StageKind.allCases.map {
            ($0.rawValue, Counter("genetika_dead_lettered_total", [("stage", $0.rawValue)], factory: factory))
        })
        partitionResets = Counter("genetika_partition_resets_total", factory: factory)
        fencedWritesPerStage = Dictionary(uniqueKeysWithValues: StageKind.allCases.map {
            ($0.rawValue, Counter("genetika_fenced_writes_total", [("stage", $0.rawValue)], factory: factory))
        })
        acks = Counter("genetika_acks_total", factory: factory)
        incompleteReported = Counter("genetika_incomplete_reported_total", factory: factory)
        incompleteIds = Level("genetika_incomplete_ids", factory: factory)
        files = Dictionary(uniqueKeysWithValues: sources.filter { $0.inbox != nil }.map { source in
            (source.topic, Dictionary(uniqueKeysWithValues: FileStatus.allCases.map {
                ($0, Counter("genetika_files_total", [("source", source.topic), ("status", $0.rawValue)], factory: factory))
            }))
        })
        stageRestarts = Counter("genetika_stage_restarts_total", factory: factory)
        producedPerTopic = Dictionary(uniqueKeysWithValues: sources.map {
            ($0.topic, Counter("genetika_events_produced_total", [("topic", $0.topic)], factory: factory))
        })
        writtenPerTable = Dictionary(uniqueKeysWithValues: sources.map {
            ($0.table, Counter("genetika_rows_written_total", [("table", $0.table)], factory: factory))
        })
        ackDelay = factory.map { Recorder(label: "genetika_ack_delay_ms", dimensions: [], aggregate: true, factory: $0) }
    }

    func produced(topic: String) {
        eventsProduced.add()
        producedPerTopic[topic]?.add()
    }

    /// A dead letter went out from `stage`.
    func fencedWrites(stage: String, count: Int) {
        fencedWritesPerStage[stage]?.add(count)
    }

    func deadLettered(stage: String) {
        deadLettered.add()
        deadLetteredPerStage[stage]?.add()
    }

    /// "N (producer a, db b, acker c)", for the totals line.
    package var deadLetteredSummary: String {
        let parts = StageKind.allCases.map { "\($0.rawValue) \(deadLetteredPerStage[$0.rawValue]?.value ?? 0)" }
        return "\(deadLettered.value) (\(parts.joined(separator: ", ")))"
    }

    func written(table: String, count: Int) {
        rowsWritten.add(count)
        writtenPerTable[table]?.add(count)
    }

    /// A gauge of how far a consuming stage is behind on one partition.
    func lagGauge(stage: String, partition: TopicPartition) -> Gauge? {
        factory.map {
            Gauge(label: "genetika_consumer_lag", dimensions: [("stage", stage), ("topic", partition.topic), ("partition", String(partition.partition))], factory: $0)
        }
    }
}
