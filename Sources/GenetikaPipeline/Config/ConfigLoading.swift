import Foundation
import GenetikaSupport
import GenetikaJSON
import GenetikaStorage

/// Reading `config.json`: the file, environment overrides, every setting with its default,
/// and the checks that name the setting a problem is in.
extension GenetikaConfiguration {
    /// Loads and validates a configuration file. Environment variables
    /// `GENETIKA_BOOTSTRAP_SERVERS`, `GENETIKA_DATABASE_URL`, `GENETIKA_OBSERVABILITY_HOST`,
    /// `GENETIKA_OBSERVABILITY_PORT` and `GENETIKA_TOPIC_PARTITIONS` override those settings (a
    /// bad value is an error naming it).
    package static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> GenetikaConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, issues: [ConfigIssue(path: "", message: "cannot read the file")])
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var configuration = try parse(Array(data), file: path, baseDirectory: base)
        if let servers = environment["GENETIKA_BOOTSTRAP_SERVERS"], !servers.isEmpty {
            configuration.kafka.bootstrapServers = servers
        }
        if let url = environment["GENETIKA_DATABASE_URL"], !url.isEmpty {
            configuration.database.url = url
        }
        // A password from a file or the environment goes into the URL; every secret the
        // configuration holds is registered, so that no output shows it.
        var password: String?
        if let file = configuration.database.passwordFile {
            let resolved = configuration.resolve(file)
            guard let data = FileManager.default.contents(atPath: resolved) else {
                throw ConfigError(file: path, issues: [ConfigIssue(path: "database.passwordFile", message: "cannot read \(resolved)")])
            }
            password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        if let secret = environment["GENETIKA_DATABASE_PASSWORD"], !secret.isEmpty { password = secret }
        if let password {
            Secrets.register(password)
            configuration.database.url = DatabaseConfiguration.url(configuration.database.url, password: password)
        }
        if let embedded = DatabaseConfiguration.password(in: configuration.database.url) { Secrets.register(embedded) }
        for (key, value) in configuration.kafka.properties where Secrets.isSecretProperty(key) { Secrets.register(value) }
        if let host = environment["GENETIKA_OBSERVABILITY_HOST"], !host.isEmpty {
            configuration.observability.host = host
        }
        if let text = environment["GENETIKA_OBSERVABILITY_PORT"], !text.isEmpty {
            guard let port = Int(text), (0...65535).contains(port) else {
                throw ConfigError(file: path, issues: [ConfigIssue(path: "GENETIKA_OBSERVABILITY_PORT (environment)",
                                                                   message: "expected a port from 0 to 65535, found \"\(text)\"")])
            }
            configuration.observability.port = port
        }
        if let text = environment["GENETIKA_TOPIC_PARTITIONS"], !text.isEmpty {
            guard let partitions = Int(text), (1...10_000).contains(partitions) else {
                throw ConfigError(file: path, issues: [ConfigIssue(path: "GENETIKA_TOPIC_PARTITIONS (environment)",
                                                                   message: "expected a whole number from 1 to 10000, found \"\(text)\"")])
            }
            configuration.topics.partitions = partitions
        }
        return configuration
    }

    /// Parses and validates configuration text; `file` names it in errors.
    package static func parse(_ bytes: [UInt8], file: String, baseDirectory: String) throws -> GenetikaConfiguration {
        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            throw ConfigError(file: file, issues: [ConfigIssue(path: "", message: "malformed JSON at \(error)")])
        }
        let issues = ConfigReader.Issues()
        var reader = ConfigReader(root: root, issues: issues)
        let configuration = read(&reader, baseDirectory: baseDirectory)
        reader.finish()
        if let configuration { validate(configuration, issues: issues) }
        guard issues.list.isEmpty, let configuration else {
            throw ConfigError(file: file, issues: issues.list)
        }
        return configuration
    }

    private static func read(_ reader: inout ConfigReader, baseDirectory: String) -> GenetikaConfiguration? {
        let kafka = reader.object("kafka", required: true) { kafka in
            KafkaConfiguration(
                bootstrapServers: kafka.string("bootstrapServers") ?? "",
                properties: kafka.stringMap("properties"),
                connectTimeoutMs: kafka.integer("connectTimeoutMs", default: 10_000, range: 100...600_000))
        }
        let topics = reader.object("topics") { topics in
            TopicsConfiguration(
                ack: topics.string("ack", default: "ack"),
                deadLetter: topics.string("deadLetter", default: "dead-letter"),
                incomplete: topics.string("incomplete", default: "incomplete"),
                partitions: topics.integer("partitions", default: 3, range: 1...10_000),
                create: topics.bool("create", default: true))
        }
        let sources = reader.objects("sources") { source in readSource(&source) }
        let database = reader.object("database") { database in
            DatabaseConfiguration(url: database.string("url", default: "sqlite://state/genetika.db"),
                                  connectTimeoutMs: database.integer("connectTimeoutMs", default: 30_000, range: 0...3_600_000),
                                  passwordFile: database.optionalString("passwordFile"))
        }
        let stateDirectory = reader.string("stateDirectory", default: "state")
        var producer = ProducerStageConfiguration(maxDelayMs: 0)
        var db = ConsumerStageConfiguration(groupId: "genetika-db", batchSize: 20_000, lingerMs: 5)
        var acker = ConsumerStageConfiguration(groupId: "genetika-acker", batchSize: 5000, lingerMs: 1)
        var supervisor = SupervisorConfiguration(initialBackoffMs: 200, maxBackoffMs: 10_000, maxRestarts: 5, windowSeconds: 60)
        reader.object("stages") { stages in
            stages.object("producer") { p in
                producer.maxDelayMs = p.integer("maxDelayMs", default: producer.maxDelayMs, range: 0...3_600_000)
                producer.ratePerSecond = Double(p.integer("ratePerSecond", default: 0, range: 0...100_000_000))
                producer.settleMs = p.integer("settleMs", default: producer.settleMs, range: 0...3_600_000)
                producer.inboxPollMs = p.integer("inboxPollMs", default: producer.inboxPollMs, range: 10...600_000)
                producer.maxLead = p.integer("maxLead", default: producer.maxLead, range: 0...1_000_000_000)
            }
            for (key, defaults) in [("db", db), ("acker", acker)] {
                let value = stages.object(key) { s in
                    ConsumerStageConfiguration(
                        groupId: s.string("groupId", default: defaults.groupId),
                        batchSize: s.integer("batchSize", default: defaults.batchSize, range: 1...100_000),
                        lingerMs: s.integer("lingerMs", default: defaults.lingerMs, range: 0...60_000),
                        incompleteAfterSeconds: key == "acker"
                            ? s.integer("incompleteAfterSeconds", default: defaults.incompleteAfterSeconds, range: 0...31_536_000)
                            : defaults.incompleteAfterSeconds)
                }
                if let value { if key == "db" { db = value } else { acker = value } }
            }
            stages.object("supervisor") { s in
                supervisor = SupervisorConfiguration(
                    initialBackoffMs: s.integer("initialBackoffMs", default: supervisor.initialBackoffMs, range: 1...600_000),
                    maxBackoffMs: s.integer("maxBackoffMs", default: supervisor.maxBackoffMs, range: 1...3_600_000),
                    maxRestarts: s.integer("maxRestarts", default: supervisor.maxRestarts, range: 0...1_000_000),
                    windowSeconds: s.integer("windowSeconds", default: supervisor.windowSeconds, range: 1...86_400))
            }
        }
        let xlsx = reader.object("xlsx") { x in
            XlsxConfiguration(
                maxPartBytes: x.integer("maxPartBytes", default: 1 << 30, range: 1024...(1 << 40)),
                maxCompressionRatio: x.number("maxCompressionRatio", default: 200, range: 1...1_000_000))
        }
        let observability = reader.object("observability") { o in
            ObservabilityConfiguration(host: o.string("host", default: "127.0.0.1"),
                                       port: o.integer("port", default: 9464, range: 0...65535),
                                       stuckAfterSeconds: o.integer("stuckAfterSeconds", default: 60, range: 1...86_400))
        }
        guard let kafka, let topics, let database, let xlsx, let observability else { return nil }
        return GenetikaConfiguration(
            kafka: kafka, topics: topics, sources: sources, database: database,
            stateDirectory: stateDirectory, producer: producer, db: db, acker: acker,
            supervisor: supervisor, xlsx: xlsx, observability: observability, baseDirectory: baseDirectory)
    }

    private static func readSource(_ source: inout ConfigReader) -> SourceConfiguration? {
        let file = source.optionalString("file")
        let inbox = source.optionalString("inbox")
        let pattern = source.string("pattern", default: "*.xlsx")
        if file == nil && inbox == nil {
            source.report("file", "a source needs a file, an inbox folder, or both")
        }
        if pattern.isEmpty || pattern.contains("/") {
            source.report("pattern", "expected a file name pattern such as *.xlsx, found \"\(pattern)\"")
        }
        let sheet = source.optionalString("sheet")
        let topic = source.string("topic")
        let table = source.string("table")
        let key = source.string("key", default: "id")
        let columns = source.objects("columns") { column -> ColumnConfiguration? in
            let name = column.string("name")
            let header = column.optionalString("header")
            let type = column.choice("type", as: ColumnType.self)
            let nullable = column.bool("nullable", default: true)
            guard let name, let type else { return nil }
            if !isIdentifier(name) {
                column.report("name", "\"\(name)\" is not a valid column name (letters, digits, _; not starting with a digit)")
            }
            return ColumnConfiguration(name: name, header: header ?? name, type: type, nullable: nullable)
        }
        guard file != nil || inbox != nil, let topic, let table else { return nil }
        if !isIdentifier(table) {
            source.report("table", "\"\(table)\" is not a valid table name (letters, digits, _; not starting with a digit)")
        }
        if !columns.isEmpty {
            if let keyColumn = columns.first(where: { $0.name == key }) {
                if keyColumn.type != .integer && keyColumn.type != .text {
                    source.report("key", "the key column \"\(key)\" must be of type integer or text, not \(keyColumn.type.rawValue)")
                }
            } else {
                source.report("key", "\"\(key)\" is not one of the source's columns")
            }
            var seen = Set<String>()
            for column in columns where !seen.insert(column.name).inserted {
                source.report("columns", "column \"\(column.name)\" appears twice")
            }
        } else {
            source.report("columns", "a source needs at least one column")
        }
        return SourceConfiguration(file: file, inbox: inbox, pattern: pattern, sheet: sheet, topic: topic, table: table, key: key,
                                   columns: columns)
    }

    private static func validate(_ configuration: GenetikaConfiguration, issues: ConfigReader.Issues) {
        func report(_ path: String, _ message: String) { issues.list.append(ConfigIssue(path: path, message: message)) }
        if configuration.kafka.bootstrapServers.trimmingCharacters(in: .whitespaces).isEmpty {
            report("kafka.bootstrapServers", "must name at least one broker (host:port)")
        }
        if configuration.kafka.properties["bootstrap.servers"] != nil {
            report("kafka.properties.bootstrap.servers", "set kafka.bootstrapServers instead")
        }
        if configuration.sources.isEmpty { report("sources", "at least one source is required") }
        var topics: [String: Int] = [:]
        var tables: [String: Int] = [:]
        for (position, source) in configuration.sources.enumerated() {
            if let first = topics[source.topic] {
                report("sources[\(position)].topic", "\"\(source.topic)\" is already the topic of sources[\(first)]")
            } else { topics[source.topic] = position }
            if let first = tables[source.table.lowercased()] {
                report("sources[\(position)].table", "\"\(source.table)\" is already the table of sources[\(first)]")
            } else { tables[source.table.lowercased()] = position }
            for reserved in [configuration.topics.ack, configuration.topics.deadLetter, configuration.topics.incomplete]
            where source.topic == reserved {
                report("sources[\(position)].topic", "\"\(reserved)\" is reserved for acks, dead letters or incomplete ids")
            }
            if let inbox = source.inbox {
                let folder = configuration.resolve(inbox)
                if let first = configuration.sources.prefix(position).firstIndex(where: { $0.inbox.map(configuration.resolve) == folder }) {
                    report("sources[\(position)].inbox", "\"\(inbox)\" is already the inbox of sources[\(first)]")
                }
            }
            if source.table.lowercased().hasPrefix("genetika_") {
                report("sources[\(position)].table", "names starting with genetika_ are reserved for Genetika's own tables")
            }
        }
        if configuration.topics.ack == configuration.topics.deadLetter {
            report("topics.deadLetter", "must differ from topics.ack")
        }
        if configuration.topics.incomplete == configuration.topics.ack || configuration.topics.incomplete == configuration.topics.deadLetter {
            report("topics.incomplete", "must differ from topics.ack and topics.deadLetter")
        }
        let url = configuration.database.url
        if !(url.hasPrefix("sqlite://") || url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")) {
            report("database.url", "expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE, found \"\(url)\"")
        } else if url.hasPrefix("sqlite://"), url.dropFirst("sqlite://".count).isEmpty {
            report("database.url", "sqlite:// needs a file path")
        }
        if configuration.db.groupId == configuration.acker.groupId {
            report("stages.acker.groupId", "the DB and acker stages need different consumer groups")
        }
        if configuration.supervisor.initialBackoffMs > configuration.supervisor.maxBackoffMs {
            report("stages.supervisor.initialBackoffMs", "must not exceed maxBackoffMs")
        }
    }

    static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 63 else { return false }
        let letters = Unicode.Scalar("a").value...Unicode.Scalar("z").value
        let upper = Unicode.Scalar("A").value...Unicode.Scalar("Z").value
        let digits = Unicode.Scalar("0").value...Unicode.Scalar("9").value
        func ok(_ s: Unicode.Scalar, digit: Bool) -> Bool {
            letters.contains(s.value) || upper.contains(s.value) || s == "_" || (digit && digits.contains(s.value))
        }
        return ok(first, digit: false) && name.unicodeScalars.allSatisfy { ok($0, digit: true) }
    }
}
