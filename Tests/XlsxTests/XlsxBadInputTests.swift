import Foundation
import GenetikaTestSupport
import Testing
@testable import GenetikaXlsx

@Suite("xlsx reader: bad input gives a typed error naming the file and part")
struct XlsxBadInputTests {
    static let fixture = repositoryRoot.appendingPathComponent("Fixtures/sim_file1.xlsx").path

    /// Reads every row of the first sheet and returns the error it threw.
    func readError(_ path: String, limits: XlsxLimits = XlsxLimits()) -> XlsxError? {
        do {
            _ = try XlsxWorkbook(path: path, limits: limits).rows().readAll()
            return nil
        } catch {
            return error
        }
    }

    func copyOfFixture(_ change: (inout [UInt8]) throws -> Void) throws -> String {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.fixture)))
        try change(&bytes)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-bad-\(UUID().uuidString.prefix(8)).xlsx").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Offset of the central directory record of `name` in a ZIP file's bytes.
    func centralRecord(_ bytes: [UInt8], _ name: String) throws -> Int {
        let needle = Array(name.utf8)
        for i in 0..<(bytes.count - 46) where bytes[i] == 0x50 && bytes[i + 1] == 0x4B && bytes[i + 2] == 1 && bytes[i + 3] == 2 {
            let length = Int(bytes[i + 28]) | Int(bytes[i + 29]) << 8
            if length == needle.count, Array(bytes[(i + 46)..<(i + 46 + length)]) == needle { return i }
        }
        throw TestSetupError("no central directory record for \(name)")
    }

    @Test("a DOCTYPE with an external entity (XXE) is refused, nothing fetched")
    func xxe() throws {
        var parts = XlsxParts.minimal(rowsXML: "")
        parts.set("xl/worksheets/sheet1.xml", """
            <?xml version="1.0"?>
            <!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
            <worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&xxe;</t></is></c></row></sheetData></worksheet>
            """)
        let error = try #require(readError(parts.write(named: "xxe.xlsx")))
        #expect(error.kind == .forbiddenXML)
        #expect(error.file == "xxe.xlsx")
        #expect(error.part == "xl/worksheets/sheet1.xml")
        #expect(error.description.contains("DOCTYPE"))
        #expect(!error.description.contains("root:"))
    }

    @Test("billion laughs in the shared strings is refused before any expansion")
    func billionLaughs() throws {
        var entities = #"<!ENTITY lol0 "lol">"#
        for i in 1...9 { entities += "<!ENTITY lol\(i) \"" + String(repeating: "&lol\(i - 1);", count: 10) + "\">" }
        var parts = XlsxParts.minimal(rowsXML: #"<row r="1"><c r="A1" t="s"><v>0</v></c></row>"#)
        parts.set("xl/sharedStrings.xml", "<?xml version=\"1.0\"?><!DOCTYPE sst [\(entities)]><sst><si><t>&lol9;</t></si></sst>")
        let error = try #require(readError(parts.write(named: "laughs.xlsx")))
        #expect(error.kind == .forbiddenXML)
        #expect(error.part == "xl/sharedStrings.xml")
    }

    @Test("an undeclared entity reference is malformed XML, not an expansion")
    func undeclaredEntity() throws {
        let parts = XlsxParts.minimal(rowsXML: #"<row r="1"><c r="A1" t="inlineStr"><is><t>&nope;</t></is></c></row>"#)
        let error = try #require(readError(parts.write()))
        #expect(error.kind == .forbiddenXML || error.kind == .malformedXML)
        #expect(error.part == "xl/worksheets/sheet1.xml")
    }

    @Test("a decompression bomb is refused for its ratio, before inflating")
    func compressionRatio() throws {
        var parts = XlsxParts.minimal(rowsXML: "")
        let filler = [UInt8](repeating: UInt8(ascii: " "), count: 20 << 20)
        parts.set("xl/worksheets/sheet1.xml", Array("<worksheet><sheetData>".utf8) + filler + Array("</sheetData></worksheet>".utf8))
        let error = try #require(readError(parts.write(named: "bomb.xlsx")))
        #expect(error.kind == .limitExceeded)
        #expect(error.part == "xl/worksheets/sheet1.xml")
        #expect(error.message.contains("compression ratio") && error.message.contains("xlsx.maxCompressionRatio"))
    }

    @Test("a part larger than xlsx.maxPartBytes is refused")
    func partSize() throws {
        let error = try #require(readError(Self.fixture, limits: XlsxLimits(maxPartBytes: 2048)))
        #expect(error.kind == .limitExceeded)
        #expect(error.file == "sim_file1.xlsx")
        #expect(error.message.contains("xlsx.maxPartBytes"))
    }

    @Test("a part that inflates beyond its declared size is stopped there")
    func lyingSize() throws {
        let path = try copyOfFixture { bytes in
            let record = try centralRecord(bytes, "xl/worksheets/sheet1.xml")
            bytes[record + 24] = 100; bytes[record + 25] = 0; bytes[record + 26] = 0; bytes[record + 27] = 0
        }
        let error = try #require(readError(path))
        #expect(error.kind == .sizeMismatch)
        #expect(error.part == "xl/worksheets/sheet1.xml")
    }

    @Test("a CRC-32 mismatch names the part")
    func crcMismatch() throws {
        let path = try copyOfFixture { bytes in
            let record = try centralRecord(bytes, "xl/worksheets/sheet1.xml")
            bytes[record + 16] ^= 0xFF
        }
        let error = try #require(readError(path))
        #expect(error.kind == .checksumMismatch)
        #expect(error.part == "xl/worksheets/sheet1.xml")
        #expect(error.message.contains("CRC-32"))
    }

    @Test("corrupt deflate data is an error, not a crash")
    func corruptDeflate() throws {
        let path = try copyOfFixture { bytes in
            let record = try centralRecord(bytes, "xl/worksheets/sheet1.xml")
            let local = Int(bytes[record + 42]) | Int(bytes[record + 43]) << 8 | Int(bytes[record + 44]) << 16
            let data = local + 30 + (Int(bytes[local + 26]) | Int(bytes[local + 27]) << 8) + (Int(bytes[local + 28]) | Int(bytes[local + 29]) << 8)
            for i in data..<(data + 64) { bytes[i] = 0xFF }
        }
        let error = try #require(readError(path))
        #expect([.corrupt, .checksumMismatch, .truncated, .sizeMismatch, .malformedXML].contains(error.kind))
        #expect(error.part == "xl/worksheets/sheet1.xml")
    }

    @Test("a truncated file is reported, from the end and from the middle")
    func truncated() throws {
        let cut = try copyOfFixture { bytes in bytes.removeLast(bytes.count / 2) }
        let error = try #require(readError(cut))
        #expect(error.kind == .notAZip)
        #expect(error.message.contains("end-of-central-directory"))

        let middle = try copyOfFixture { bytes in bytes.removeSubrange(1000..<3000) }
        let error2 = try #require(readError(middle))
        #expect([.truncated, .corrupt].contains(error2.kind), "\(error2)")
    }

    @Test("a file that is not an xlsx (text, empty, a bare zip) is rejected by name")
    func notXlsx() throws {
        let directory = FileManager.default.temporaryDirectory
        let text = directory.appendingPathComponent("notes-\(UUID().uuidString.prefix(6)).xlsx")
        try Data("id,age\n1,38\n".utf8).write(to: text)
        let e1 = try #require(readError(text.path))
        #expect(e1.kind == .notAZip && e1.file == text.lastPathComponent)

        let empty = directory.appendingPathComponent("empty-\(UUID().uuidString.prefix(6)).xlsx")
        try Data().write(to: empty)
        #expect(readError(empty.path)?.kind == .notAZip)

        var parts = XlsxParts()
        parts.set("readme.txt", "hello")
        let e3 = try #require(readError(parts.write(named: "plain.zip")))
        #expect(e3.kind == .missingPart && e3.part == "xl/workbook.xml")

        #expect(readError("/nonexistent/file.xlsx")?.kind == .unreadable)
    }

    @Test("a missing relationships part, relationship, sheet part or sheet name is reported")
    func missingPieces() throws {
        var noRels = XlsxParts.minimal(rowsXML: "")
        noRels.remove("xl/_rels/workbook.xml.rels")
        let e1 = try #require(readError(noRels.write()))
        #expect(e1.kind == .missingPart && e1.part == "xl/_rels/workbook.xml.rels")

        var badId = XlsxParts.minimal(rowsXML: "")
        badId.set("xl/workbook.xml", #"<workbook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="data" sheetId="1" r:id="rId9"/></sheets></workbook>"#)
        let e2 = try #require(readError(badId.write()))
        #expect(e2.kind == .missingPart && e2.message.contains("rId9"))

        var noSheet = XlsxParts.minimal(rowsXML: "")
        noSheet.remove("xl/worksheets/sheet1.xml")
        let e3 = try #require(readError(noSheet.write()))
        #expect(e3.kind == .missingPart && e3.part == "xl/worksheets/sheet1.xml" && e3.message.contains("\"data\""))

        do {
            _ = try XlsxWorkbook(path: Self.fixture).rows(sheet: "nope")
            Issue.record("expected missingSheet")
        } catch {
            #expect(error.kind == .missingSheet && error.message.contains("\"intake\""))
        }
    }

    @Test("malformed XML names the part and line")
    func malformedXML() throws {
        let parts = XlsxParts.minimal(rowsXML: "<row r=\"1\"><c r=\"A1\"><v>1</v></row>")
        let error = try #require(readError(parts.write()))
        #expect(error.kind == .malformedXML)
        #expect(error.part == "xl/worksheets/sheet1.xml")
        #expect(error.message.contains("line"))
    }

    @Test("bad cell references, unknown types and dangling shared strings name the row")
    func badCells() throws {
        for (xml, fragment) in [
            (#"<row r="1"><c r="1A"><v>1</v></c></row>"#, "invalid cell reference"),
            (#"<row r="1"><c r="A2"><v>1</v></c></row>"#, "inside row 1"),
            (#"<row r="1"><c r="A1" t="zz"><v>1</v></c></row>"#, "unknown cell type"),
            (#"<row r="1"><c r="A1" t="s"><v>5</v></c></row>"#, "shared string"),
            (#"<row r="2"><c r="A2"><v>1</v></c></row><row r="1"/>"#, "ascending"),
            (#"<row r="1"><c r="A1"><v>1x</v></c></row>"#, "invalid number"),
        ] {
            let error = try #require(readError(XlsxParts.minimal(rowsXML: xml).write()))
            #expect(error.kind == .invalidCell, "\(xml)")
            #expect(error.message.contains(fragment), "\(error)")
            #expect(error.row != nil)
        }
    }

    @Test("unsupported compression and encryption are named")
    func unsupported() throws {
        let path = try copyOfFixture { bytes in
            let record = try centralRecord(bytes, "xl/worksheets/sheet1.xml")
            bytes[record + 10] = 12  // bzip2
        }
        let error = try #require(readError(path))
        #expect(error.kind == .unsupported && error.message.contains("method 12"), "\(error)")
    }
}
