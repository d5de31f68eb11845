import GenetikaSupport

/// Tracks the next offset a consuming stage will process per partition, to tell when it has
/// caught up with the producer (for `--exit-when-done`).
struct CatchUpTracker: Sendable {
    private(set) var next: [TopicPartition: Int64] = [:]

    mutating func assigned(_ starts: [TopicPartition: Int64]) {
        for (partition, offset) in starts { next[partition] = offset }
    }

    mutating func revoked(_ partitions: [TopicPartition]) {
        for partition in partitions { next[partition] = nil }
    }

    mutating func processed(_ offsets: [TopicPartition: Int64]) {
        for (partition, offset) in offsets { next[partition] = max(next[partition] ?? 0, offset) }
    }

    /// True when this stage owns partitions and has processed each one it owns up to its
    /// target. A partition owned by another member (scale-out) is that member's to finish;
    /// owning nothing (between a revoke and the next assignment) is never "caught up".
    func isCaughtUp(_ targets: [TopicPartition: Int64]) -> Bool {
        !next.isEmpty && targets.allSatisfy { partition, target in
            guard let position = next[partition] else { return true }
            return position >= target
        }
    }
}
