import Foundation

extension AckDelayReport {
    /// The report as `genetika report` prints it: counts, the delay's statistics, then each kind
    /// of problem with up to 20 ids (`reportsRead`: whether the incomplete topic could be read).
    package func lines(ackTopic: String, incompleteTopic: String, reportsRead: Bool, now: Int64) -> [String] {
        var out: [String] = []
        out.append("events: " + sourceTopics.map { "\($0) \(eventCounts[$0] ?? 0)" }.joined(separator: ", ") + ", \(ackTopic) \(ackCount)")
        out.append("ids: \(ids.count)")
        if let s = statistics {
            out.append(String(format: "ack delay (ms): count %d  min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  mean %.2f",
                         s.count, s.min, s.p50, s.p90, s.p99, s.max, s.mean))
        } else {
            out.append("ack delay: no acked id with all its events")
        }
        if !acksNotMatchingTopics.isEmpty {
            out.append("acks that do not match their id's events in the topics: \(acksNotMatchingTopics.prefix(20).joined(separator: ", "))")
        }
        if !acksOnWrongPartition.isEmpty {
            out.append("acks not on their id's partition number: \(acksOnWrongPartition.prefix(20).joined(separator: ", "))")
        }
        for (topic, missing) in missingFromTopic.sorted(by: { $0.key < $1.key }) {
            out.append("missing from \(topic): \(missing.count) id(s): \(missing.prefix(20).joined(separator: ", "))\(missing.count > 20 ? ", …" : "")")
        }
        if !missingAck.isEmpty {
            out.append("missing ack: \(missingAck.count) id(s): \(missingAck.prefix(20).joined(separator: ", "))")
        }
        let incomplete = self.incomplete(now: now)
        if !incomplete.isEmpty {
            let reported = incomplete.filter(\.reported).count
            out.append("incomplete: \(incomplete.count) id(s) reached some topics but not all, \(reportsRead ? "\(reported) of them reported by the acker" : "no \(incompleteTopic) topic to say which the acker reported"):")
            for entry in incomplete.prefix(20) {
                out.append("  \(entry.id): seen \(entry.seen.joined(separator: ", ")); missing \(entry.missing.joined(separator: ", ")); age \(entry.ageMs / 1000) s\(entry.reported ? "; reported" : "")")
            }
            if incomplete.count > 20 { out.append("  …") }
        }
        if !duplicateAcks.isEmpty {
            out.append("duplicate acks: \(duplicateAcks.count) id(s): \(duplicateAcks.prefix(20).joined(separator: ", "))")
        }
        return out
    }
}
