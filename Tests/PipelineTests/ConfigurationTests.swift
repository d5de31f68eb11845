import Foundation
import GenetikaTestSupport
import Testing
@testable import GenetikaPipeline
@testable import GenetikaJSON

@Suite("Configuration validation")
struct ConfigurationTests {
    /// The checked-in config.json, as text, so each test can break it in one place.
    static let checkedIn: String = try! String(contentsOf: repositoryRoot.appendingPathComponent("config.json"), encoding: .utf8)

    func issues(_ text: String) throws -> [ConfigIssue] {
        do {
            _ = try GenetikaConfiguration.parse(Array(text.utf8), file: "test.json", baseDirectory: "/tmp")
            Issue.record("expected the configuration to be rejected")
            return []
        } catch let error as ConfigError {
            #expect(error.file == "test.json")
            return error.issues
        }
    }

    /// The checked-in JSON with one change made through the JSON model.
    func modified(_ change: (inout JSONObject) -> Void) throws -> String {
        guard case .object(var root) = try JSONParser.parse(Self.checkedIn) else { throw TestSetupError("config.json is not an object") }
        change(&root)
        return JSONWriter.string(.object(root))
    }

    @Test("the checked-in config.json is valid and resolves paths against its directory")
    func checkedInIsValid() throws {
        let configuration = try GenetikaConfiguration.load(path: repositoryRoot.appendingPathComponent("config.json").path, environment: [:])
        #expect(configuration.sources.map(\.topic) == ["topic1", "topic2", "topic3"])
        #expect(configuration.sources.map(\.table) == ["data1", "data2", "data3"])
        #expect(configuration.sources[0].file.map(configuration.resolve) == repositoryRoot.appendingPathComponent("Fixtures/sim_file1.xlsx").path)
        #expect(configuration.database.url == "sqlite://state/genetika.db")
    }

    @Test("the producer's lead limit: 20,000 events per topic by default, 0 turns it off, negative is refused")
    func maxLead() throws {
        let configuration = try GenetikaConfiguration.parse(Array(Self.checkedIn.utf8), file: "test.json", baseDirectory: "/tmp")
        #expect(configuration.producer.maxLead == 20_000)
        let off = try modified { root in
            guard case .object(var stages)? = root["stages"], case .object(var producer)? = stages["producer"] else { return }
            producer["maxLead"] = .int(0)
            stages["producer"] = .object(producer)
            root["stages"] = .object(stages)
        }
        #expect(try GenetikaConfiguration.parse(Array(off.utf8), file: "test.json", baseDirectory: "/tmp").producer.maxLead == 0)
        let negative = off.replacingOccurrences(of: "\"maxLead\":0", with: "\"maxLead\":-1")
        #expect(negative != off)
        #expect(try issues(negative).contains { $0.path == "stages.producer.maxLead" })
    }

    @Test("environment variables override the broker and the database")
    func environmentOverrides() throws {
        let configuration = try GenetikaConfiguration.load(
            path: repositoryRoot.appendingPathComponent("config.json").path,
            environment: ["GENETIKA_BOOTSTRAP_SERVERS": "kafka:9092", "GENETIKA_DATABASE_URL": "postgres://u:p@db:5432/g"])
        #expect(configuration.kafka.bootstrapServers == "kafka:9092")
        #expect(configuration.database.url == "postgres://u:p@db:5432/g")
    }

    @Test("malformed JSON is reported with its line and column")
    func malformedJSON() throws {
        let found = try issues("{\n  \"kafka\": {\n    \"bootstrapServers\": \"x\",\n  }\n}")
        #expect(found.count == 1)
        #expect(found[0].path == "")
        #expect(found[0].message.contains("line 4, column 3"), "\(found)")
    }

    @Test("a value of the wrong type names its key path")
    func wrongType() throws {
        let text = try modified { root in
            guard case .object(var topics)? = root["topics"] else { return }
            topics["partitions"] = .string("three")
            root["topics"] = .object(topics)
        }
        let found = try issues(text)
        #expect(found.map(\.path) == ["topics.partitions"])
        #expect(found[0].message == "expected an integer, found a string")
    }

    @Test("a missing required key names its key path")
    func missingKey() throws {
        let text = try modified { root in
            guard case .array(var sources)? = root["sources"], case .object(var second) = sources[1] else { return }
            second["topic"] = nil
            sources[1] = .object(second)
            root["sources"] = .array(sources)
        }
        let found = try issues(text)
        #expect(found.map(\.path) == ["sources[1].topic"])
        #expect(found[0].message == "missing required key")
    }

    @Test("unknown keys are rejected at every level with their key paths")
    func unknownKeys() throws {
        let text = try modified { root in
            root["colour"] = .string("blue")
            guard case .array(var sources)? = root["sources"], case .object(var second) = sources[1],
                  case .array(var columns)? = second["columns"], case .object(var column) = columns[3] else { return }
            column["width"] = .int(3)
            columns[3] = .object(column)
            second["columns"] = .array(columns)
            sources[1] = .object(second)
            root["sources"] = .array(sources)
        }
        let found = try issues(text)
        #expect(Set(found.map(\.path)) == ["colour", "sources[1].columns[3].width"])
        #expect(found.allSatisfy { $0.message == "unknown key" })
    }

    @Test("a bad column type lists the allowed types; several problems are reported together")
    func badEnumAndSeveralProblems() throws {
        let text = try modified { root in
            guard case .array(var sources)? = root["sources"], case .object(var second) = sources[1],
                  case .array(var columns)? = second["columns"], case .object(var column) = columns[3] else { return }
            column["type"] = .string("varchar")
            columns[3] = .object(column)
            second["columns"] = .array(columns)
            second["table"] = .string("data1")
            sources[1] = .object(second)
            root["sources"] = .array(sources)
            root["database"] = .object(JSONObject([("url", .string("mysql://x"))]))
        }
        let found = try issues(text)
        let byPath = Dictionary(found.map { ($0.path, $0.message) }, uniquingKeysWith: { a, _ in a })
        #expect(byPath["sources[1].columns[3].type"] == "expected one of \"integer\", \"real\", \"text\", \"boolean\", \"date\", \"datetime\", found \"varchar\"")
        #expect(byPath["sources[1].table"]?.contains("already the table of sources[0]") == true)
        #expect(byPath["database.url"]?.hasPrefix("expected sqlite://PATH or postgres://") == true)
        #expect(found.count == 3)
    }

    @Test("a key column that is not among the columns is rejected")
    func keyNotAColumn() throws {
        let text = try modified { root in
            guard case .array(var sources)? = root["sources"], case .object(var first) = sources[0] else { return }
            first["key"] = .string("patient")
            sources[0] = .object(first)
            root["sources"] = .array(sources)
        }
        #expect(try issues(text).map(\.path) == ["sources[0].key"])
    }

    @Test("a source needs a file or an inbox; two sources cannot share an inbox; a pattern is a file name pattern")
    func inboxSources() throws {
        func change(_ edit: @escaping (Int, inout JSONObject) -> Void) throws -> String {
            try modified { root in
                guard case .array(var sources)? = root["sources"] else { return }
                for index in sources.indices {
                    guard case .object(var source) = sources[index] else { continue }
                    edit(index, &source)
                    sources[index] = .object(source)
                }
                root["sources"] = .array(sources)
            }
        }
        let none = try change { index, source in if index == 0 { source["file"] = .null } }
        #expect(try issues(none).map(\.path) == ["sources[0].file"])
        let shared = try change { index, source in source["inbox"] = .string(index == 2 ? "other" : "in") }
        #expect(try issues(shared).map(\.path) == ["sources[1].inbox"])
        let badPattern = try change { index, source in if index == 1 { source["inbox"] = .string("in"); source["pattern"] = .string("a/*.xlsx") } }
        #expect(try issues(badPattern).map(\.path) == ["sources[1].pattern"])
        let inboxOnly = try change { index, source in source["file"] = .null; source["inbox"] = .string("inbox\(index)") }
        let configuration = try GenetikaConfiguration.parse(Array(inboxOnly.utf8), file: "test.json", baseDirectory: "/srv")
        #expect(configuration.sources.map(\.inbox) == ["inbox0", "inbox1", "inbox2"])
        #expect(configuration.sources.allSatisfy { $0.file == nil && $0.pattern == "*.xlsx" })
    }

    @Test("a top level that is not an object is rejected")
    func notAnObject() throws {
        #expect(try issues("[1, 2]").first?.message == "expected an object at the top level, found an array")
    }

    @Test("GENETIKA_TOPIC_PARTITIONS and GENETIKA_OBSERVABILITY_PORT override the file; bad values name the variable")
    func numericEnvironmentOverrides() throws {
        let path = repositoryRoot.appendingPathComponent("config.json").path
        let configuration = try GenetikaConfiguration.load(path: path, environment: ["GENETIKA_TOPIC_PARTITIONS": "6", "GENETIKA_OBSERVABILITY_PORT": "0"])
        #expect(configuration.topics.partitions == 6)
        #expect(configuration.observability.port == 0)
        for (name, value) in [("GENETIKA_TOPIC_PARTITIONS", "three"), ("GENETIKA_TOPIC_PARTITIONS", "0"), ("GENETIKA_OBSERVABILITY_PORT", "70000")] {
            do {
                _ = try GenetikaConfiguration.load(path: path, environment: [name: value])
                Issue.record("\(name)=\(value) was accepted")
            } catch let error as ConfigError {
                #expect(error.issues.first?.path.hasPrefix(name) == true)
            }
        }
    }
}
