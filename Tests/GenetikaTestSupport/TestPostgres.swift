import Foundation
import GenetikaStorage

/// A throwaway PostgreSQL cluster for one test: `initdb` in a temporary directory, the
/// server on a free port on 127.0.0.1, started as the `postgres` user when the tests run as
/// root (initdb refuses root), stopped with the test. `GENETIKA_TEST_POSTGRES_URL` names an
/// existing database to use instead. Never skips: without PostgreSQL, `start()` throws.
package final class TestPostgres: Sendable {
    package let url: String
    private let process: GuardedProcess?
    private let directory: String?

    package static func start() async throws -> TestPostgres {
        if let external = ProcessInfo.processInfo.environment["GENETIKA_TEST_POSTGRES_URL"], !external.isEmpty {
            return TestPostgres(url: external, process: nil, directory: nil)
        }
        let bin = try binDirectory()
        let user: String? = getuid() == 0 ? "postgres" : nil
        let directory = "/tmp/genetika-pg-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let user { _ = chownPath(directory, user: user) }
        try runCommand(["\(bin)/initdb", "-D", "\(directory)/data", "-U", "genetika", "--auth=trust", "-E", "UTF8", "--no-sync"], user: user)
        let port = try freePort()
        let process = try GuardedProcess(["\(bin)/postgres", "-D", "\(directory)/data", "-p", "\(port)", "-k", directory,
                                          "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"], user: user, name: "postgres-\(port)")
        let server = TestPostgres(url: "postgres://genetika@127.0.0.1:\(port)/postgres", process: process, directory: directory)
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while true {
            do {
                let connection = try PostgresConnection(url: server.url)
                connection.close()
                return server
            } catch {
                if ContinuousClock.now > deadline {
                    server.stop()
                    throw TestSetupError("PostgreSQL on port \(port) did not start: \(error)\n\(process.logTail())")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Debian's server binaries (`/usr/lib/postgresql/N/bin`), newest first, or `GENETIKA_PG_BIN`.
    static func binDirectory() throws -> String {
        if let bin = ProcessInfo.processInfo.environment["GENETIKA_PG_BIN"] { return bin }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        for version in versions where FileManager.default.isExecutableFile(atPath: "\(root)/\(version)/bin/postgres") {
            return "\(root)/\(version)/bin"
        }
        throw TestSetupError("no PostgreSQL server in \(root); run `make deps` (it installs Debian's postgresql)")
    }

    private init(url: String, process: GuardedProcess?, directory: String?) {
        self.url = url
        self.process = process
        self.directory = directory
    }

    /// A new empty database on this server, as a URL.
    package func createDatabase() throws -> String {
        let name = "genetika_\(UUID().uuidString.prefix(8).lowercased())"
        let connection = try PostgresConnection(url: url)
        defer { connection.close() }
        try connection.execute("CREATE DATABASE \(name)")
        guard let slash = url.lastIndex(of: "/") else { return url }
        return String(url[...slash]) + name
    }

    package func stop() {
        process?.stop()
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }
}
