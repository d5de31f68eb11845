import GenetikaXlsx
/// Writes a one-sheet `.xlsx` workbook row by row, streaming the sheet into the archive.
/// Text goes to the shared-strings table (deduplicated), dates and datetimes get date
/// styles. Used by `genetika-dataset` for benchmark and crash-test datasets.
package final class XlsxWriter {
    private let zip: ZipWriter
    private let sheetName: String
    private var sheet: ZipEntryWriter?
    private var sharedIndex: [String: Int] = [:]
    private var sharedStrings: [String] = []
    private var rowNumber = 0
    private var line: [UInt8] = []

    /// Styles: 0 general, 1 date (yyyy-mm-dd), 2 datetime (yyyy-mm-dd hh:mm:ss).
    static let stylesXML = """
        <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
        <styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">\
        <numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd"/><numFmt numFmtId="165" formatCode="yyyy\\-mm\\-dd hh:mm:ss"/></numFmts>\
        <fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>\
        <fills count="1"><fill><patternFill patternType="none"/></fill></fills>\
        <borders count="1"><border/></borders>\
        <cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>\
        <cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>\
        <xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
        <xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>\
        </styleSheet>
        """

    package init(path: String, sheetName: String = "Sheet1") throws {
        zip = try ZipWriter(path: path)
        self.sheetName = sheetName
        line.reserveCapacity(1024)
    }

    /// Writes the rows produced by `rows` (called once; it calls `write` for each row).
    package func writeSheet(_ rows: (XlsxWriter) throws -> Void) throws {
        try zip.addEntry("xl/worksheets/sheet1.xml") { entry in
            self.sheet = entry
            defer { self.sheet = nil }
            try entry.write(Array("""
                <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
                <worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
                """.utf8))
            try rows(self)
            try entry.write(Array("</sheetData></worksheet>".utf8))
        }
    }

    /// Appends one row (inside `writeSheet`).
    package func write(_ cells: [CellValue]) throws {
        guard let sheet else { throw XlsxError(.invalidCell, file: zip.path, "write called outside writeSheet") }
        rowNumber += 1
        line.removeAll(keepingCapacity: true)
        append("<row r=\"\(rowNumber)\">")
        for (column, cell) in cells.enumerated() {
            let reference = columnName(column) + String(rowNumber)
            switch cell {
            case .empty:
                continue
            case .integer(let value):
                append("<c r=\"\(reference)\"><v>\(value)</v></c>")
            case .number(let value):
                append("<c r=\"\(reference)\"><v>\(value.description)</v></c>")
            case .boolean(let value):
                append("<c r=\"\(reference)\" t=\"b\"><v>\(value ? 1 : 0)</v></c>")
            case .string(let value):
                let index: Int
                if let existing = sharedIndex[value] {
                    index = existing
                } else {
                    index = sharedStrings.count
                    sharedIndex[value] = index
                    sharedStrings.append(value)
                }
                append("<c r=\"\(reference)\" t=\"s\"><v>\(index)</v></c>")
            case .dateTime(let value):
                let serial = Double(value.daysSinceEpoch - daysFromCivil(1899, 12, 30))
                    + Double(((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.millisecond) / 86_400_000
                append("<c r=\"\(reference)\" s=\"\(value.hasTime ? 2 : 1)\"><v>\(serial.description)</v></c>")
            case .error(let value):
                append("<c r=\"\(reference)\" t=\"e\"><v>")
                appendEscaped(value)
                append("</v></c>")
            }
        }
        append("</row>")
        try sheet.write(line)
    }

    /// Writes the remaining parts and the central directory.
    package func close() throws {
        try zip.addEntry("xl/sharedStrings.xml") { entry in
            line.removeAll(keepingCapacity: true)
            append("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" count=\"\(sharedStrings.count)\" uniqueCount=\"\(sharedStrings.count)\">")
            for string in sharedStrings {
                append("<si><t xml:space=\"preserve\">")
                appendEscaped(string)
                append("</t></si>")
                if line.count > 1 << 16 {
                    try entry.write(line)
                    line.removeAll(keepingCapacity: true)
                }
            }
            append("</sst>")
            try entry.write(line)
        }
        try zip.addEntry("xl/styles.xml", bytes: Array(Self.stylesXML.utf8))
        line.removeAll(keepingCapacity: true)
        appendEscaped(sheetName)
        let name = String(decoding: line, as: UTF8.self)
        try zip.addEntry("xl/workbook.xml", bytes: Array("""
            <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
            <workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="\(name)" sheetId="1" r:id="rId1"/></sheets></workbook>
            """.utf8))
        try zip.addEntry("xl/_rels/workbook.xml.rels", bytes: Array("""
            <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">\
            <Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>\
            <Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>\
            <Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>\
            </Relationships>
            """.utf8))
        try zip.addEntry("_rels/.rels", bytes: Array("""
            <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>
            """.utf8))
        try zip.addEntry("[Content_Types].xml", bytes: Array("""
            <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
            <Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">\
            <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>\
            <Default Extension="xml" ContentType="application/xml"/>\
            <Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>\
            <Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>\
            <Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>\
            <Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>\
            </Types>
            """.utf8))
        try zip.finish()
    }

    private func append(_ text: String) {
        line.append(contentsOf: text.utf8)
    }

    private func appendEscaped(_ text: String) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "&"): append("&amp;")
            case UInt8(ascii: "<"): append("&lt;")
            case UInt8(ascii: ">"): append("&gt;")
            case UInt8(ascii: "\""): append("&quot;")
            case 0x09, 0x0A, 0x0D: line.append(byte)
            case 0x00..<0x20: append("_x00" + String(byte, radix: 16, uppercase: true).leftPadded(2) + "_")
            default: line.append(byte)
            }
        }
    }
}


extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
