import GenetikaSupport
import GenetikaStorage

/// Fences the acker's acks when members share a PostgreSQL (`PartitionOwners`, group
/// `stages.acker.groupId`). Acks go to Kafka, outside any database transaction, so a check
/// alone cannot stop a member that is paused right after it: each check is also a lease.
///
/// - A member claims the source partitions it is assigned, and before it reads an ack
///   partition back or sends any ack waits until a lease its predecessor may hold has run out
///   (`leaseMs` + `deliveryTimeoutMs` + `marginMs` after its last confirmation; a predecessor that
///   gave the partitions up in a rebalance released them, so usually nothing is waited for).
/// - Before it sends a batch's acks it confirms its epochs (a refused partition's acks are
///   dropped, with the rest of that partition's batch), and sends only within `leaseMs` of the
///   confirmation; after a longer pause (a SIGSTOP, a stall) it confirms again first.
/// - Its producer gives an ack up `deliveryTimeoutMs` after it was handed over
///   (`message.timeout.ms`): the stage then reads its ack partitions back (some of the acks
///   may have landed) and redoes the batch, in place.
///
/// What is left: an ack handed over inside its lease but held in the network (a cut link
/// whose TCP retransmission lands after the predecessor's lease ran out); see
/// docs/architecture.md, "Cluster".
final class AckerFence {
    static let leaseMs: Int64 = 2_000
    static let deliveryTimeoutMs: Int64 = 5_000
    static let marginMs: Int64 = 1_000

    private let connection: PostgresConnection
    private let owners: PartitionOwners
    let group: String
    private(set) var epochs: [TopicPartition: Int64] = [:]
    private var confirmedAt: ContinuousClock.Instant?

    init(url: String, group: String) throws {
        connection = try PostgresConnection(url: url)
        owners = PartitionOwners(connection: connection)
        self.group = group
        try owners.prepare()
    }

    func close() { connection.close() }

    /// Claims `partitions`; returns how long to wait before acting on them.
    func claim(_ partitions: [TopicPartition]) throws -> Duration {
        let (claimed, waitMs) = try owners.claim(group: group, member: memberName, partitions: partitions,
                                                 leaseMs: Self.leaseMs + Self.deliveryTimeoutMs + Self.marginMs)
        epochs.merge(claimed) { $1 }
        confirmedAt = nil
        return .milliseconds(waitMs)
    }

    func revoked(_ partitions: [TopicPartition]) {
        let given = epochs.filter { partitions.contains($0.key) }
        for partition in partitions { epochs[partition] = nil }
        // Best effort: a release that fails only makes the next owner wait for the lease.
        try? owners.release(group: group, epochs: given)
        confirmedAt = nil
    }

    /// The partitions of `partitions` that another member claimed since this one did
    /// (confirming the lease of the others).
    func refused(_ partitions: Set<TopicPartition>) throws -> [TopicPartition] {
        let mine = epochs.filter { partitions.contains($0.key) }
        let start = ContinuousClock.now
        let refused = try owners.confirm(group: group, epochs: mine) + partitions.filter { epochs[$0] == nil }
        confirmedAt = start
        return refused.sorted()
    }

    /// Whether the last confirmation still covers sending now.
    var leaseHeld: Bool {
        guard let confirmedAt else { return false }
        return ContinuousClock.now - confirmedAt < .milliseconds(Self.leaseMs)
    }
}
