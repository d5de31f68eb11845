import Foundation
import GenetikaTestSupport
import Logging
import Testing
@testable import GenetikaPipeline
@testable import GenetikaJSON
import GenetikaSupport

@Suite("Metrics and health over HTTP during a run", .serialized)
struct ObservabilityTests {
    /// The value of one sample line `name{labels} value` of a Prometheus text exposition.
    func sample(_ metrics: String, _ series: String) -> Double? {
        for line in metrics.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    @Test("/metrics counts what was produced, written and acked; /health reports the stages")
    func metricsAndHealth() async throws {
        let port = try freePort()
        let bed = try await PipelineTestbed.start { $0.observability.port = port }
        defer { bed.stop() }
        let pipeline = Pipeline(configuration: bed.configuration, logger: Logger(label: "test"))
        let run = Task { try await pipeline.run() }
        try await eventually("50 acks") { pipeline.counters.acks.value == 50 }
        try await eventually("all rows written") { pipeline.counters.rowsWritten.value == 150 }

        // The producer stage returns a moment after its last delivery report.
        try await eventually("the producer finished") {
            pipeline.health.state(of: "producer") == "finished"
        }
        let health = try httpGet(port: port, path: "/health")
        #expect(health.status == 200)
        let stages = try JSONParser.parse(health.body)["stages"]
        #expect(stages?["producer"] == .string("finished"))
        #expect(stages?["db"] == .string("running"))
        #expect(stages?["acker"] == .string("running"))

        let metrics = try httpGet(port: port, path: "/metrics")
        #expect(metrics.status == 200)
        let text = metrics.body
        for (topic, table) in [("topic1", "data1"), ("topic2", "data2"), ("topic3", "data3")] {
            #expect(sample(text, "genetika_events_produced_total{topic=\"\(topic)\"}") == 50, "\(topic)")
            #expect(sample(text, "genetika_rows_written_total{table=\"\(table)\"}") == 50, "\(table)")
        }
        #expect(sample(text, "genetika_rows_read_total") == 150)
        #expect(sample(text, "genetika_acks_total") == 50)
        // Present and zero: a missing series must fail, not pass as 0.
        for stage in ["producer", "db", "acker"] {
            #expect(sample(text, "genetika_dead_lettered_total{stage=\"\(stage)\"}") == 0, "\(stage)")
            #expect(sample(text, "genetika_stage_healthy{stage=\"\(stage)\"}") == 1, "\(stage)")
        }
        #expect(sample(text, "genetika_stage_restarts_total") == 0)
        #expect(sample(text, "genetika_partition_resets_total") == 0)
        #expect(sample(text, "genetika_ack_delay_ms_count") == 50)
        // Lag per partition is published once a second; once caught up it is 0 everywhere.
        try await eventually("lag gauges at 0") {
            let body = try httpGet(port: port, path: "/metrics").body
            let lags = body.split(separator: "\n").filter { $0.hasPrefix("genetika_consumer_lag{") }
            return lags.count == 18 && lags.allSatisfy { $0.hasSuffix(" 0") || $0.hasSuffix(" 0.0") }
        }
        #expect(try httpGet(port: port, path: "/nothing").status == 404)

        pipeline.stop.request()
        try await run.value
    }

    @Test("/health is 503 unless every stage runs or has finished")
    func healthStates() {
        let health = StageHealth(stages: ["producer", "db", "acker"])
        #expect(health.response().status == 503)
        for stage in ["producer", "db", "acker"] { health.set(stage, .running) }
        #expect(health.response().status == 200)
        health.set("producer", .finished)
        #expect(health.response().status == 200)
        health.set("db", .restarting)
        let response = health.response()
        #expect(response.status == 503)
        #expect(String(decoding: response.body, as: UTF8.self).contains("\"db\":\"restarting\""))
    }
}
