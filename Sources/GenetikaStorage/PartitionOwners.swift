import GenetikaSupport

/// Writes refused because another member claimed the partitions since this one did.
package struct FencedPartitions: Error, Sendable, CustomStringConvertible {
    package var partitions: [TopicPartition]

    package init(partitions: [TopicPartition]) {
        self.partitions = partitions.sorted()
    }

    package var description: String {
        "write refused: \(partitions.map(\.description).joined(separator: ", ")) claimed by another member since this one was assigned them"
    }
}

/// Fencing tokens in the shared PostgreSQL: for each consumer group and partition, the epoch
/// of its latest claim. A member claims the partitions it is assigned (the epoch goes up by
/// one) before it reads their stored offsets, and every write it makes for a partition checks,
/// inside the write's own transaction and under a share lock on the partition's row, that the
/// epoch is still the one it claimed. A member that was paused or cut off while the group gave
/// its partitions to another (a zombie) is therefore refused, whatever it holds in hand; and a
/// claim waits for a write in progress to commit, so the new owner reads the offsets it left.
///
/// For writes outside the database (the acker's acks to Kafka) the row also carries a lease:
/// `confirmed_at`, set when a member confirms its epoch just before such a write, and cleared
/// when it gives the partition up. A new owner waits until a lease its predecessor may still
/// hold has run out (see `AckerFence`).
///
/// ```sql
/// genetika_owners (consumer_group, topic, partition, epoch, member, claimed_at, confirmed_at)
/// ```
package final class PartitionOwners {
    let connection: PostgresConnection

    package init(connection: PostgresConnection) {
        self.connection = connection
    }

    static let createSQL = """
        CREATE TABLE IF NOT EXISTS genetika_owners (
            consumer_group TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
            epoch BIGINT NOT NULL, member TEXT NOT NULL, claimed_at TIMESTAMPTZ NOT NULL,
            confirmed_at TIMESTAMPTZ, PRIMARY KEY (consumer_group, topic, partition))
        """

    package func prepare() throws {
        try connection.transaction {
            try connection.lockSchema()
            try connection.execute(Self.createSQL)
        }
    }

    /// `partitions` as two array parameters (topics, partition numbers), sorted, so that rows are
    /// always locked in one order.
    private static func arrays(_ partitions: some Sequence<TopicPartition>) -> [String] {
        let sorted = partitions.sorted()
        return ["{" + sorted.map(\.topic).joined(separator: ",") + "}",
                "{" + sorted.map { String($0.partition) }.joined(separator: ",") + "}"]
    }

    private static let selected = "(topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))"

    /// Claims `partitions` for `member`: each one's epoch goes up by one. Returns the new epochs,
    /// and the milliseconds until the leases that earlier owners may still hold have run out
    /// (their last confirmation plus `leaseMs`; 0 when none is held).
    package func claim(group: String, member: String, partitions: [TopicPartition], leaseMs: Int64 = 0)
        throws -> (epochs: [TopicPartition: Int64], waitMs: Int64) {
        guard !partitions.isEmpty else { return ([:], 0) }
        return try connection.transaction {
            let parameters = [group] + Self.arrays(partitions)
            let held = try connection.query("""
                SELECT COALESCE(MAX(remaining), -1e18) FROM (
                    SELECT EXTRACT(EPOCH FROM (confirmed_at - clock_timestamp())) * 1000 AS remaining
                    FROM genetika_owners WHERE consumer_group = $1 AND \(Self.selected) FOR UPDATE) AS locked
                """, parameters)
            let rows = try connection.query("""
                INSERT INTO genetika_owners (consumer_group, topic, partition, epoch, member, claimed_at)
                SELECT $1, t, p, 1, $4, clock_timestamp() FROM unnest($2::text[], $3::int[]) AS u(t, p)
                ON CONFLICT (consumer_group, topic, partition) DO UPDATE
                SET epoch = genetika_owners.epoch + 1, member = EXCLUDED.member, claimed_at = EXCLUDED.claimed_at, confirmed_at = NULL
                RETURNING topic, partition, epoch
                """, parameters + [member])
            let remaining = held.first?.first.flatMap { $0.flatMap { Double($0) } } ?? -1e18
            return (Self.epochs(rows), max(0, Int64(remaining) + leaseMs))
        }
    }

    private static func epochs(_ rows: [[String?]]) -> [TopicPartition: Int64] {
        var epochs: [TopicPartition: Int64] = [:]
        for row in rows {
            guard let topic = row[0], let partition = row[1].flatMap({ Int32($0) }), let epoch = row[2].flatMap({ Int64($0) }) else { continue }
            epochs[TopicPartition(topic, partition)] = epoch
        }
        return epochs
    }

    /// Inside the caller's transaction: share-locks the rows of `epochs`' partitions until it
    /// ends and returns those whose epoch is no longer the given one (claimed by another since).
    package func fenced(group: String, epochs: [TopicPartition: Int64]) throws -> [TopicPartition] {
        guard !epochs.isEmpty else { return [] }
        let rows = try connection.query("""
            SELECT topic, partition, epoch FROM genetika_owners WHERE consumer_group = $1 AND \(Self.selected)
            ORDER BY topic, partition FOR SHARE
            """, [group] + Self.arrays(epochs.keys))
        let current = Self.epochs(rows)
        return epochs.filter { current[$0.key] != $0.value }.map(\.key).sorted()
    }

    /// Confirms the lease of the partitions whose epoch is still the given one; returns the others.
    package func confirm(group: String, epochs: [TopicPartition: Int64]) throws -> [TopicPartition] {
        guard !epochs.isEmpty else { return [] }
        let sorted = epochs.sorted { $0.key < $1.key }
        let rows = try connection.query("""
            UPDATE genetika_owners SET confirmed_at = clock_timestamp()
            FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, e)
            WHERE consumer_group = $1 AND topic = u.t AND partition = u.p AND epoch = u.e
            RETURNING topic, partition, epoch
            """, [group] + Self.arrays(epochs.keys) + ["{" + sorted.map { String($0.value) }.joined(separator: ",") + "}"])
        let confirmed = Self.epochs(rows)
        return epochs.filter { confirmed[$0.key] != $0.value }.map(\.key).sorted()
    }

    /// Gives up the leases of `epochs`' partitions (still held at those epochs): a new owner
    /// need not wait for them.
    package func release(group: String, epochs: [TopicPartition: Int64]) throws {
        guard !epochs.isEmpty else { return }
        let sorted = epochs.sorted { $0.key < $1.key }
        try connection.query("""
            UPDATE genetika_owners SET confirmed_at = NULL
            FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, e)
            WHERE consumer_group = $1 AND topic = u.t AND partition = u.p AND epoch = u.e
            """, [group] + Self.arrays(epochs.keys) + ["{" + sorted.map { String($0.value) }.joined(separator: ",") + "}"])
    }
}
