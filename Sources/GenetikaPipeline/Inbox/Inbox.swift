import Foundation
import GenetikaStorage

/// A source's inbox folder: the files in it that match the pattern, where taken files go
/// (`done/`, `failed/`), and which files are complete.
///
/// Inboxes are polled (`stages.producer.inboxPollMs`) rather than watched with inotify: the
/// settle rule needs a periodic look at sizes and times anyway, and inotify sees nothing of
/// files written by another machine to a network share or through some container bind mounts,
/// which is where lab inboxes tend to live.
struct InboxFolder: Sendable {
    let path: String
    let pattern: String

    var doneFolder: String { path + "/done" }
    var failedFolder: String { path + "/failed" }

    /// One matching regular file.
    struct Candidate: Sendable, Equatable {
        var name: String
        var path: String
        var size: Int64
        /// Modification time in nanoseconds since the epoch.
        var modified: Int64
    }

    /// Creates the folder and its `done/` and `failed/` if missing.
    func prepare() throws {
        for folder in [path, doneFolder, failedFolder] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
    }

    /// Temporary names are never taken: Office lock files (`~$…`), hidden files (`.…`, which
    /// also covers rsync's partial files) and `*.tmp`.
    static func isTemporary(_ name: String) -> Bool {
        name.hasPrefix("~$") || name.hasPrefix(".") || name.lowercased().hasSuffix(".tmp")
    }

    /// The matching regular files, oldest first (by modification time, then name).
    func candidates() throws -> [Candidate] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw InboxError(folder: path, "cannot list the inbox: \(error.localizedDescription)")
        }
        var found: [Candidate] = []
        // FNM_CASEFOLD (a GNU flag Glibc's module does not export): `*.xlsx` takes `REPORT.XLSX` too.
        let caseFold: Int32 = 1 << 4
        for name in names where !Self.isTemporary(name) && fnmatch(pattern, name, caseFold) == 0 {
            if let candidate = Self.look(path + "/" + name) { found.append(candidate) }
        }
        return found.sorted { ($0.modified, $0.name) < ($1.modified, $1.name) }
    }

    /// The file as it is now (nil if it is gone or not a regular file).
    static func look(_ path: String) -> Candidate? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Candidate(name: (path as NSString).lastPathComponent, path: path, size: Int64(info.st_size),
                         modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec))
    }

    /// Moves `file` into `folder` under its name, or with `-2`, `-3`, … before the extension
    /// when that name is taken; returns the new path.
    static func move(_ file: String, into folder: String) throws -> String {
        let name = (file as NSString).lastPathComponent
        let stem = (name as NSString).deletingPathExtension
        let ext = (name as NSString).pathExtension
        var target = folder + "/" + name
        var attempt = 1
        while FileManager.default.fileExists(atPath: target) {
            attempt += 1
            target = folder + "/" + stem + "-\(attempt)" + (ext.isEmpty ? "" : "." + ext)
        }
        guard rename(file, target) == 0 else {
            throw InboxError(folder: folder, "cannot move \(file) there: \(String(cString: strerror(errno)))")
        }
        return target
    }

    /// The SHA-256 of a file's content, in hex.
    static func sha256(of file: String) throws -> String {
        do {
            return try FileDigest.sha256(of: file)
        } catch let failure as FileDigest.Failure {
            throw InboxError(folder: (file as NSString).deletingLastPathComponent, failure.description)
        }
    }
}

/// Tells which inbox files are complete: a file is taken once its size and modification time
/// have not changed for `settle` — judged from two looks `settle` apart, or from one look when
/// the modification time is already older than that (a file renamed into the inbox after it
/// was written elsewhere keeps its time, so it is taken at once).
struct SettleTracker {
    let settleNanoseconds: Int64
    private var seen: [String: (size: Int64, modified: Int64, since: Int64)] = [:]

    init(settleMs: Int) { settleNanoseconds = Int64(settleMs) * 1_000_000 }

    /// `now`: nanoseconds since the epoch (the clock file times use).
    mutating func settled(_ candidate: InboxFolder.Candidate, now: Int64) -> Bool {
        if now - candidate.modified >= settleNanoseconds { seen[candidate.path] = nil; return true }
        if let last = seen[candidate.path], last.size == candidate.size, last.modified == candidate.modified {
            return now - last.since >= settleNanoseconds
        }
        seen[candidate.path] = (candidate.size, candidate.modified, now)
        return false
    }

    /// Forgets files no longer present.
    mutating func keep(only paths: Set<String>) {
        seen = seen.filter { paths.contains($0.key) }
    }
}

/// Wall-clock nanoseconds since the epoch (what file modification times are in).
func epochNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// An inbox folder that cannot be listed or written.
struct InboxError: Error, CustomStringConvertible {
    var folder: String
    var message: String
    init(folder: String, _ message: String) {
        self.folder = folder
        self.message = message
    }
    var description: String { "inbox \(folder): \(message)" }
}
