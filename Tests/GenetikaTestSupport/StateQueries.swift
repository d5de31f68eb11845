import GenetikaJSON
import GenetikaPipeline
import GenetikaStorage

/// Ids the acker state at `path` records as acked (read through a connection of its own).
package func ackedIds(inStateAt path: String) throws -> Int {
    let connection = try SQLiteConnection(path: path)
    defer { connection.close() }
    if case .integer(let n)? = try connection.query("SELECT count(*) FROM acker_acked").first?.first { return Int(n) }
    return 0
}

extension StageHealth {
    /// A stage's state as `/health` reports it (`running`, `finished`, …).
    package func state(of stage: String) -> String? {
        guard case .string(let state)? = (try? JSONParser.parse(response().body))?["stages"]?[stage] else { return nil }
        return state
    }
}
