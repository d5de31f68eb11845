import Synchronization
import GenetikaJSON
import GenetikaKafka

/// What `/health` says: each stage's state as the supervisor last set it, whether a running
/// stage makes progress, and whether the Kafka clients reach a broker. Readable from any
/// thread. A stage is stuck when it has lag but committed nothing for `stuckAfter`, or when
/// one step (a read-back) has taken longer than that; a client whose brokers are all down
/// for more than `brokerGrace` makes the run unhealthy until a broker answers again.
package final class StageHealth: Sendable, KafkaConnectivityObserver {
    struct Entry {
        var stage: String
        var state: Supervisor.StageState
        var lag: Int64 = 0
        var lastProgress: ContinuousClock.Instant
        var busy: (what: String, since: ContinuousClock.Instant)?
        var note: String?
        var lastError: String?
    }

    private let entries = Mutex<[Entry]>([])
    private let brokersDown = Mutex<[String: (since: ContinuousClock.Instant, reason: String)]>([:])
    let stuckAfter: Duration
    let brokerGrace: Duration
    /// The clock every age is measured on; tests pass one they move by hand.
    private let now: @Sendable () -> ContinuousClock.Instant

    package init(stages: [String] = [], stuckAfter: Duration = .seconds(60), brokerGrace: Duration = .seconds(2),
                now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.stuckAfter = stuckAfter
        self.brokerGrace = brokerGrace
        self.now = now
        let started = now()
        entries.withLock { $0 = stages.map { Entry(stage: $0, state: .starting, lastProgress: started) } }
    }

    private func update(_ stage: String, _ body: (inout Entry) -> Void) {
        entries.withLock { list in
            if let index = list.firstIndex(where: { $0.stage == stage }) {
                body(&list[index])
            } else {
                var entry = Entry(stage: stage, state: .starting, lastProgress: now())
                body(&entry)
                list.append(entry)
            }
        }
    }

    package func set(_ stage: String, _ state: Supervisor.StageState) {
        update(stage) { entry in
            if state == .running && entry.state != .running {
                entry.lastProgress = now()
                entry.busy = nil
            }
            entry.state = state
        }
    }

    /// The stage committed work; `lag` is what it still has to read (events).
    func progressed(_ stage: String, lag: Int64? = nil) {
        update(stage) { entry in
            entry.lastProgress = now()
            if let lag { entry.lag = lag }
        }
    }

    /// The stage's current lag (events it has still to read on the partitions it owns).
    func lag(_ stage: String, _ lag: Int64) {
        update(stage) { $0.lag = lag }
    }

    /// The stage is in one long step (`what`), until `idle`.
    func busy(_ stage: String, _ what: String) {
        let at = now()
        update(stage) { $0.busy = (what, at) }
    }

    func idle(_ stage: String) {
        update(stage) { $0.busy = nil }
    }

    /// Something the operator should know about, shown with the stage (the latest only).
    package func note(_ stage: String, _ text: String) {
        update(stage) { $0.note = text }
    }

    /// The error a stage last failed with.
    package func failed(_ stage: String, _ error: String) {
        update(stage) { $0.lastError = error }
    }

    package func brokersDown(client: String, reason: String) {
        let at = now()
        brokersDown.withLock { map in
            if map[client] == nil { map[client] = (at, reason) }
        }
    }

    package func brokersUp(client: String) {
        _ = brokersDown.withLock { $0.removeValue(forKey: client) }
    }

    /// Why the run is not healthy, one sentence each (empty when it is).
    package var problems: [String] {
        var problems = list.isEmpty ? ["no stages"] : []
        problems += entries.withLock { $0 }.compactMap(problem)
        let now = self.now()
        for (client, down) in brokersDown.withLock({ $0 }).sorted(by: { $0.key < $1.key }) where now - down.since > brokerGrace {
            problems.append("Kafka client \(client) has reached no broker for \(Self.seconds(now - down.since)) s: \(down.reason)")
        }
        return problems
    }

    private var list: [Entry] { entries.withLock { $0 } }

    /// What is wrong with one stage, if anything.
    private func problem(_ entry: Entry) -> String? {
        let now = self.now()
        switch entry.state {
        case .running:
            if let busy = entry.busy, now - busy.since > stuckAfter {
                return "stage \(entry.stage) is stuck: \(busy.what) for \(Self.seconds(now - busy.since)) s"
            } else if entry.lag > 0, now - entry.lastProgress > stuckAfter {
                return "stage \(entry.stage) is stuck: no progress for \(Self.seconds(now - entry.lastProgress)) s with a lag of \(entry.lag) events"
            }
            return nil
        case .finished:
            return nil
        default:
            return "stage \(entry.stage) is \(entry.state.rawValue)" + (entry.lastError.map { ": \($0)" } ?? "")
        }
    }

    /// Healthy when every stage is running (and not stuck) or has finished its work (the
    /// producer), and the Kafka clients reach their brokers.
    var isHealthy: Bool { problems.isEmpty }

    /// Whether one stage is healthy (for the `genetika_stage_healthy` gauge).
    func isHealthy(_ stage: String) -> Bool {
        !list.contains { $0.stage == stage && problem($0) != nil }
    }

    /// `/health`: 200 when healthy, 503 otherwise; the stages' states, the problems, and per
    /// stage its lag, seconds since its last progress and its latest note.
    package func response() -> HTTPEndpoint.Response {
        let now = self.now()
        let list = entries.withLock { $0 }
        let problems = problems
        let stages = JSONObject(list.map { ($0.stage, JSONValue.string($0.state.rawValue)) })
        let details = JSONObject(list.map { entry in
            var fields: [(String, JSONValue)] = [
                ("lag", .int(entry.lag)), ("seconds_since_progress", .int(Int64(Self.seconds(now - entry.lastProgress)))),
            ]
            if let busy = entry.busy { fields.append(("busy", .string("\(busy.what) for \(Self.seconds(now - busy.since)) s"))) }
            if let note = entry.note { fields.append(("note", .string(note))) }
            if let error = entry.lastError { fields.append(("last_error", .string(error))) }
            return (entry.stage, JSONValue.object(JSONObject(fields)))
        })
        let healthy = problems.isEmpty
        let body = JSONWriter.serialize(.object(JSONObject([
            ("status", .string(healthy ? "ok" : "unavailable")), ("stages", .object(stages)),
            ("problems", .array(problems.map(JSONValue.string))), ("details", .object(details)),
        ])))
        return HTTPEndpoint.Response(status: healthy ? 200 : 503, contentType: "application/json", body: body + [10])
    }

    private static func seconds(_ duration: Duration) -> Int { Int(duration.components.seconds) }
}
