import Foundation
import Testing
@testable import GenetikaPipeline

@Suite("Inbox folder rules")
struct InboxFolderTests {
    func folder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-inbox-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func touch(_ path: String, _ text: String = "x", modified: Date) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: path)
    }

    @Test("matching files oldest first (case-insensitive pattern); temporary names, other extensions and folders are left alone")
    func candidates() throws {
        let path = try folder()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let inbox = InboxFolder(path: path, pattern: "*.xlsx")
        try inbox.prepare()
        let now = Date()
        try touch(path + "/b.xlsx", modified: now.addingTimeInterval(-30))
        try touch(path + "/A.XLSX", modified: now.addingTimeInterval(-60))
        try touch(path + "/c.xlsx", modified: now.addingTimeInterval(-10))
        for name in ["~$b.xlsx", ".c.xlsx", "d.xlsx.tmp", "notes.txt"] { try touch(path + "/" + name, modified: now) }
        #expect(try inbox.candidates().map(\.name) == ["A.XLSX", "b.xlsx", "c.xlsx"])
        #expect(InboxFolder.isTemporary("upload.TMP") && InboxFolder.isTemporary("~$x.xlsx") && !InboxFolder.isTemporary("x.xlsx"))
    }

    @Test("a file moved into done/ keeps its name, or gets -2, -3 … before the extension")
    func moveKeepsNames() throws {
        let path = try folder()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let inbox = InboxFolder(path: path, pattern: "*.xlsx")
        try inbox.prepare()
        var moved: [String] = []
        for _ in 1...3 {
            try touch(path + "/day.xlsx", modified: Date())
            moved.append((try InboxFolder.move(path + "/day.xlsx", into: inbox.doneFolder) as NSString).lastPathComponent)
        }
        #expect(moved == ["day.xlsx", "day-2.xlsx", "day-3.xlsx"])
    }

    @Test("SHA-256 of a file (the standard test vector)")
    func sha256() throws {
        let path = try folder()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path + "/abc"))
        #expect(try InboxFolder.sha256(of: path + "/abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("settling: an old file at once; a fresh one only after its size and time stayed still for the settle time")
    func settle() {
        var tracker = SettleTracker(settleMs: 1000)
        let second: Int64 = 1_000_000_000
        let now: Int64 = 1_000 * second
        let renamedIn = InboxFolder.Candidate(name: "a", path: "/in/a", size: 10, modified: now - 5 * second)
        var answers: [Bool] = []
        answers.append(tracker.settled(renamedIn, now: now))
        var growing = InboxFolder.Candidate(name: "b", path: "/in/b", size: 10, modified: now)
        answers.append(tracker.settled(growing, now: now))
        growing.size = 20
        growing.modified = now + second / 2
        answers.append(tracker.settled(growing, now: now + second / 2))
        answers.append(tracker.settled(growing, now: now + second))  // still for only half a second
        answers.append(tracker.settled(growing, now: now + second / 2 + second + 1))
        #expect(answers == [true, false, false, false, true])
    }
}
