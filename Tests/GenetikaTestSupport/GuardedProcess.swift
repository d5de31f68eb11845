import Foundation

/// A server process for a test that never outlives it: a bash guard runs the command and
/// waits for end-of-file on its standard input, a pipe whose write end only this test
/// process holds. `stop()` closes it, and so does the kernel if this process dies; the guard
/// then kills the server with SIGKILL (the servers here keep nothing worth a clean stop:
/// Tansu ignores SIGTERM, and test databases are thrown away).
package final class GuardedProcess: Sendable {
    private let pid: Int32
    private let control: Int32
    package let logFile: String

    /// Starts `arguments` (optionally as another user through runuser), logging to a temp file.
    package init(_ arguments: [String], user: String? = nil, name: String) throws {
        ignoreBrokenPipes()
        let guardScript = """
            "$@" < /dev/null & child=$!
            read -r _ || true
            kill -9 $child 2>/dev/null; wait $child 2>/dev/null
            """
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-\(name)-\(UUID().uuidString.prefix(8)).log").path
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        if let user { _ = chownPath(logFile, user: user) }
        let control = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.standardInput = control
        let log = FileHandle(forWritingAtPath: logFile)
        process.standardOutput = log
        process.standardError = log
        // setpriv switches user and execs (runuser would fork and keep the server out of reach).
        let command = user.map { ["setpriv", "--reuid=\($0)", "--regid=\($0)", "--init-groups", "--"] } ?? []
        process.arguments = ["-c", guardScript, "guard"] + command + arguments
        try process.run()
        // Keep only our own write end, marked close-on-exec so no other child inherits it.
        let writeEnd = dup(control.fileHandleForWriting.fileDescriptor)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        try control.fileHandleForWriting.close()
        try control.fileHandleForReading.close()
        pid = process.processIdentifier
        self.control = writeEnd
    }

    /// Stops the server and waits (up to 5 s) for the guard to exit.
    package func stop() {
        close(control)
        // Foundation's Process reaps the guard itself, so probe with kill(pid, 0).
        for _ in 0..<100 where kill(pid, 0) == 0 {
            usleep(50_000)
        }
    }

    package func logTail(lines: Int = 20) -> String {
        guard let text = try? String(contentsOfFile: logFile, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

/// Runs a command to completion; throws with its output if it fails.
@discardableResult
package func runCommand(_ arguments: [String], user: String? = nil) throws -> String {
    ignoreBrokenPipes()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = (user.map { ["runuser", "-u", $0, "--"] } ?? []) + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard process.terminationStatus == 0 else {
        throw TestSetupError("\(arguments.joined(separator: " ")) failed (\(process.terminationStatus)): \(text)")
    }
    return text
}

@discardableResult
func chownPath(_ path: String, user: String) -> Bool {
    (try? runCommand(["chown", "-R", user, path])) != nil
}

/// The test process talks to brokers, databases and children over sockets and pipes; one
/// whose other end went away must fail the test with EPIPE, not kill the whole run with
/// SIGPIPE (as a daemon, `genetika run` ignores it too).
package func ignoreBrokenPipes() {
    _ = brokenPipesIgnored
}

private let brokenPipesIgnored: Bool = {
    signal(SIGPIPE, SIG_IGN)
    return true
}()
