import CSQLite
import Foundation

/// A SQLite error with SQLite's own message and what was being done.
struct SQLiteError: Error, Sendable, CustomStringConvertible {
    var code: Int32
    var message: String
    var context: String
    var description: String { "\(context): \(message) (SQLite error \(code))" }
}

/// A value bound to, or read from, a SQLite statement.
package enum SQLValue: Sendable, Equatable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
}

/// One SQLite connection, owned by one stage (not `Sendable`). WAL mode; every write goes
/// through `transaction`, which commits or rolls back as a whole.
package final class SQLiteConnection {
    private var db: OpaquePointer?
    package let path: String
    private var statements: [String: OpaquePointer] = [:]
    private var prepared: [SQLiteStatement] = []
    /// Pages SQLite keeps in memory per connection (`PRAGMA cache_size`), in KiB: enough for
    /// the upper levels of large tables; fixed and small, so memory does not grow with the data.
    static let cacheKiB = 4 * 1024

    /// How hard a commit waits for the disk (`PRAGMA synchronous`).
    package enum Durability: String, Sendable {
        /// Every commit is on disk when `COMMIT` returns (fsync per commit).
        case full = "FULL"
        /// Commits are atomic and survive a crash of the process, but the last ones may be
        /// lost if the machine loses power (WAL: fsync at checkpoints only). For state that
        /// Kafka can rebuild.
        case normal = "NORMAL"
    }

    /// Opens (creating) the database at `path`, creating its directory if needed. `pageSize`
    /// (bytes, a power of two from 512 to 65,536) applies to a database this call creates; an
    /// existing one keeps the page size it was created with.
    package init(path: String, durability: Durability = .full, pageSize: Int? = nil) throws {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close(handle)
            throw SQLiteError(code: rc, message: message, context: "open database \(path)")
        }
        db = handle
        sqlite3_busy_timeout(handle, 10_000)
        // Before anything is written: switching to WAL fixes the page size of a new database.
        if let pageSize { try execute("PRAGMA page_size=\(pageSize)") }
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=\(durability.rawValue)")
        try execute("PRAGMA foreign_keys=ON")
        try execute("PRAGMA cache_size=-\(Self.cacheKiB)")
    }

    deinit {
        close()
    }

    /// The database's page size in bytes (`PRAGMA page_size`).
    package func pageSize() throws -> Int {
        guard case .integer(let size)? = try query("PRAGMA page_size").first?.first else {
            throw SQLiteError(code: SQLITE_ERROR, message: "no page size", context: "read the page size of \(path)")
        }
        return Int(size)
    }

    /// Checkpoints the WAL once it holds `bytes` (`PRAGMA wal_autocheckpoint`, which counts
    /// this database's pages).
    func checkpointEvery(bytes: Int) throws {
        try execute("PRAGMA wal_autocheckpoint=\(bytes / pageSize())")
    }

    package func close() {
        for statement in prepared { statement.finalize() }
        prepared.removeAll()
        for statement in statements.values { sqlite3_finalize(statement) }
        statements.removeAll()
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    private func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: db.map { String(cString: sqlite3_errmsg($0)) } ?? "closed", context: context)
    }

    /// Runs SQL without results (may hold several statements).
    package func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text, context: "\(path): \(sql.prefix(120))")
        }
    }

    private func statement(_ sql: String) throws -> OpaquePointer {
        if let cached = statements[sql] {
            sqlite3_reset(cached)
            sqlite3_clear_bindings(cached)
            return cached
        }
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, "\(path): prepare \(sql.prefix(120))") }
        statements[sql] = statement
        return statement
    }

    private func bind(_ statement: OpaquePointer, _ values: [SQLValue]) throws {
        for (index, value) in values.enumerated() {
            let position = Int32(index + 1)
            let rc = bindValue(statement, position, value)
            if rc != SQLITE_OK { throw error(rc, "\(path): bind parameter \(position)") }
        }
    }

    /// A statement prepared once for repeated use on a hot path (bind, step, reset), valid
    /// until the connection closes.
    package func prepare(_ sql: String) throws -> SQLiteStatement {
        var handle: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard rc == SQLITE_OK, let handle else { throw error(rc, "\(path): prepare \(sql.prefix(120))") }
        let statement = SQLiteStatement(handle: handle, connection: self, sql: sql)
        prepared.append(statement)
        return statement
    }

    /// Runs a query once, handing each row to `body` as it is stepped (nothing is collected):
    /// for scans of large tables.
    func forEachRow(_ sql: String, _ values: [SQLValue] = [], _ body: (SQLiteStatement) throws -> Void) throws {
        var handle: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, 0, &handle, nil)
        guard rc == SQLITE_OK, let handle else { throw error(rc, "\(path): prepare \(sql.prefix(120))") }
        let statement = SQLiteStatement(handle: handle, connection: self, sql: sql)
        defer { statement.finalize() }
        for (index, value) in values.enumerated() { try statement.bind(Int32(index + 1), value) }
        while try statement.next() { try body(statement) }
    }

    fileprivate func failure(_ rc: Int32, _ sql: String) -> SQLiteError { error(rc, "\(path): \(sql.prefix(120))") }

    /// Runs one statement with parameters; returns the number of rows changed.
    @discardableResult
    package func run(_ sql: String, _ values: [SQLValue] = []) throws -> Int {
        let statement = try statement(sql)
        try bind(statement, values)
        let rc = sqlite3_step(statement)
        defer { sqlite3_reset(statement) }
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw error(rc, "\(path): \(sql.prefix(120))") }
        return Int(sqlite3_changes(db))
    }

    /// Runs a query and returns every row.
    package func query(_ sql: String, _ values: [SQLValue] = []) throws -> [[SQLValue]] {
        let statement = try statement(sql)
        try bind(statement, values)
        defer { sqlite3_reset(statement) }
        var rows: [[SQLValue]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc, "\(path): \(sql.prefix(120))") }
            var row: [SQLValue] = []
            for column in 0..<sqlite3_column_count(statement) {
                switch sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(statement, column)))
                case SQLITE_FLOAT: row.append(.real(sqlite3_column_double(statement, column)))
                case SQLITE_TEXT: row.append(.text(String(cString: sqlite3_column_text(statement, column))))
                default: row.append(.null)
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`; rolls back if it throws.
    package func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

/// SQLite's SQLITE_TRANSIENT: copy bound text before the call returns.
private let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// Binds one parameter (1-based); returns SQLite's result code.
private func bindValue(_ statement: OpaquePointer?, _ position: Int32, _ value: SQLValue) -> Int32 {
    switch value {
    case .null: return sqlite3_bind_null(statement, position)
    case .integer(let v): return sqlite3_bind_int64(statement, position, v)
    case .real(let v): return sqlite3_bind_double(statement, position, v)
    case .text(var v):
        return v.withUTF8 { text in
            text.withMemoryRebound(to: CChar.self) { sqlite3_bind_text(statement, position, $0.baseAddress, Int32(text.count), sqliteTransient) }
        }
    }
}

/// A prepared statement of one `SQLiteConnection` (and used only by its owner). Bind the
/// parameters (1-based), then `run()` or step through rows with `next()`; both reset it.
package final class SQLiteStatement {
    private var handle: OpaquePointer?
    private unowned let connection: SQLiteConnection
    let sql: String

    fileprivate init(handle: OpaquePointer, connection: SQLiteConnection, sql: String) {
        self.handle = handle
        self.connection = connection
        self.sql = sql
    }

    fileprivate func finalize() {
        sqlite3_finalize(handle)
        handle = nil
    }

    /// Binds parameter `position` (1-based).
    package func bind(_ position: Int32, _ value: SQLValue) throws {
        let rc = bindValue(handle, position, value)
        if rc != SQLITE_OK { throw connection.failure(rc, "bind parameter \(position) of \(sql)") }
    }

    /// Runs the statement to completion (a write) and resets it.
    package func run() throws {
        let rc = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else { throw connection.failure(rc, sql) }
    }

    /// Steps to the next row: true with a row to read, false (and reset) when done.
    package func next() throws -> Bool {
        let rc = sqlite3_step(handle)
        if rc == SQLITE_ROW { return true }
        sqlite3_reset(handle)
        guard rc == SQLITE_DONE else { throw connection.failure(rc, sql) }
        return false
    }

    /// Resets a query left before its last row.
    package func reset() { sqlite3_reset(handle) }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    /// The column as text (SQLite converts other types).
    package func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(handle, column) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(handle, column))), as: UTF8.self)
    }
}
