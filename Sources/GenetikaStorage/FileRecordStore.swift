import GenetikaSupport

/// Where an inbox file stands.
package enum FileStatus: String, Sendable, CaseIterable {
    /// Seen complete and recorded; waiting for the files before it.
    case queued
    /// Its rows are being handed to Kafka; after a crash it is sent again.
    case sending
    /// Every row has a delivery report (or was dead-lettered); moved to `done/`.
    case done
    /// It could not be read; moved to `failed/` with the reason beside it.
    case failed
}

/// One inbox file's record.
package struct FileRecord: Sendable, Equatable {
    package var id: Int64
    /// The source's topic (a source is named by its topic in records).
    package var source: String
    /// Where the file was taken from, and where it is now (after the move).
    package var path: String
    package var movedTo: String?
    package var size: Int64
    package var sha256: String
    package var status: FileStatus
    package var rowsSent: Int
    package var rowsDeadLettered: Int
    package var queuedMs: Int64
    package var startedMs: Int64?
    package var finishedMs: Int64?
    /// Why it failed, or a remark (a duplicate not sent again).
    package var note: String?
}

/// The per-file records of the inbox sources (`files.db` in the state directory): one row per
/// file taken, with its content hash, so that a file whose content was already sent is not
/// sent again and a file interrupted while `sending` is sent again after a crash.
package final class FileRecordStore {
    let connection: SQLiteConnection
    private static let columns = "id, source, path, moved_to, size, sha256, status, rows_sent, rows_dead_lettered, queued_ms, started_ms, finished_ms, note"

    package init(path: String) throws {
        connection = try SQLiteConnection(path: path, durability: .full)
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS genetika_files (
                id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, path TEXT NOT NULL, moved_to TEXT,
                size INTEGER NOT NULL, sha256 TEXT NOT NULL, status TEXT NOT NULL,
                rows_sent INTEGER NOT NULL DEFAULT 0, rows_dead_lettered INTEGER NOT NULL DEFAULT 0,
                queued_ms INTEGER NOT NULL, started_ms INTEGER, finished_ms INTEGER, note TEXT);
            CREATE INDEX IF NOT EXISTS genetika_files_content ON genetika_files (source, sha256);
            """)
    }

    package func close() { connection.close() }

    /// Every record, newest first (`limit`: at most that many).
    package func all(limit: Int? = nil) throws -> [FileRecord] {
        try records("SELECT \(Self.columns) FROM genetika_files ORDER BY id DESC" + (limit.map { " LIMIT \($0)" } ?? ""), [])
    }

    /// The latest record of content `sha256` from `source`, if any.
    package func latest(source: String, sha256: String) throws -> FileRecord? {
        try records("SELECT \(Self.columns) FROM genetika_files WHERE source = ? AND sha256 = ? ORDER BY id DESC LIMIT 1",
                    [.text(source), .text(sha256)]).first
    }

    /// The first `done` record of content `sha256` from `source`, if any.
    package func done(source: String, sha256: String) throws -> FileRecord? {
        try records("SELECT \(Self.columns) FROM genetika_files WHERE source = ? AND sha256 = ? AND status = 'done' AND note IS NULL ORDER BY id LIMIT 1",
                    [.text(source), .text(sha256)]).first
    }

    /// Records a file just taken; returns its record.
    package func add(source: String, path: String, size: Int64, sha256: String, status: FileStatus, note: String? = nil) throws -> FileRecord {
        let now = nowMilliseconds()
        _ = try connection.run("INSERT INTO genetika_files (source, path, size, sha256, status, queued_ms, note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [.text(source), .text(path), .integer(size), .text(sha256), .text(status.rawValue), .integer(now),
                                note.map(SQLValue.text) ?? .null])
        let id = try connection.query("SELECT last_insert_rowid()").first?.first
        guard case .integer(let rowid)? = id else { throw SQLiteError(code: 0, message: "no row id", context: "file record") }
        return FileRecord(id: rowid, source: source, path: path, movedTo: nil, size: size, sha256: sha256, status: status,
                          rowsSent: 0, rowsDeadLettered: 0, queuedMs: now, startedMs: nil, finishedMs: nil, note: note)
    }

    /// Moves record `id` to `status`, with the counts so far and (for `done`/`failed`) where the file went.
    package func update(_ id: Int64, status: FileStatus, rowsSent: Int? = nil, rowsDeadLettered: Int? = nil,
                       movedTo: String? = nil, note: String? = nil) throws {
        let now = nowMilliseconds()
        _ = try connection.run("""
            UPDATE genetika_files SET status = ?, rows_sent = coalesce(?, rows_sent), rows_dead_lettered = coalesce(?, rows_dead_lettered),
                moved_to = coalesce(?, moved_to), note = coalesce(?, note),
                started_ms = CASE WHEN ? = 'sending' THEN ? ELSE started_ms END,
                finished_ms = CASE WHEN ? IN ('done', 'failed') THEN ? ELSE finished_ms END
            WHERE id = ?
            """, [.text(status.rawValue), rowsSent.map { .integer(Int64($0)) } ?? .null,
                  rowsDeadLettered.map { .integer(Int64($0)) } ?? .null, movedTo.map(SQLValue.text) ?? .null,
                  note.map(SQLValue.text) ?? .null, .text(status.rawValue), .integer(now), .text(status.rawValue), .integer(now),
                  .integer(id)])
    }

    private func records(_ sql: String, _ values: [SQLValue]) throws -> [FileRecord] {
        try connection.query(sql, values).map { row in
            func text(_ i: Int) -> String? { if case .text(let t) = row[i] { return t }; return nil }
            func int(_ i: Int) -> Int64? { if case .integer(let n) = row[i] { return n }; return nil }
            return FileRecord(id: int(0) ?? 0, source: text(1) ?? "", path: text(2) ?? "", movedTo: text(3), size: int(4) ?? 0,
                              sha256: text(5) ?? "", status: FileStatus(rawValue: text(6) ?? "") ?? .failed,
                              rowsSent: Int(int(7) ?? 0), rowsDeadLettered: Int(int(8) ?? 0), queuedMs: int(9) ?? 0,
                              startedMs: int(10), finishedMs: int(11), note: text(12))
        }
    }
}
