import Foundation
import Testing
import GenetikaJSON
@testable import GenetikaReport
@testable import GenetikaXlsx

@Suite("Report statistics")
struct ReportStatisticsTests {
    @Test("count, min, percentiles (numpy's linear interpolation), max and mean")
    func statistics() throws {
        let s = try #require(DelayStatistics([10, 12, 11, 13, 100]))
        #expect(s.count == 5 && s.min == 10 && s.max == 100)
        #expect(s.p50 == 12)
        #expect(abs(s.p90 - 65.2) < 1e-9)
        #expect(abs(s.p99 - 96.52) < 1e-9)
        #expect(s.mean == 29.2)
        #expect(DelayStatistics([]) == nil)
        #expect(DelayStatistics.percentile([11, 12], 50) == 11.5)
    }

    @Test("ids are matched across topics; missing events, missing and duplicate acks are listed")
    func matching() {
        var report = AckDelayReport(sourceTopics: ["t1", "t2"])
        report.record(id: "1", topic: "t1", timestamp: 100, isAck: false)
        report.record(id: "1", topic: "t2", timestamp: 110, isAck: false)
        report.record(id: "1", topic: "ack", timestamp: 121, isAck: true)
        report.record(id: "2", topic: "t1", timestamp: 105, isAck: false)
        report.record(id: "3", topic: "t1", timestamp: 100, isAck: false)
        report.record(id: "3", topic: "t2", timestamp: 100, isAck: false)
        report.record(id: "4", topic: "t1", timestamp: 100, isAck: false)
        report.record(id: "4", topic: "t2", timestamp: 130, isAck: false)
        report.record(id: "4", topic: "ack", timestamp: 131, isAck: true)
        report.record(id: "4", topic: "ack", timestamp: 140, isAck: true)
        #expect(report.delays.map(\.delay) == [11, 1])
        #expect(report.missingFromTopic == ["t2": ["2"]])
        #expect(report.missingAck == ["3"])
        #expect(report.duplicateAcks == ["4"])
    }

    @Test("the printed report: counts, the delay, then each problem with its ids")
    func printedLines() {
        var report = AckDelayReport(sourceTopics: ["t1", "t2"])
        report.record(id: "1", topic: "t1", timestamp: 100, isAck: false)
        report.record(id: "1", topic: "t2", timestamp: 110, isAck: false)
        report.record(id: "1", topic: "ack", timestamp: 121, isAck: true)
        report.record(id: "1", topic: "ack", timestamp: 125, isAck: true)
        report.record(id: "2", topic: "t1", timestamp: 105, isAck: false)
        report.recordIncompleteReport(id: "2")
        report.record(id: "3", topic: "t1", timestamp: 100, isAck: false)
        report.record(id: "3", topic: "t2", timestamp: 100, isAck: false)
        let lines = report.lines(ackTopic: "ack", incompleteTopic: "incomplete", reportsRead: true, now: 5_105)
        #expect(lines == [
            "events: t1 3, t2 2, ack 2",
            "ids: 3",
            "ack delay (ms): count 1  min 11.0  p50 11.0  p90 11.0  p99 11.0  max 11.0  mean 11.00",
            "missing from t2: 1 id(s): 2",
            "missing ack: 1 id(s): 3",
            "incomplete: 1 id(s) reached some topics but not all, 1 of them reported by the acker:",
            "  2: seen t1; missing t2; age 5 s; reported",
            "duplicate acks: 1 id(s): 1",
        ])
        let unread = AckDelayReport(sourceTopics: ["t1"]).lines(ackTopic: "ack", incompleteTopic: "incomplete", reportsRead: false, now: 0)
        #expect(unread == ["events: t1 0, ack 0", "ids: 0", "ack delay: no acked id with all its events"])
    }

    @Test("incomplete ids: those without an ack that reached some topics, with what they saw, their age and whether the acker reported them")
    func incompleteIds() {
        var report = AckDelayReport(sourceTopics: ["t1", "t2", "t3"])
        for topic in ["t1", "t2", "t3"] { report.record(id: "1", topic: topic, timestamp: 100, isAck: false) }
        report.record(id: "2", topic: "t2", timestamp: 300, isAck: false)
        report.record(id: "3", topic: "t1", timestamp: 200, isAck: false)
        report.record(id: "3", topic: "t3", timestamp: 250, isAck: false)
        report.record(id: "4", topic: "t1", timestamp: 50, isAck: false)
        report.record(id: "4", topic: "ack", timestamp: 400, isAck: true)  // acked without all its events here: not incomplete
        report.recordIncompleteReport(id: "3")
        let incomplete = report.incomplete(now: 1_000)
        #expect(incomplete == [
            .init(id: "3", seen: ["t1", "t3"], missing: ["t2"], ageMs: 800, reported: true),
            .init(id: "2", seen: ["t2"], missing: ["t1", "t3"], ageMs: 700, reported: false),
        ])
        guard case .object(let summary) = report.summary(now: 1_000), case .object(let section)? = summary["incomplete"] else {
            Issue.record("no incomplete section in the summary")
            return
        }
        #expect(section["count"] == .int(2))
        #expect(section["reported"] == .int(1))
    }
}

@Suite("Report of incomplete ids")
struct IncompleteReportTests {
    @Test("an id reported incomplete that reached every topic later is listed with both times; others are not")
    func reportedThenComplete() {
        var report = AckDelayReport(sourceTopics: ["topic1", "topic2", "topic3"])
        report.record(id: "1", topic: "topic1", timestamp: 1_000, isAck: false)
        report.record(id: "1", topic: "topic2", timestamp: 1_500, isAck: false)
        report.recordIncompleteReport(id: "1", timestamp: 40_000)
        report.record(id: "1", topic: "topic3", timestamp: 45_000, isAck: false)
        report.record(id: "1", topic: "topic3", timestamp: 90_000, isAck: false)   // sent again later
        report.record(id: "2", topic: "topic1", timestamp: 1_000, isAck: false)
        report.recordIncompleteReport(id: "2", timestamp: 40_000)                  // never completes
        report.recordIncompleteReport(id: "1", timestamp: 50_000)                  // a second report
        #expect(report.reportedThenComplete == [.init(id: "1", reportedMs: 40_000, completeMs: 45_000)])
    }
}

@Suite("Report plots")
struct ReportPlotTests {
    /// Counts `<circle class="mark">` and `<rect class="bar">` with Genetika's own XML parser
    /// (which also proves the document is well-formed XML).
    final class MarkCounter: XMLContentHandler {
        var marks = 0
        var bars = 0
        var root: String?
        override func startElement(_ name: XMLName, _ attributes: XMLAttributes) {
            if root == nil { root = name.string }
            if name.is("circle"), attributes.string("class") == "mark" { marks += 1 }
            if name.is("rect"), attributes.string("class") == "bar" { bars += 1 }
        }
    }

    func count(_ svg: String) throws -> MarkCounter {
        let counter = MarkCounter()
        let parser = try XMLPushParser(handler: counter, file: "plot.svg", part: "svg")
        try Array(svg.utf8).withUnsafeBytes { try parser.feed($0) }
        try parser.finish()
        return counter
    }

    @Test("timestamps.svg and delay.svg parse as XML and hold one mark per event")
    func marks() throws {
        var report = AckDelayReport(sourceTopics: ["topic1", "topic2", "topic3"])
        for id in 1...40 {
            for (index, topic) in ["topic1", "topic2", "topic3"].enumerated() where !(id > 35 && index == 2) {
                report.record(id: "\(id)", topic: topic, timestamp: 1_000 + Int64(id * 10 + index), isAck: false)
            }
            if id <= 35 { report.record(id: "\(id)", topic: "ack", timestamp: 1_000 + Int64(id * 10 + 7 + id % 5), isAck: true) }
        }
        let timestamps = try count(report.timestampsSVG(ackTopic: "ack"))
        #expect(timestamps.root == "svg")
        #expect(timestamps.marks == 40 + 40 + 35 + 35, "one mark per event on each topic and per ack")
        let delay = try count(report.delaySVG())
        #expect(delay.root == "svg")
        #expect(delay.marks == 35, "one mark per acked id")
        // The histogram's bars hold every acked id once: their counts (each bar's title) add up to 35.
        let svg = report.delaySVG()
        var barTotal = 0
        var rest = svg[...]
        while let bar = rest.range(of: "<rect class=\"bar\"") {
            rest = rest[bar.upperBound...]
            guard let open = rest.range(of: "<title>"), let close = rest.range(of: "</title>") else { break }
            barTotal += Int(rest[open.upperBound..<close.lowerBound]) ?? -1_000
            rest = rest[close.upperBound...]
        }
        #expect(delay.bars > 0 && barTotal == 35, "bars \(delay.bars), ids in them \(barTotal)")
        #expect(report.delaySVG().contains("ack delay (ms)"))
    }
}

@Suite("Report checks of acks against the topics")
struct AckCheckTests {
    let topics = ["topic1", "topic2", "topic3"]

    func report(claims: [String: Int64?], ackPartition: Int32 = 1) -> AckDelayReport {
        var report = AckDelayReport(sourceTopics: topics)
        for (index, topic) in topics.enumerated() {
            report.record(id: "9", topic: topic, timestamp: 100 + Int64(index), isAck: false, partition: 1)
        }
        report.record(id: "9", topic: "ack", timestamp: 200, isAck: true, partition: ackPartition, claims: claims)
        return report
    }

    @Test("an ack naming each topic's event of its id, on its partition, passes")
    func good() {
        let r = report(claims: ["topic1": 100, "topic2": 101, "topic3": 102])
        #expect(r.acksNotMatchingTopics.isEmpty && r.acksOnWrongPartition.isEmpty)
    }

    @Test("an ack sent before the acker saw topic3 (null there) is flagged, as is one naming an event that is not in the topic")
    func premature() {
        #expect(report(claims: ["topic1": 100, "topic2": 101, "topic3": nil]).acksNotMatchingTopics == ["9"])
        #expect(report(claims: ["topic1": 100, "topic2": 101, "topic3": 150]).acksNotMatchingTopics == ["9"])
        #expect(report(claims: [:]).acksNotMatchingTopics == ["9"], "an ack without its topics field")
    }

    @Test("an ack on another partition number than its id's events is flagged")
    func wrongPartition() {
        #expect(report(claims: ["topic1": 100, "topic2": 101, "topic3": 102], ackPartition: 0).acksOnWrongPartition == ["9"])
    }
}
