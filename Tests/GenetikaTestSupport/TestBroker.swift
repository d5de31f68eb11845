import Foundation
import GenetikaKafka

/// The repository root, found from this file's location.
package let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A test could not set up what it needs (no broker binary, broker did not start, …).
package struct TestSetupError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// A real Kafka-protocol broker for one test: Tansu (from `make deps`) started on a free
/// port, or the broker named by `GENETIKA_TEST_BOOTSTRAP_SERVERS`. Never skips: if no broker
/// can be had, `start()` throws and the test fails saying why.
package final class TestBroker: Sendable {
    package let bootstrapServers: String
    /// Tansu under its guard, or nil for an external broker.
    private let process: GuardedProcess?

    package static func start(timeout: Duration = .seconds(30)) async throws -> TestBroker {
        ignoreBrokenPipes()
        if let external = ProcessInfo.processInfo.environment["GENETIKA_TEST_BOOTSTRAP_SERVERS"], !external.isEmpty {
            let broker = TestBroker(bootstrapServers: external, process: nil)
            try await broker.waitReady(timeout: timeout)
            return broker
        }
        let tansu = ProcessInfo.processInfo.environment["GENETIKA_TANSU"]
            ?? repositoryRoot.appendingPathComponent(".deps/tansu/bin/tansu").path
        guard FileManager.default.isExecutableFile(atPath: tansu) else {
            throw TestSetupError("no broker: \(tansu) is missing; run `make deps` (or set GENETIKA_TEST_BOOTSTRAP_SERVERS)")
        }
        let port = try freePort()
        let address = "127.0.0.1:\(port)"
        let process = try GuardedProcess([tansu, "broker", "--listener-url", "tcp://\(address)", "--advertised-listener-url", "tcp://\(address)",
                                          "--storage-engine", "memory://tansu/"], name: "tansu-\(port)")
        let broker = TestBroker(bootstrapServers: address, process: process)
        do {
            try await broker.waitReady(timeout: timeout)
        } catch {
            broker.stop()
            throw TestSetupError("Tansu on \(address) did not become ready: \(error)\n\(process.logTail())")
        }
        return broker
    }

    private init(bootstrapServers: String, process: GuardedProcess?) {
        self.bootstrapServers = bootstrapServers
        self.process = process
    }

    private func waitReady(timeout: Duration) async throws {
        // Wait for the port first, so librdkafka does not log a refused connection per retry.
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let parts = bootstrapServers.split(separator: ",")[0].split(separator: ":")
        if parts.count == 2, let port = Int(parts[1]) {
            while !canConnect(host: String(parts[0]), port: port), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let admin = try KafkaAdmin(configuration: clientConfiguration(), name: "test-admin")
        defer { admin.close() }
        _ = try await admin.waitUntilReachable(timeout: timeout)
    }

    /// Client settings for this broker, with test-friendly group timings.
    package func clientConfiguration(_ extra: [String: String] = [:]) -> KafkaClientConfiguration {
        var configuration = KafkaClientConfiguration(bootstrapServers: bootstrapServers, properties: [
            "session.timeout.ms": "6000",
            "heartbeat.interval.ms": "500",
            "topic.metadata.refresh.interval.ms": "1000",
        ])
        for (key, value) in extra { configuration[key] = value }
        return configuration
    }

    /// Creates topics with `partitions` partitions each and waits until they are visible.
    package func createTopics(_ names: [String], partitions: Int = 3) async throws {
        let admin = try KafkaAdmin(configuration: clientConfiguration(), name: "test-admin")
        defer { admin.close() }
        try await admin.ensureTopics(names.map { TopicSpecification(name: $0, partitions: partitions) }, create: true)
    }

    /// A name no other test uses, for topics and groups.
    package static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    package func logTail(lines: Int = 20) -> String {
        process?.logTail(lines: lines) ?? ""
    }

    /// Stops the broker (and waits for it to exit). A no-op for an external broker.
    package func stop() {
        guard let process else { return }
        process.stop()
        try? FileManager.default.removeItem(atPath: process.logFile)
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
package func freePort() throws -> Int {
    ignoreBrokenPipes()
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestSetupError("socket() failed: errno \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw TestSetupError("bind() failed: errno \(errno)") }
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestSetupError("getsockname() failed: errno \(errno)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// True when a TCP connection to host:port (IPv4) succeeds.
func canConnect(host: String, port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else { return false }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}
