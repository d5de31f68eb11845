import Synchronization

/// Each stage's state as the supervisor last set it, readable from any thread (`/health`).
public final class StageHealth: Sendable {
    private let states = Mutex<[(String, Supervisor.StageState)]>([])

    public init(stages: [String] = []) {
        states.withLock { $0 = stages.map { ($0, .starting) } }
    }

    public func set(_ stage: String, _ state: Supervisor.StageState) {
        states.withLock { list in
            if let index = list.firstIndex(where: { $0.0 == stage }) { list[index].1 = state } else { list.append((stage, state)) }
        }
    }

    public var snapshot: [(stage: String, state: Supervisor.StageState)] {
        states.withLock { $0.map { ($0.0, $0.1) } }
    }

    /// Healthy when every stage is running, or finished its work (the producer).
    public var isHealthy: Bool {
        let list = snapshot
        return !list.isEmpty && list.allSatisfy { $0.state == .running || $0.state == .finished }
    }

    /// `/health`: 200 with the stages' states when healthy, 503 otherwise.
    public func response() -> HTTPEndpoint.Response {
        let stages = JSONObject(snapshot.map { ($0.stage, JSONValue.string($0.state.rawValue)) })
        let healthy = isHealthy
        let body = JSONWriter.serialize(.object(JSONObject([("status", .string(healthy ? "ok" : "unavailable")), ("stages", .object(stages))])))
        return HTTPEndpoint.Response(status: healthy ? 200 : 503, contentType: "application/json", body: body + [10])
    }
}
