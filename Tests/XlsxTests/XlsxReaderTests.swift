import Foundation
import GenetikaTestSupport
import Testing
@testable import GenetikaXlsx
@testable import GenetikaDataset

@Suite("xlsx reader: structure, cell types and options")
struct XlsxReaderTests {
    @Test("what XlsxWriter writes reads back identically, including dates and escaped text")
    func writerRoundTrip() throws {
        let rows: [[CellValue]] = [
            [.string("id"), .string("text"), .string("when"), .string("flag"), .string("x")],
            [.integer(1), .string("a & b <c> \"d\" é 😀"), .dateTime(SpreadsheetDateTime(year: 2024, month: 2, day: 29)), .boolean(true), .number(2.5)],
            [.integer(-2), .string("line1\nline2"), .dateTime(SpreadsheetDateTime(year: 1999, month: 12, day: 31, hour: 23, minute: 59, second: 58, millisecond: 500)), .boolean(false), .empty],
            [.integer(9_007_199_254_740_993), .empty, .empty, .empty, .error("#DIV/0!")],
        ]
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-roundtrip-\(UUID().uuidString.prefix(8)).xlsx").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let writer = try XlsxWriter(path: path, sheetName: "R&D")
        try writer.writeSheet { w in for row in rows { try w.write(row) } }
        try writer.close()
        let workbook = try XlsxWorkbook(path: path)
        #expect(workbook.sheets.map(\.name) == ["R&D"])
        let read = try workbook.rows(sheet: "R&D").readAll()
        #expect(read.map(\.number) == [1, 2, 3, 4])
        for (r, row) in rows.enumerated() {
            let trimmed = Array(row.reversed().drop(while: \.isEmpty).reversed())
            #expect(read[r].cells == trimmed, "row \(r + 1)")
        }
    }

    @Test("stored entries, data descriptors and ZIP64 records are all read", arguments: [
        ZipWriter.EntryOptions(method: .stored), ZipWriter.EntryOptions(method: .deflate, dataDescriptor: true),
        ZipWriter.EntryOptions(method: .deflate, zip64: true), ZipWriter.EntryOptions(method: .stored, dataDescriptor: true, zip64: true),
    ])
    func zipVariants(options: ZipWriter.EntryOptions) throws {
        var parts = XlsxParts.minimal(rowsXML: #"<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1"><v>7</v></c></row>"#, sharedStrings: ["hello"])
        parts.parts = parts.parts.map { ($0.name, $0.bytes, options) }
        let path = try parts.write(zip64Directory: options.zip64)
        let rows = try XlsxWorkbook(path: path).rows().readAll()
        #expect(rows == [XlsxRow(number: 1, cells: [.string("hello"), .integer(7)])])
    }

    @Test("sparse references, skipped rows and cells without r; inline and rich strings")
    func references() throws {
        let xml = """
            <row r="2"><c r="C2"><v>3</v></c><c><v>4</v></c></row>\
            <row><c t="inlineStr"><is><r><t>ri</t></r><r><t>ch</t></r><rPh><t>ignored</t></rPh></is></c></row>\
            <row r="7"><c r="B7" t="str"><f>A1</f><v>formula text</v></c><c r="D7" t="b"><v>1</v></c><c r="E7" t="e"><v>#N/A</v></c></row>
            """
        let rows = try XlsxWorkbook(path: XlsxParts.minimal(rowsXML: xml).write()).rows().readAll()
        #expect(rows.map(\.number) == [2, 3, 7])
        #expect(rows[0].cells == [.empty, .empty, .integer(3), .integer(4)])
        #expect(rows[1].cells == [.string("rich")])
        #expect(rows[2].cells == [.empty, .string("formula text"), .empty, .boolean(true), .error("#N/A")])
    }

    @Test("rich-text shared strings join their runs and skip phonetic runs")
    func richSharedStrings() throws {
        var parts = XlsxParts.minimal(rowsXML: #"<row r="1"><c r="A1" t="s"><v>0</v></c></row>"#)
        parts.set("xl/sharedStrings.xml", #"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><r><rPr><b/></rPr><t>bold</t></r><r><t xml:space="preserve"> plain</t></r><rPh sb="0" eb="1"><t>ふりがな</t></rPh></si></sst>"#)
        #expect(try XlsxWorkbook(path: parts.write()).rows().readAll().first?.cells == [.string("bold plain")])
    }

    @Test("date formats: built-in ids, custom codes, quoted and bracketed text, and the 1904 system")
    func dates() throws {
        #expect(NumberFormat.isDateFormat("yyyy-mm-dd"))
        #expect(NumberFormat.isDateFormat("[$-409]d-mmm-yy;@"))
        #expect(NumberFormat.isDateFormat("[h]:mm:ss"))
        #expect(!NumberFormat.isDateFormat("0.00%"))
        #expect(!NumberFormat.isDateFormat("\"days\" 0"))
        #expect(!NumberFormat.isDateFormat("[Red]0.00"))
        #expect(!NumberFormat.isDateFormat("#,##0_);(#,##0)"))
        #expect(!NumberFormat.isDateFormat("General"))
        #expect(NumberFormat.dateTime(serial: 45597, date1904: false)?.isoDate == "2024-11-01")
        #expect(NumberFormat.dateTime(serial: 1, date1904: false)?.isoDate == "1900-01-01")
        #expect(NumberFormat.dateTime(serial: 61, date1904: false)?.isoDate == "1900-03-01")
        #expect(NumberFormat.dateTime(serial: 0, date1904: true)?.isoDate == "1904-01-01")
        #expect(NumberFormat.dateTime(serial: 45717.5734953704, date1904: false)?.isoDateTime == "2025-03-01T13:45:50")

        var parts = XlsxParts.minimal(rowsXML: #"<row r="1"><c r="A1" s="1"><v>1</v></c><c r="B1" s="2"><v>1.5</v></c><c r="C1"><v>1</v></c></row>"#)
        parts.set("xl/styles.xml", #"<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><numFmts><numFmt numFmtId="164" formatCode="&quot;Day&quot; dd/mm/yyyy"/></numFmts><cellStyleXfs><xf numFmtId="14"/></cellStyleXfs><cellXfs><xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="164"/></cellXfs></styleSheet>"#)
        parts.set("xl/workbook.xml", #"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><workbookPr date1904="1"/><sheets><sheet name="data" sheetId="1" r:id="rId1"/></sheets></workbook>"#)
        parts.set("xl/_rels/workbook.xml.rels", #"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="/xl/worksheets/sheet1.xml"/><Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>"#)
        let rows = try XlsxWorkbook(path: parts.write()).rows().readAll()
        #expect(rows.first?.cells == [
            .dateTime(SpreadsheetDateTime(year: 1904, month: 1, day: 2)),
            .dateTime(SpreadsheetDateTime(year: 1904, month: 1, day: 2, hour: 12)),
            .integer(1),
        ])
    }

    @Test("a sheet chosen by name; the first sheet by default")
    func sheetByName() throws {
        let path = repositoryRoot.appendingPathComponent("Fixtures/edge_sparse_openpyxl.xlsx").path
        let workbook = try XlsxWorkbook(path: path)
        #expect(workbook.sheets.count == 2)
        let second = workbook.sheets[1].name
        let first = try workbook.rows().readAll()
        let other = try workbook.rows(sheet: second).readAll()
        #expect(first != other)
        #expect(try workbook.rows(sheet: workbook.sheets[0].name).readAll() == first)
    }
}
