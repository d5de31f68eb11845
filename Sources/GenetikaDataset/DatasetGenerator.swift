import GenetikaXlsx
/// Writes `sim_file1.xlsx`, `sim_file2.xlsx`, `sim_file3.xlsx` with the seed dataset's sheets
/// and columns for ids 1...rows (files 2 and 3 shuffled, like the seed), deterministically
/// from `seed`. Used for benchmarks and crash tests.
package struct DatasetGenerator {
    package var rows: Int
    package var seed: UInt64
    /// The first id: rows hold ids `firstId ..< firstId + rows`.
    package var firstId: Int

    package init(rows: Int, seed: UInt64 = 42, firstId: Int = 1) {
        self.rows = rows
        self.seed = seed
        self.firstId = firstId
    }

    package static let fileNames = ["sim_file1.xlsx", "sim_file2.xlsx", "sim_file3.xlsx"]

    /// Writes the three files into `directory` and returns their paths.
    @discardableResult
    package func write(to directory: String) throws -> [String] {
        let paths = Self.fileNames.map { directory + "/" + $0 }
        try writeIntake(paths[0])
        try writeGenotype(paths[1])
        try writeOutcome(paths[2])
        return paths
    }

    private func shuffledIds(_ rng: inout DatasetRandom) -> [Int] {
        var ids = Array(firstId..<(firstId + max(rows, 0)))
        ids.shuffle(using: &rng)
        return ids
    }

    package func writeIntake(_ path: String) throws {
        var rng = DatasetRandom(seed: seed &+ 1)
        let writer = try XlsxWriter(path: path, sheetName: "intake")
        try writer.writeSheet { sheet in
            try sheet.write(["id", "age", "sex", "weight_kg", "bmi", "diagnosis", "phq9", "enrolled_on"].map(CellValue.string))
            let start = daysFromCivil(2023, 1, 1)
            for id in firstId..<(firstId + max(rows, 0)) {
                let weight = round1(Double.random(in: 45...120, using: &rng))
                let bmi: CellValue = Int.random(in: 0..<10, using: &rng) == 0 ? .string("NA") : .number(round2(Double.random(in: 17...42, using: &rng)))
                try sheet.write([
                    .integer(Int64(id)), .integer(Int64.random(in: 18...80, using: &rng)),
                    .string(Bool.random(using: &rng) ? "M" : "F"), .number(weight), bmi,
                    .string(["MDD", "BPD-I", "BPD-II", "GAD", "PTSD"].randomElement(using: &rng)!),
                    .integer(Int64.random(in: 0...27, using: &rng)),
                    .dateTime(SpreadsheetDateTime(daysSinceEpoch: start + Int.random(in: 0..<730, using: &rng), millisecondOfDay: 0)),
                ])
            }
        }
        try writer.close()
    }

    package func writeGenotype(_ path: String) throws {
        var rng = DatasetRandom(seed: seed &+ 2)
        let writer = try XlsxWriter(path: path, sheetName: "genotype")
        try writer.writeSheet { sheet in
            try sheet.write(["id", "cyp2d6", "cyp2c19", "comt", "slc6a4", "call_rate", "qc_pass"].map(CellValue.string))
            for id in shuffledIds(&rng) {
                try sheet.write([
                    .integer(Int64(id)),
                    .string(["*1/*1", "*1/*2", "*1/*4", "*4/*4", "*2/*10", "*1/*41"].randomElement(using: &rng)!),
                    .string(["*1/*1", "*1/*2", "*1/*17", "*2/*2"].randomElement(using: &rng)!),
                    .string(["Val/Val", "Val/Met", "Met/Met", "NA"].randomElement(using: &rng)!),
                    .string(["L/L", "S/L", "S/S"].randomElement(using: &rng)!),
                    .number(round4(Double.random(in: 0.95...1.0, using: &rng))),
                    .boolean(Int.random(in: 0..<10, using: &rng) != 0),
                ])
            }
        }
        try writer.close()
    }

    package func writeOutcome(_ path: String) throws {
        var rng = DatasetRandom(seed: seed &+ 3)
        let writer = try XlsxWriter(path: path, sheetName: "outcome")
        let notes: [CellValue] = [.empty, .string("NA"), .string("stable"), .string("nausea, week 2"),
                                  .string("reports \"better sleep\""), .string("insomnie légère"), .string("頭痛")]
        try writer.writeSheet { sheet in
            try sheet.write(["id", "medication", "dose_mg", "response_score", "adverse_events", "remission", "notes"].map(CellValue.string))
            for id in shuffledIds(&rng) {
                try sheet.write([
                    .integer(Int64(id)),
                    .string(["sertraline", "escitalopram", "bupropion", "venlafaxine", "lithium"].randomElement(using: &rng)!),
                    .integer([25, 50, 100, 150].randomElement(using: &rng)!),
                    .number(round3(Double.random(in: 0...20, using: &rng))),
                    .integer(Int64.random(in: 0...5, using: &rng)),
                    .boolean(Bool.random(using: &rng)),
                    notes.randomElement(using: &rng)!,
                ])
            }
        }
        try writer.close()
    }
}

private func round1(_ x: Double) -> Double { (x * 10).rounded() / 10 }
private func round2(_ x: Double) -> Double { (x * 100).rounded() / 100 }
private func round3(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
private func round4(_ x: Double) -> Double { (x * 10000).rounded() / 10000 }

/// SplitMix64: deterministic across platforms and Swift versions (datasets, and the
/// pipeline's reservoir samples).
struct DatasetRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
