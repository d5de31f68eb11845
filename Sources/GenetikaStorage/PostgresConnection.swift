import CPostgres
import Glibc
import GenetikaSupport

/// A PostgreSQL error with the server's (or libpq's) own message.
package struct PostgresError: Error, Sendable, CustomStringConvertible {
    package var message: String
    package var context: String
    /// The server could not be reached or is not ready yet (refused, starting up, unknown
    /// host): worth waiting for, unlike a wrong password or a missing database.
    package var isConnectionFailure = false
    package var description: String { "\(context): \(message)" }
}

/// One libpq connection, owned by one stage (not `Sendable`). libpq is synchronous, which
/// suits the DB stage: it already runs on a thread of its own.
package final class PostgresConnection {
    private var connection: OpaquePointer?
    /// The URL with its password masked, for messages.
    let displayURL: String

    /// Connects with a libpq connection URI, `postgres://user:password@host:port/database`.
    package init(url: String) throws {
        displayURL = Secrets.maskURLPasswords(url)
        let connection = PQconnectdb(url)
        guard let connection, PQstatus(connection) == CONNECTION_OK else {
            let message = connection.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            PQfinish(connection)
            let transient = ["Connection refused", "starting up", "shutting down", "could not translate host name",
                             "timeout expired", "No such file or directory", "closed the connection unexpectedly"]
            throw PostgresError(message: message.trimmedWhitespace, context: "connect to \(displayURL)",
                                isConnectionFailure: transient.contains { message.contains($0) })
        }
        self.connection = connection
        _ = try execute("SET client_min_messages = warning")
    }

    deinit {
        close()
    }

    package func close() {
        if let connection { PQfinish(connection) }
        connection = nil
    }

    /// Runs SQL without parameters; returns the rows (text values, nil for NULL).
    @discardableResult
    package func execute(_ sql: String) throws -> [[String?]] {
        try query(sql, [])
    }

    /// Runs one statement with text parameters `$1…`; returns the rows (nil for NULL).
    @discardableResult
    package func query(_ sql: String, _ parameters: [String?]) throws -> [[String?]] {
        guard let connection else { throw PostgresError(message: "connection closed", context: displayURL) }
        let copies: [UnsafeMutablePointer<CChar>?] = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { for copy in copies { free(copy) } }
        let result: OpaquePointer? = copies.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(buffer.count, 1)) { values in
                PQexecParams(connection, sql, Int32(parameters.count), nil, parameters.isEmpty ? nil : values, nil, nil, 0)
            }
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let message = result.map { String(cString: PQresultErrorMessage($0)) } ?? String(cString: PQerrorMessage(connection))
            throw PostgresError(message: message.trimmedWhitespace, context: "\(displayURL): \(sql.prefix(120))")
        }
        var rows: [[String?]] = []
        for row in 0..<PQntuples(result) {
            rows.append((0..<PQnfields(result)).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            })
        }
        return rows
    }

    /// Runs `COPY … FROM STDIN` (`sql`) with `data` as its input, in the format the statement
    /// names; returns the number of rows copied. A refused row fails the whole COPY, and with
    /// it the transaction it runs in.
    @discardableResult
    package func copy(_ sql: String, data: [UInt8]) throws -> Int {
        guard let connection else { throw PostgresError(message: "connection closed", context: displayURL) }
        func failure(_ result: OpaquePointer?) -> PostgresError {
            let message = result.map { String(cString: PQresultErrorMessage($0)) } ?? ""
            return PostgresError(message: (message.isEmpty ? String(cString: PQerrorMessage(connection)) : message).trimmedWhitespace,
                                 context: "\(displayURL): \(sql.prefix(120))")
        }
        let start = PQexec(connection, sql)
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            defer { PQclear(start) }
            throw failure(start)
        }
        PQclear(start)
        // Blocking connection: each call returns once libpq has taken the bytes (1), or -1.
        let sent = data.withUnsafeBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return true }
            return base.withMemoryRebound(to: CChar.self, capacity: buffer.count) { bytes in
                var offset = 0
                while offset < buffer.count {
                    let length = min(buffer.count - offset, 1 << 20)
                    guard PQputCopyData(connection, bytes + offset, Int32(length)) == 1 else { return false }
                    offset += length
                }
                return true
            }
        }
        // Ending with an error message aborts the COPY on the server (nothing copied).
        guard PQputCopyEnd(connection, sent ? nil : "genetika: sending COPY data failed") == 1 else {
            throw PostgresError(message: String(cString: PQerrorMessage(connection)).trimmedWhitespace, context: "\(displayURL): \(sql.prefix(120))")
        }
        var copied = 0
        var error: PostgresError?
        while let result = PQgetResult(connection) {
            defer { PQclear(result) }
            if PQresultStatus(result) == PGRES_COMMAND_OK {
                copied = Int(String(cString: PQcmdTuples(result))) ?? 0
            } else if error == nil {
                error = failure(result)
            }
        }
        if let error { throw error }
        return copied
    }

    /// Takes, until the open transaction ends, the one advisory lock under which every Genetika
    /// table is created or altered. The sink, the acker's store and the owners' table create
    /// tables they share (`genetika_offsets`, `genetika_topic_ids`, `genetika_owners`), and on a
    /// fresh database a DB stage and an acker start at the same moment: two concurrent
    /// `CREATE TABLE IF NOT EXISTS` of one table make one of them fail (a duplicate in the
    /// catalog), so all three take this lock, not one each.
    func lockSchema() throws {
        try execute("SELECT pg_advisory_xact_lock(7411)")
    }

    /// Runs `body` inside `BEGIN … COMMIT`; rolls back if it throws.
    package func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            _ = try? execute("ROLLBACK")
            throw error
        }
    }
}

extension PostgresConnection {
    /// Creates the tables every consuming stage's state shares, if missing: the stored offsets
    /// and topic ids of each group, and the partitions' owners. Call under `lockSchema`.
    func createSharedTables() throws {
        try execute("""
            CREATE TABLE IF NOT EXISTS genetika_offsets (
                consumer_group TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                next_offset BIGINT NOT NULL, PRIMARY KEY (consumer_group, topic, partition))
            """)
        try execute("""
            CREATE TABLE IF NOT EXISTS genetika_topic_ids (
                consumer_group TEXT NOT NULL, topic TEXT NOT NULL, topic_id TEXT NOT NULL, PRIMARY KEY (consumer_group, topic))
            """)
        try execute(PartitionOwners.createSQL)
    }

    /// The next offsets stored in `genetika_offsets` for `group`, of those of `partitions` that have one.
    func storedOffsets(group: String, partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        let wanted = Set(partitions)
        var result: [TopicPartition: Int64] = [:]
        for row in try query("SELECT topic, partition, next_offset FROM genetika_offsets WHERE consumer_group = $1", [group]) {
            guard let topic = row[0], let partition = row[1].flatMap({ Int32($0) }), let offset = row[2].flatMap({ Int64($0) }) else { continue }
            let key = TopicPartition(topic, partition)
            if wanted.contains(key) { result[key] = offset }
        }
        return result
    }
}

extension Array {
    /// The array in consecutive slices of at most `size` elements (statements and values of bounded size).
    func chunks(of size: Int) -> [ArraySlice<Element>] {
        precondition(size > 0, "chunks of \(size)")
        return stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
