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
        let now = nowMilliseconds()
        for line in report.lines(ackTopic: configuration.topics.ack, incompleteTopic: configuration.topics.incomplete,
                                 reportsRead: reportsRead, now: now) {
            print(line)
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let path = out + "/summary.json"
        try Data(JSONWriter.serialize(report.summary(now: now))).write(to: URL(fileURLWithPath: path))
        try Data(report.timestampsSVG(ackTopic: configuration.topics.ack).utf8).write(to: URL(fileURLWithPath: out + "/timestamps.svg"))
        try Data(report.delaySVG().utf8).write(to: URL(fileURLWithPath: out + "/delay.svg"))
        print("wrote \(path), \(out)/timestamps.svg, \(out)/delay.svg")
    }
}
