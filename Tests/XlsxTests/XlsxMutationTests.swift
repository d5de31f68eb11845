import Foundation
import GenetikaTestSupport
import Synchronization
import Testing
@testable import GenetikaXlsx
@testable import GenetikaDataset

/// Crashes the test process, naming the case, if one case runs longer than `limit`: a hang
/// becomes a visible failure instead of a stuck CI run.
final class Watchdog: Sendable {
    private let state = Mutex<(deadline: ContinuousClock.Instant?, label: String, stopped: Bool)>((nil, "", false))

    init() {
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: 0.05)
                let (deadline, label, stopped) = state.withLock { $0 }
                if stopped { return }
                if let deadline, ContinuousClock.now > deadline {
                    fatalError("xlsx reader did not finish in time: \(label)")
                }
            }
        }
        thread.start()
    }

    func arm(_ label: String, limit: Duration) {
        state.withLock { $0 = (ContinuousClock.now.advanced(by: limit), label, false) }
    }

    func disarm() { state.withLock { $0.deadline = nil } }
    func stop() { state.withLock { $0.stopped = true } }
}

@Suite("xlsx reader survives mutated files")
struct XlsxMutationTests {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["GENETIKA_MUTATION_SEED"].flatMap { UInt64($0) } ?? 0x6765_6E65_7469_6B61
    static let cases = 1000

    @Test("1,000 seeded mutations each yield rows or a typed error naming the file: no crash, no hang")
    func mutations() throws {
        let fixtures = repositoryRoot.appendingPathComponent("Fixtures")
        let names = ["sim_file1", "sim_file2", "sim_file3", "edge_sparse_openpyxl", "edge_types_xlsxwriter"]
        let originals = try names.map { [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("\($0).xlsx"))) }
        let partsOfEach = try names.map { name -> [(String, [UInt8])] in
            let archive = try ZipArchive(path: fixtures.appendingPathComponent("\(name).xlsx").path)
            return try archive.entries.map { ($0.name, try archive.readAll($0, limits: XlsxLimits())) }
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-mutations-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        var rng = SeededGenerator(seed: Self.seed)
        let watchdog = Watchdog()
        defer { watchdog.stop() }
        var readRows = 0
        var errorKinds: [XlsxError.Kind: Int] = [:]
        for index in 0..<Self.cases {
            let which = Int.random(in: 0..<names.count, using: &rng)
            let path = directory.appendingPathComponent("case-\(index).xlsx").path
            let label = "seed \(Self.seed) case \(index) (\(names[which]))"
            if Bool.random(using: &rng) {
                var bytes = originals[which]
                for _ in 0..<Int.random(in: 1...4, using: &rng) { Self.mutate(&bytes, using: &rng) }
                try Data(bytes).write(to: URL(fileURLWithPath: path))
            } else {
                // Mutate one XML part and repackage it with a valid CRC, so the XML parser
                // (not the ZIP checks) meets the damage.
                var parts = partsOfEach[which]
                let target = Int.random(in: 0..<parts.count, using: &rng)
                for _ in 0..<Int.random(in: 1...3, using: &rng) { Self.mutateXML(&parts[target].1, using: &rng) }
                let zip = try ZipWriter(path: path)
                for (name, bytes) in parts {
                    try zip.addEntry(name, bytes: bytes, options: .init(method: Bool.random(using: &rng) ? .deflate : .stored))
                }
                try zip.finish()
            }
            watchdog.arm(label, limit: .seconds(20))
            do {
                let rows = try XlsxWorkbook(path: path).rows().readAll()
                readRows += 1
                _ = rows.count
            } catch {
                errorKinds[error.kind, default: 0] += 1
                #expect(error.file == "case-\(index).xlsx", "\(label): \(error)")
                #expect(!error.message.isEmpty)
            }
            watchdog.disarm()
            try? FileManager.default.removeItem(atPath: path)
        }
        let errors = errorKinds.values.reduce(0, +)
        print("xlsx mutations (seed \(Self.seed)): \(readRows) read, \(errors) typed errors: \(errorKinds.sorted { $0.value > $1.value }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", "))")
        // Both outcomes must occur, or the mutations are not testing anything.
        #expect(readRows > 0 && errors > 0, "rows: \(readRows), errors: \(errorKinds)")
        #expect(errorKinds.count >= 4, "error kinds seen: \(errorKinds)")
    }

    static func mutate(_ bytes: inout [UInt8], using rng: inout SeededGenerator) {
        guard bytes.count > 8 else { return }
        let at = Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<7, using: &rng) {
        case 0: bytes[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
        case 1: bytes[at] = UInt8.random(in: 0...255, using: &rng)
        case 2:
            let end = min(bytes.count, at + Int.random(in: 1...64, using: &rng))
            for i in at..<end { bytes[i] = 0 }
        case 3: bytes.removeSubrange(at..<bytes.count)
        case 4:
            let end = min(bytes.count, at + Int.random(in: 1...256, using: &rng))
            bytes.insert(contentsOf: Array(bytes[at..<end]), at: Int.random(in: 0..<bytes.count, using: &rng))
        case 5: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...256, using: &rng)))
        default:
            let junk = (0..<Int.random(in: 1...32, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            bytes.insert(contentsOf: junk, at: at)
        }
    }

    static func mutateXML(_ bytes: inout [UInt8], using rng: inout SeededGenerator) {
        guard !bytes.isEmpty else { return }
        let at = Int.random(in: 0..<bytes.count, using: &rng)
        let specials: [UInt8] = Array("<>\"&/=;#x0129ZAr".utf8)
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: bytes[at] = specials.randomElement(using: &rng)!
        case 1: bytes.remove(at: at)
        case 2: bytes.insert(specials.randomElement(using: &rng)!, at: at)
        case 3: bytes.removeSubrange(at..<bytes.count)
        case 4:
            let end = min(bytes.count, at + Int.random(in: 1...200, using: &rng))
            bytes.insert(contentsOf: Array(bytes[at..<end]), at: at)
        default:
            if bytes[at] >= 48 && bytes[at] <= 57 { bytes[at] = UInt8.random(in: 48...57, using: &rng) } else { bytes[at] ^= 0x20 }
        }
    }
}
