/// A batch's rows written by `COPY` straight into their keyed table when none of their ids is
/// stored yet, and otherwise by `COPY` into a staging table and one upsert from it — the same
/// rows either way. The direct `COPY` runs under a savepoint: if the server refuses it (an id
/// already stored, or any row it would refuse anyway), the savepoint is rolled back and the
/// staged path runs, so its outcome — rows, or the error that fails the batch — is exactly the
/// staged path's. The upsert's conflict check is what the direct path saves (docs/benchmarks.md,
/// "Tuning decisions").
///
/// After a refusal the direct path sits out 1, 2, 4 … up to 256 batches of its table, so a
/// re-run over stored ids pays a refused `COPY` about once per 256 batches.
struct DirectCopy {
    /// `COPY table (columns) FROM STDIN`, straight into the keyed table.
    let directSQL: String
    /// `COPY staging (columns) FROM STDIN` into the session's staging table.
    let stagedSQL: String
    /// `INSERT INTO table … SELECT … FROM staging ON CONFLICT …`.
    let upsertSQL: String
    /// Batches left before the direct path is tried again.
    private var skip = 0
    /// How many batches it sits out after its next refusal.
    private var backoff = 1
    /// Batches written each way (tests check that both paths ran).
    private(set) var directBatches = 0
    private(set) var stagedBatches = 0
    static let maxBackoff = 256

    init(directSQL: String, stagedSQL: String, upsertSQL: String) {
        self.directSQL = directSQL
        self.stagedSQL = stagedSQL
        self.upsertSQL = upsertSQL
    }

    /// Writes one batch (`rows` in `COPY` text format, in the column order both `COPY`s name)
    /// inside the caller's open transaction: straight in, or staged after a refusal.
    mutating func write(_ rows: [UInt8], on connection: PostgresConnection) throws {
        if skip > 0 {
            skip -= 1
        } else {
            try connection.execute("SAVEPOINT genetika_direct")
            do {
                try connection.copy(directSQL, data: rows)
                try connection.execute("RELEASE SAVEPOINT genetika_direct")
                directBatches += 1
                backoff = 1
                return
            } catch let refused as PostgresError {
                // A lost connection fails here too, with the error that lost it.
                do { try connection.execute("ROLLBACK TO SAVEPOINT genetika_direct") } catch { throw refused }
                skip = backoff
                backoff = min(backoff * 2, Self.maxBackoff)
            }
        }
        try writeStaged(rows, on: connection)
    }

    /// Writes one batch through the staging table and the upsert, without trying the direct path.
    mutating func writeStaged(_ rows: [UInt8], on connection: PostgresConnection) throws {
        try connection.copy(stagedSQL, data: rows)
        try connection.execute(upsertSQL)
        stagedBatches += 1
    }
}
