import Foundation
import GenetikaSupport
import GenetikaStorage

/// One column of a source: its name in the sheet's header row, in events and in the table.
package struct ColumnConfiguration: Sendable, Equatable {
    package var name: String
    /// The header text in the sheet when it differs from `name`.
    package var header: String
    package var type: ColumnType
    package var nullable: Bool
}

/// Spreadsheets whose rows become events on one topic and rows of one table: one `file`,
/// sent once per run, and/or an `inbox` folder watched for files matching `pattern`.
package struct SourceConfiguration: Sendable, Equatable {
    /// A spreadsheet sent once per run (nil: inbox only).
    package var file: String?
    /// A folder whose matching files are each sent once, then moved to `done/` (or `failed/`).
    package var inbox: String? = nil
    /// Which inbox files are taken (`fnmatch` syntax).
    package var pattern: String = "*.xlsx"
    /// How the source is named in logs and file records: its file, else its inbox.
    package var label: String { file ?? inbox.map { $0 + "/" + pattern } ?? topic }
    /// The sheet to read by name; the workbook's first sheet when nil.
    package var sheet: String?
    package var topic: String
    package var table: String
    /// The column whose value is the event id (Kafka key, primary key).
    package var key: String
    package var columns: [ColumnConfiguration]

    var keyColumn: ColumnConfiguration? { columns.first { $0.name == key } }
}

/// Kafka client settings shared by every stage.
package struct KafkaConfiguration: Sendable, Equatable {
    package var bootstrapServers: String
    /// Any librdkafka property (`security.protocol`, `sasl.*`, …), passed through unchanged.
    package var properties: [String: String]
    /// How long start-up waits for the broker before failing.
    var connectTimeoutMs: Int
}

package struct TopicsConfiguration: Sendable, Equatable {
    package var ack: String
    package var deadLetter: String
    /// Where the acker reports ids that stayed incomplete (`stages.acker.incompleteAfterSeconds`).
    package var incomplete: String = "incomplete"
    /// Partitions of every topic Genetika creates; the source topics must share one count.
    package var partitions: Int
    /// Create missing topics at start-up.
    package var create: Bool
}

package struct DatabaseConfiguration: Sendable, Equatable {
    /// `sqlite://path` (relative to the configuration file) or `postgres://user:pass@host:port/db`.
    package var url: String
    /// How long start-up waits for a PostgreSQL server that refuses connections (still
    /// starting, e.g. in Docker Compose) before giving up.
    var connectTimeoutMs: Int = 30_000
    /// A file holding the PostgreSQL password (as Docker secrets provide it), relative to the
    /// configuration file; its content (less a trailing newline) becomes the URL's password.
    var passwordFile: String?
}

package struct ProducerStageConfiguration: Sendable, Equatable {
    /// Upper bound of a random pause between rows, in milliseconds (0: none).
    var maxDelayMs: Int
    /// Events per second sent from each source, evenly spaced (0: as fast as possible).
    /// Takes precedence over `maxDelayMs`.
    var ratePerSecond: Double = 0
    /// An inbox file is taken once its size and modification time have stayed still this long
    /// (a file renamed into the inbox, with an older modification time, at once).
    var settleMs: Int = 1000
    /// How often inboxes are looked at.
    var inboxPollMs: Int = 500
    /// Most events per topic the producer may be ahead of the slowest consuming stage running
    /// in the same process (0: no limit). See `ConsumerLead`.
    var maxLead: Int = 20_000
}

package struct ConsumerStageConfiguration: Sendable, Equatable {
    var groupId: String
    /// Most events written in one transaction.
    var batchSize: Int
    /// How long a batch may wait to fill up, in milliseconds.
    var lingerMs: Int
    /// Acker only: an id that reached some but not all source topics this many seconds ago
    /// (its earliest event's timestamp), while the acker has read everything there is, is
    /// reported once as incomplete (0: never).
    var incompleteAfterSeconds: Int = 300
}

package struct SupervisorConfiguration: Sendable, Equatable {
    var initialBackoffMs: Int
    var maxBackoffMs: Int
    /// More restarts than this within `windowSeconds` stops the process.
    var maxRestarts: Int
    var windowSeconds: Int
}

extension DatabaseConfiguration {
    /// The password of a `postgres://user:password@host/db` URL (percent-decoded), if any.
    static func password(in url: String) -> String? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        guard let at = rest.lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") else { return nil }
        let raw = String(rest[rest.index(after: colon)..<at])
        return raw.removingPercentEncoding ?? raw
    }

    /// `url` with `password` as its password (percent-encoded), replacing any there.
    static func url(_ url: String, password: String) -> String {
        guard url.hasPrefix("postgres"), let scheme = url.range(of: "://") else { return url }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let encoded = password.addingPercentEncoding(withAllowedCharacters: allowed) ?? password
        if encoded != password { Secrets.register(encoded) }
        let rest = url[scheme.upperBound...]
        let hostStart = rest.lastIndex(of: "@").map { rest.index(after: $0) } ?? rest.startIndex
        let userinfo = rest.lastIndex(of: "@").map { rest[..<$0] } ?? ""
        let user = userinfo.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        return url[..<scheme.upperBound] + user + ":" + encoded + "@" + rest[hostStart...]
    }
}

/// Safety limits for reading spreadsheets.
package struct XlsxConfiguration: Sendable, Equatable {
    var maxPartBytes: Int
    var maxCompressionRatio: Double
}

/// Where `/metrics` and `/health` are served.
package struct ObservabilityConfiguration: Sendable, Equatable {
    package var host: String
    /// 0 turns the endpoint off.
    package var port: Int
    /// A running stage that has lag but commits nothing, or spends longer in one step (a
    /// batch, a read-back), for this many seconds is reported stuck by `/health`.
    var stuckAfterSeconds: Int = 60
}

/// Everything `genetika` reads from `config.json`.
package struct GenetikaConfiguration: Sendable, Equatable {
    package var kafka: KafkaConfiguration
    package var topics: TopicsConfiguration
    package var sources: [SourceConfiguration]
    package var database: DatabaseConfiguration
    package var stateDirectory: String
    package var producer: ProducerStageConfiguration
    package var db: ConsumerStageConfiguration
    package var acker: ConsumerStageConfiguration
    var supervisor: SupervisorConfiguration
    package var xlsx: XlsxConfiguration
    package var observability: ObservabilityConfiguration
    /// The directory relative paths are resolved against (the configuration file's).
    var baseDirectory: String

    /// Resolves a path from the configuration against the configuration file's directory.
    package func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return URL(fileURLWithPath: baseDirectory).appendingPathComponent(path).standardizedFileURL.path
    }
}
