/// Which dead letters were sent again (`dead-letters.db` in the state directory), by their
/// place in the dead-letter topic, so that a second replay sends nothing new.
package final class DeadLetterLedger {
    let connection: SQLiteConnection

    package init(path: String) throws {
        connection = try SQLiteConnection(path: path, durability: .full)
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS genetika_replayed (
                topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                sent_to TEXT NOT NULL, replayed_ms INTEGER NOT NULL, PRIMARY KEY (topic, partition, offset));
            """)
    }

    package func close() { connection.close() }

    /// The dead letters already replayed: `topic[partition]@offset`.
    package func replayed() throws -> Set<String> {
        var places = Set<String>()
        try connection.forEachRow("SELECT topic, partition, offset FROM genetika_replayed") { row in
            places.insert("\(row.text(0))[\(row.int64(1))]@\(row.int64(2))")
        }
        return places
    }

    package func record(topic: String, partition: Int32, offset: Int64, sentTo: String, at ms: Int64) throws {
        try connection.transaction {
            _ = try connection.run("INSERT OR IGNORE INTO genetika_replayed VALUES (?, ?, ?, ?, ?)",
                                   [.text(topic), .integer(Int64(partition)), .integer(offset), .text(sentTo), .integer(ms)])
        }
    }
}
