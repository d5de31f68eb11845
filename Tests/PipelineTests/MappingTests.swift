import Foundation
import GenetikaTestSupport
import GenetikaJSON
import Testing
@testable import GenetikaXlsx
@testable import GenetikaPipeline
@testable import GenetikaStorage
@testable import GenetikaSupport

@Suite("Row mapping and event decoding")
struct MappingTests {
    static let configuration = try! GenetikaConfiguration.load(path: repositoryRoot.appendingPathComponent("config.json").path, environment: [:])
    static var intake: SourceConfiguration { configuration.sources[0] }

    func header() -> XlsxRow {
        XlsxRow(number: 1, cells: ["id", "age", "sex", "weight_kg", "bmi", "diagnosis", "phq9", "enrolled_on"].map(CellValue.string))
    }

    @Test("a seed row becomes a typed JSON event keyed by id; NA and empty cells become null")
    func seedRow() throws {
        let mapper = try RowMapper(source: Self.intake, header: header(), file: "sim_file1.xlsx")
        let row = XlsxRow(number: 2, cells: [.integer(1), .integer(38), .string("M"), .number(78.6), .string("NA"), .string("MDD"), .empty,
                                             .dateTime(SpreadsheetDateTime(year: 2024, month: 11, day: 1))])
        let values = try mapper.values(of: row)
        #expect(mapper.key(of: values) == "1")
        #expect(String(decoding: mapper.event(of: values), as: UTF8.self)
                == #"{"id":1,"age":38,"sex":"M","weight_kg":78.6,"bmi":null,"diagnosis":"MDD","phq9":null,"enrolled_on":"2024-11-01"}"#)
        // The DB stage's decoder reads back exactly these values.
        #expect(try EventDecoder(source: Self.intake).decode(mapper.event(of: values)) == values)
    }

    @Test("columns are found by header wherever they are; a missing header column names file and column")
    func headerMatching() throws {
        var shuffled = header()
        shuffled.cells.reverse()
        let mapper = try RowMapper(source: Self.intake, header: shuffled, file: "x.xlsx")
        let row = XlsxRow(number: 2, cells: Array([CellValue.integer(7), .integer(30), .string("F"), .number(60), .number(22.5), .string("GAD"), .integer(3),
                                                   .dateTime(SpreadsheetDateTime(year: 2024, month: 1, day: 2))].reversed()))
        #expect(try mapper.values(of: row).first == .integer(7))
        // Headers padded with spaces still match; of two equal headers the first wins.
        var padded = header()
        padded.cells[0] = .string(" id ")
        padded.cells.append(.string("  age "))
        let paddedMapper = try RowMapper(source: Self.intake, header: padded, file: "x.xlsx")
        let paddedRow = XlsxRow(number: 2, cells: [.integer(1), .integer(30), .string("F"), .number(60), .number(22.5), .string("GAD"), .integer(3),
                                                   .dateTime(SpreadsheetDateTime(year: 2024, month: 1, day: 2)), .integer(99)])
        let paddedValues = try paddedMapper.values(of: paddedRow)
        #expect(paddedValues[0] == .integer(1))
        #expect(paddedValues[1] == .integer(30), "the first \"age\" column, not the later padded one")
        var partial = header()
        partial.cells.removeLast()
        #expect(throws: XlsxError.self) { try RowMapper(source: Self.intake, header: partial, file: "x.xlsx") }
        do { _ = try RowMapper(source: Self.intake, header: partial, file: "x.xlsx") } catch {
            #expect(error.description.contains("x.xlsx") && error.description.contains("\"enrolled_on\""))
        }
    }

    @Test("rows that fail validation are rejected with the row and the reason", arguments: [
        ([CellValue.string("abc"), .integer(1)], "column id: expected integer, found the text \"abc\""),
        ([CellValue.empty, .integer(1)], "column id: a value is required"),
        ([CellValue.integer(1), .number(38.5)], "column age: expected integer, found the number 38.5"),
        ([CellValue.integer(1), .integer(38), .error("#N/A")], "column sex: expected text, found the error value #N/A"),
    ])
    func rejections(cells: [CellValue], reason: String) throws {
        let mapper = try RowMapper(source: Self.intake, header: header(), file: "f.xlsx")
        do {
            _ = try mapper.values(of: XlsxRow(number: 9, cells: cells))
            Issue.record("expected a rejection")
        } catch {
            #expect(error.row == 9)
            #expect(error.reason.hasPrefix(reason), "\(error.reason)")
        }
    }

    @Test("malformed events are rejected with a reason", arguments: [
        ("not json", "not JSON"),
        (#"[1,2]"#, "expected a JSON object"),
        (#"{"age": 3}"#, "missing id"),
        (#"{"id": 1, "age": "old"}"#, "column age: expected integer, found a string"),
        (#"{"id": 1, "colour": "red"}"#, "unknown column \"colour\""),
        (#"{"id": 1, "enrolled_on": "2024-13-01"}"#, "column enrolled_on: expected a date"),
        (#"{"id": null}"#, "missing id"),
    ])
    func badEvents(text: String, reason: String) {
        do {
            _ = try EventDecoder(source: Self.intake).decode(Array(text.utf8))
            Issue.record("expected a rejection of \(text)")
        } catch {
            #expect(error.reason.contains(reason), "\(error.reason)")
        }
    }

    /// An event decoded the slow, obvious way, as the reference for the one reader's fast path:
    /// the whole document through `JSONParser.parse` into a `JSONValue`, then the same checks.
    static func referenceDecode(_ bytes: [UInt8], source: SourceConfiguration) throws(EventRejection) -> [FieldValue] {
        let document: JSONValue
        do { document = try JSONParser.parse(bytes) } catch { throw EventRejection(reason: "not JSON: \(error)") }
        guard case .object(let object) = document else {
            throw EventRejection(reason: "expected a JSON object, found \(document.kindDescription)")
        }
        var values = [FieldValue](repeating: .null, count: source.columns.count)
        var typed: [(Int, JSONValue)] = []
        for member in object {
            guard let index = source.columns.firstIndex(where: { $0.name == member.key }) else {
                throw EventRejection(reason: "unknown column \"\(member.key)\" for table \(source.table)")
            }
            typed.append((index, member.value))
        }
        for (index, value) in typed { values[index] = try EventDecoder.value(value, for: source.columns[index]) }
        for (column, value) in zip(source.columns, values) where value == .null {
            if column.name == source.key { throw EventRejection(reason: "missing \(source.key) (the key column)") }
            if !column.nullable { throw EventRejection(reason: "column \(column.name): a value is required") }
        }
        return values
    }

    /// One decoding's outcome: the values, or the rejection's reason.
    static func outcome(_ body: () throws -> [FieldValue]) -> String {
        do { return "\(try body())" } catch { return "rejected: \((error as? EventRejection)?.reason ?? "\(error)")" }
    }

    @Test("the event fast path (parseObject with known keys) agrees with parse() + mapping on events and on 20,000 mutations of them")
    func fastPathAgreesWithParser() throws {
        var rng = SeededGenerator(seed: 20261126)
        let samples = [
            #"{"id":1,"age":38,"sex":"M","weight_kg":78.6,"bmi":null,"diagnosis":"MDD","phq9":null,"enrolled_on":"2024-11-01"}"#,
            #"{"enrolled_on":"2024-02-29","id":-0,"age":1e2,"weight_kg":-12.5E-1,"bmi":7,"phq9":9223372036854775807}"#,
            #" { "id" : 9223372036854775808 , "sex" : "caf\u00e9" } "#,
            #"{"id":2,"sex":"naïve","diagnosis":"line\nbreak"}"#,
            #"{"id":6,"diagnosis":"reports \"better sleep\"","sex":"a\/b\\c\td","enrolled_on":"2023-01-31"}"#,
            #"{"id":3,"id":4}"#, #"{}"#, #"{"id":5,"age":true,"sex":false,"bmi":[1]}"#,
            #"{"\u0069d":7,"colour":"red","colour":"blue"}"#,
        ]
        let decoder = EventDecoder(source: Self.intake)
        let keys = JSONKeys(Self.intake.columns.map(\.name))
        func readAsObject(_ bytes: [UInt8]) -> Bool {
            if case .members? = try? JSONParser.parseObject(bytes, keys: keys) { return true }
            return false
        }
        var fastPathTaken = 0
        let alphabet = Array(#"{}[]":,.-+eE0123456789 tfnul"#.utf8) + [0x0A, 0x00, 0xC3, 0xA9]
        let numeric = Array("0123456789.-eE".utf8)
        for sample in samples {
            let bytes = Array(sample.utf8)
            #expect(Self.outcome { try decoder.decode(bytes) } == Self.outcome { try Self.referenceDecode(bytes, source: Self.intake) }, "\(sample)")
            for _ in 0..<(20_000 / samples.count) {
                var mutated = bytes
                for _ in 0...Int.random(in: 0...2, using: &rng) {
                    let position = Int.random(in: 0..<max(mutated.count, 1), using: &rng)
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0 where !mutated.isEmpty:
                        // Digits mostly stay number-like, so many mutations stay well-formed.
                        let isDigit = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(mutated[position])
                        mutated[position] = (isDigit ? numeric : alphabet).randomElement(using: &rng)!
                    case 1 where !mutated.isEmpty: mutated.remove(at: position)
                    case 2: mutated.insert(alphabet.randomElement(using: &rng)!, at: min(position, mutated.count))
                    default: mutated = Array(mutated.prefix(position))
                    }
                }
                if readAsObject(mutated) { fastPathTaken += 1 }
                let fast = Self.outcome { try decoder.decode(mutated) }
                let reference = Self.outcome { try Self.referenceDecode(mutated, source: Self.intake) }
                #expect(fast == reference, "\(String(decoding: mutated, as: UTF8.self))")
            }
        }
        // The comparison means something only if many mutations stayed on the fast path.
        #expect(fastPathTaken > 300, "\(fastPathTaken)")
    }
}
