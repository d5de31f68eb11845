/// Spaces a source's events evenly at a fixed rate: event n is due n / rate seconds after
/// the first; the sender sleeps only when it is ahead of that schedule.
struct Pacer {
    let ratePerSecond: Double
    let start = ContinuousClock.now

    func wait(afterEvent count: Int) async throws {
        let due = start + .seconds(Double(count) / ratePerSecond)
        if due > ContinuousClock.now { try await Task.sleep(until: due, clock: .continuous) }
    }
}
