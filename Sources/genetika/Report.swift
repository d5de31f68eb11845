import ArgumentParser
import Foundation
import Logging
import GenetikaPipeline
import GenetikaReport
import GenetikaJSON
import GenetikaKafka
import GenetikaSupport

/// `genetika report`: the ack-delay analysis of what is in the topics now.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read the source topics and the ack topic from the beginning (without joining the pipeline's groups), match events by id and report the ack delay.")

    @OptionGroup var configFile: ConfigFileOption

    @Option(help: "Directory for summary.json, timestamps.svg and delay.svg.")
    var out: String = "out/report"

    func run() throws {
        bootstrapLogging(level: .warning)
        let configuration = try configFile.load()
        let topics = configuration.sources.map(\.topic)
        let (report, reportsRead) = try AckDelayReport.read(kafka: KafkaClientConfiguration(configuration.kafka), sourceTopics: topics,
                                                            ackTopic: configuration.topics.ack, incompleteTopic: configuration.topics.incomplete)
        print("events: " + topics.map { "\($0) \(report.eventCounts[$0] ?? 0)" }.joined(separator: ", ") + ", \(configuration.topics.ack) \(report.ackCount)")
        print("ids: \(report.ids.count)")
        if let s = report.statistics {
            print(String(format: "ack delay (ms): count %d  min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  mean %.2f",
                         s.count, s.min, s.p50, s.p90, s.p99, s.max, s.mean))
        } else {
            print("ack delay: no acked id with all its events")
        }
        if !report.acksNotMatchingTopics.isEmpty {
            print("acks that do not match their id's events in the topics: \(report.acksNotMatchingTopics.prefix(20).joined(separator: ", "))")
        }
        if !report.acksOnWrongPartition.isEmpty {
            print("acks not on their id's partition number: \(report.acksOnWrongPartition.prefix(20).joined(separator: ", "))")
        }
        for (topic, ids) in report.missingFromTopic.sorted(by: { $0.key < $1.key }) {
            print("missing from \(topic): \(ids.count) id(s): \(ids.prefix(20).joined(separator: ", "))\(ids.count > 20 ? ", …" : "")")
        }
        if !report.missingAck.isEmpty {
            print("missing ack: \(report.missingAck.count) id(s): \(report.missingAck.prefix(20).joined(separator: ", "))")
        }
        let now = nowMilliseconds()
        let incomplete = report.incomplete(now: now)
        if !incomplete.isEmpty {
            let reported = incomplete.filter(\.reported).count
            print("incomplete: \(incomplete.count) id(s) reached some topics but not all, \(reportsRead ? "\(reported) of them reported by the acker" : "no \(configuration.topics.incomplete) topic to say which the acker reported"):")
            for entry in incomplete.prefix(20) {
                print("  \(entry.id): seen \(entry.seen.joined(separator: ", ")); missing \(entry.missing.joined(separator: ", ")); age \(entry.ageMs / 1000) s\(entry.reported ? "; reported" : "")")
            }
            if incomplete.count > 20 { print("  …") }
        }
        if !report.duplicateAcks.isEmpty {
            print("duplicate acks: \(report.duplicateAcks.count) id(s): \(report.duplicateAcks.prefix(20).joined(separator: ", "))")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let path = out + "/summary.json"
        try Data(JSONWriter.serialize(report.summary(now: now))).write(to: URL(fileURLWithPath: path))
        try Data(report.timestampsSVG(ackTopic: configuration.topics.ack).utf8).write(to: URL(fileURLWithPath: out + "/timestamps.svg"))
        try Data(report.delaySVG().utf8).write(to: URL(fileURLWithPath: out + "/delay.svg"))
        print("wrote \(path), \(out)/timestamps.svg, \(out)/delay.svg")
    }
}
