import GenetikaJSON
import GenetikaSupport
/// Summary statistics of a list of numbers (percentiles interpolated linearly, as numpy's
/// default, so figures compare with the Python original's).
package struct DelayStatistics: Sendable, Equatable {
    package var count: Int
    package var min: Double
    package var p50: Double
    package var p90: Double
    package var p99: Double
    package var max: Double
    package var mean: Double

    package init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        count = sorted.count
        min = sorted[0]
        max = sorted[sorted.count - 1]
        mean = sorted.reduce(0, +) / Double(sorted.count)
        p50 = Self.percentile(sorted, 50)
        p90 = Self.percentile(sorted, 90)
        p99 = Self.percentile(sorted, 99)
    }

    /// Linear interpolation between closest ranks (numpy's `percentile` default).
    package static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard sorted.count > 1 else { return sorted.first ?? .nan }
        let rank = p / 100 * Double(sorted.count - 1)
        let lower = Int(rank.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - Double(lower))
    }

    package var json: JSONValue {
        .object(JSONObject([
            ("count", .int(Int64(count))), ("min", .double(min)), ("p50", .double(p50)), ("p90", .double(p90)),
            ("p99", .double(p99)), ("max", .double(max)), ("mean", .double(mean)),
        ]))
    }
}

/// Events matched by id across the source topics and the ack topic, as the report reads them.
package struct AckDelayReport: Sendable {
    /// One id's arrivals: the first timestamp on each source topic, and its acks' timestamps.
    package struct Arrivals: Sendable, Equatable {
        package var topics: [String: Int64] = [:]
        package var acks: [Int64] = []
        /// Every timestamp of the id's events, per source topic.
        var eventTimes: [String: Set<Int64>] = [:]
        /// The partitions the id's source events are on, and those its acks are on.
        package var partitions: Set<Int32> = []
        var ackPartitions: [Int32] = []
        /// Each ack's claim, per source topic, of the event it saw there (nil: none).
        var ackClaims: [[String: Int64?]] = []
    }

    package let sourceTopics: [String]
    package private(set) var ids: [String: Arrivals] = [:]
    private(set) var eventCounts: [String: Int] = [:]
    private(set) var ackCount = 0
    private(set) var firstEventTime: Int64?
    /// Ids the acker reported incomplete (keys of the incomplete topic).
    private(set) var reportedIncomplete: Set<String> = []
    /// When each id was first reported incomplete (the report's timestamp), where known.
    private(set) var reportTimes: [String: Int64] = [:]

    package init(sourceTopics: [String]) {
        self.sourceTopics = sourceTopics
        for topic in sourceTopics { eventCounts[topic] = 0 }
    }

    /// Records an event of a source topic (`isAck` false) or an ack. `partition` and, for an
    /// ack, `claims` (its `topics` field: per source topic the timestamp of the event the acker
    /// saw, nil where it saw none) let the report check acks against the topics themselves.
    package mutating func record(id: String, topic: String, timestamp: Int64, isAck: Bool, partition: Int32? = nil,
                                claims: [String: Int64?]? = nil) {
        if isAck {
            ids[id, default: Arrivals()].acks.append(timestamp)
            if let partition { ids[id, default: Arrivals()].ackPartitions.append(partition) }
            if let claims { ids[id, default: Arrivals()].ackClaims.append(claims) }
            ackCount += 1
        } else {
            if let partition { ids[id, default: Arrivals()].partitions.insert(partition) }
            ids[id, default: Arrivals()].eventTimes[topic, default: []].insert(timestamp)
            eventCounts[topic, default: 0] += 1
            let previous = ids[id]?.topics[topic]
            ids[id, default: Arrivals()].topics[topic] = previous.map { Swift.min($0, timestamp) } ?? timestamp
            firstEventTime = firstEventTime.map { Swift.min($0, timestamp) } ?? timestamp
        }
    }

    /// An id the acker reported incomplete (a message on the incomplete topic).
    package mutating func recordIncompleteReport(id: String, timestamp: Int64? = nil) {
        reportedIncomplete.insert(id)
        if let timestamp { reportTimes[id] = reportTimes[id].map { Swift.min($0, timestamp) } ?? timestamp }
    }

    /// An id the acker reported incomplete that reached every source topic after all:
    /// legitimate when its last topic came late (`completeMs`, the creation time of the first
    /// event of the topic it reached last, after `reportedMs` − the acker's
    /// `incompleteAfterSeconds`), a wrong report when all its topics were there long before.
    package struct ReportedThenComplete: Sendable, Equatable {
        package var id: String
        package var reportedMs: Int64
        package var completeMs: Int64
    }

    /// Ids reported incomplete (with a known report time) that have an event on every source topic, by id.
    package var reportedThenComplete: [ReportedThenComplete] {
        reportTimes.compactMap { id, reported -> ReportedThenComplete? in
            guard let arrivals = ids[id], arrivals.topics.count == sourceTopics.count,
                  let complete = arrivals.topics.values.max() else { return nil }
            return ReportedThenComplete(id: id, reportedMs: reported, completeMs: complete)
        }.sorted { idOrder($0.id, $1.id) }
    }

    /// One id that reached some source topics but not all, and has no ack.
    package struct IncompleteId: Sendable, Equatable {
        package var id: String
        package var seen: [String]
        package var missing: [String]
        /// Milliseconds from its earliest event until `now`.
        package var ageMs: Int64
        /// The acker reported it (its age passed `stages.acker.incompleteAfterSeconds`).
        package var reported: Bool
    }

    /// Ids without an ack that reached some but not all source topics, oldest first.
    package func incomplete(now: Int64) -> [IncompleteId] {
        ids.compactMap { id, arrivals -> (Int64, IncompleteId)? in
            guard arrivals.acks.isEmpty, !arrivals.topics.isEmpty, arrivals.topics.count < sourceTopics.count,
                  let first = arrivals.topics.values.min() else { return nil }
            let seen = sourceTopics.filter { arrivals.topics[$0] != nil }
            return (first, IncompleteId(id: id, seen: seen, missing: sourceTopics.filter { arrivals.topics[$0] == nil },
                                        ageMs: now - first, reported: reportedIncomplete.contains(id)))
        }.sorted { ($0.0, $0.1.id) < ($1.0, $1.1.id) }.map(\.1)
    }

    /// Ack delay per acked id with all topics present: first ack − latest topic time, in ms.
    package var delays: [(id: String, latestEvent: Int64, ack: Int64, delay: Int64)] {
        ids.compactMap { id, arrivals in
            guard let ack = arrivals.acks.min(), arrivals.topics.count == sourceTopics.count,
                  let latest = arrivals.topics.values.max() else { return nil }
            return (id, latest, ack, ack - latest)
        }.sorted { ($0.latestEvent, $0.id) < ($1.latestEvent, $1.id) }
    }

    package var statistics: DelayStatistics? { DelayStatistics(delays.map { Double($0.delay) }) }

    /// Ids missing from a source topic, by topic.
    package var missingFromTopic: [String: [String]] {
        var missing: [String: [String]] = [:]
        for topic in sourceTopics {
            let absent = ids.filter { $0.value.topics[topic] == nil }.map(\.key).sorted(by: idOrder)
            if !absent.isEmpty { missing[topic] = absent }
        }
        return missing
    }

    /// Ids that reached every source topic but have no ack.
    package var missingAck: [String] {
        ids.filter { $0.value.topics.count == sourceTopics.count && $0.value.acks.isEmpty }.map(\.key).sorted(by: idOrder)
    }

    /// Ids with more than one ack.
    package var duplicateAcks: [String] {
        ids.filter { $0.value.acks.count > 1 }.map(\.key).sorted(by: idOrder)
    }

    /// Acks stamped before the latest of their id's topic events (should never happen).
    var acksBeforeLatestEvent: [String] {
        delays.filter { $0.delay < 0 }.map(\.id)
    }

    /// Acks whose claims do not match the topics: an ack must name, for every source topic,
    /// the timestamp of an event of its id that really is in that topic (an ack sent before
    /// the acker saw all three names none for the missing one).
    package var acksNotMatchingTopics: [String] {
        ids.filter { _, arrivals in
            arrivals.ackClaims.contains { claims in
                sourceTopics.contains { topic in
                    guard case .some(.some(let claimed)) = claims[topic] else { return true }
                    return arrivals.eventTimes[topic]?.contains(claimed) != true
                }
            }
        }.map(\.key).sorted(by: idOrder)
    }

    /// Acks on another partition number than their id's source events (scale-out relies on it),
    /// and ids whose source events are on several partition numbers.
    package var acksOnWrongPartition: [String] {
        ids.filter { _, arrivals in
            arrivals.partitions.count > 1 || arrivals.ackPartitions.contains { !arrivals.partitions.contains($0) }
        }.map(\.key).sorted(by: idOrder)
    }

    package var summary: JSONValue { summary(now: nowMilliseconds()) }

    /// `now`: the time incomplete ids' ages are measured to.
    package func summary(now: Int64) -> JSONValue {
        var object = JSONObject()
        object["events"] = .object(JSONObject(sourceTopics.map { ($0, JSONValue.int(Int64(eventCounts[$0] ?? 0))) }))
        object["ids"] = .int(Int64(ids.count))
        object["acks"] = .int(Int64(ackCount))
        object["acked_ids"] = .int(Int64(ids.values.filter { !$0.acks.isEmpty }.count))
        object["delay_ms"] = statistics?.json ?? .null
        object["missing_from_topic"] = .object(JSONObject(missingFromTopic.sorted { $0.key < $1.key }.map { ($0.key, .array($0.value.map(JSONValue.string))) }))
        object["missing_ack"] = .array(missingAck.map(JSONValue.string))
        object["duplicate_acks"] = .array(duplicateAcks.map(JSONValue.string))
        object["acks_before_latest_event"] = .array(acksBeforeLatestEvent.map(JSONValue.string))
        object["acks_not_matching_topics"] = .array(acksNotMatchingTopics.map(JSONValue.string))
        object["acks_on_wrong_partition"] = .array(acksOnWrongPartition.map(JSONValue.string))
        let incomplete = incomplete(now: now)
        object["incomplete"] = .object(JSONObject([
            ("count", .int(Int64(incomplete.count))),
            ("reported", .int(Int64(incomplete.filter(\.reported).count))),
            ("ids", .array(incomplete.map { entry in
                .object(JSONObject([
                    ("id", .string(entry.id)), ("seen", .array(entry.seen.map(JSONValue.string))),
                    ("missing", .array(entry.missing.map(JSONValue.string))), ("age_ms", .int(entry.ageMs)),
                    ("reported", .bool(entry.reported)),
                ]))
            })),
        ]))
        object["reported_incomplete_then_complete"] = .array(reportedThenComplete.map { entry in
            .object(JSONObject([("id", .string(entry.id)), ("reported_ms", .int(entry.reportedMs)),
                                ("complete_ms", .int(entry.completeMs))]))
        })
        return .object(object)
    }
}

/// Numeric ids in numeric order, others after them in text order.
func idOrder(_ a: String, _ b: String) -> Bool {
    switch (Int64(a), Int64(b)) {
    case let (x?, y?): x < y
    case (_?, nil): true
    case (nil, _?): false
    default: a < b
    }
}

extension AckDelayReport {
    static let palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]

    /// `timestamps.svg`: each event's time, relative to the first event, against its id, one
    /// series per source topic plus the acks (one mark per event).
    package func timestampsSVG(ackTopic: String) -> String {
        let origin = Double(firstEventTime ?? 0)
        let ordered = ids.keys.sorted(by: idOrder)
        let position = Dictionary(uniqueKeysWithValues: ordered.enumerated().map { ($1, Double($0 + 1)) })
        func x(_ id: String) -> Double { Double(id) ?? position[id] ?? 0 }
        var series: [SVGScatterPlot.Series] = sourceTopics.enumerated().map { index, topic in
            SVGScatterPlot.Series(name: topic, color: Self.palette[index % Self.palette.count],
                                  points: ordered.compactMap { id in ids[id]?.topics[topic].map { (x(id), Double($0) - origin) } })
        }
        series.append(SVGScatterPlot.Series(name: ackTopic, color: Self.palette[sourceTopics.count % Self.palette.count],
                                            points: ordered.compactMap { id in ids[id]?.acks.min().map { (x(id), Double($0) - origin) } }))
        return SVGScatterPlot(title: "Event timestamps by id (relative to the first event)", xLabel: "event id",
                              yLabel: "time since first event (ms)", series: series).render()
    }

    /// `delay.svg`: ack delay per acked id (one mark each), and the delay distribution.
    package func delaySVG() -> String {
        let delays = self.delays
        let points = delays.map { (Double($0.id) ?? 0, Double($0.delay)) }
        var plot = SVGScatterPlot(title: "Ack delay per event (ack time − latest topic time)", xLabel: "event id",
                                  yLabel: "ack delay (ms)",
                                  series: [SVGScatterPlot.Series(name: "ack delay", color: Self.palette[0], points: points)])
        plot.histogram = SVGHistogram(title: "Distribution of the ack delay", xLabel: "ack delay (ms)", values: delays.map { Double($0.delay) })
        return plot.render()
    }
}
