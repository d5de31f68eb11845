import Foundation

/// An exclusive lock on a file (`flock`), held while this process uses what it guards; the
/// file holds the holder's process id. The kernel releases it when the process dies, so a
/// killed run never leaves a stale lock behind.
package final class InstanceLock: Sendable {
    /// Another process holds the lock.
    package struct Held: Error, CustomStringConvertible {
        package var path: String
        package var guarding: String
        package var holder: String
        package var description: String {
            "another Genetika instance (\(holder)) is using \(guarding) (lock \(path)). Stop it, or give this run its own "
                + "stateDirectory and database.url; several processes may share the work only with PostgreSQL, each with its own stateDirectory"
        }
    }

    package let path: String
    private let descriptor: Int32

    package init(path: String, guarding: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path, NSLocalizedDescriptionKey: "cannot open lock file \(path): \(String(cString: strerror(errno)))"])
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 64)
            let count = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            let pid = String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw Held(path: path, guarding: guarding, holder: pid.isEmpty ? "pid unknown" : "pid \(pid)")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        self.path = path
        descriptor = fd
    }

    /// Releases the lock (closing the descriptor releases it).
    package func release() {
        close(descriptor)
    }
}
