#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// One row of a sheet: its 1-based number and its cells from column A up to the last cell
/// the sheet defines in that row (missing cells are `.empty`).
package struct XlsxRow: Sendable, Equatable {
    package var number: Int
    package var cells: [CellValue]

    /// A row made elsewhere (a dead letter's kept cells, tests).
    package init(number: Int, cells: [CellValue]) {
        self.number = number
        self.cells = cells
    }

    package subscript(column: Int) -> CellValue { column < cells.count ? cells[column] : .empty }
    package var isEmpty: Bool { cells.allSatisfy(\.isEmpty) }
}

/// Streams a worksheet's rows: decompresses the part chunk by chunk and parses it with
/// libxml2's SAX2 push parser, so memory holds one chunk's rows at a time, never the sheet.
package final class XlsxRowReader {
    /// Excel's largest sheet: 16,384 columns and 1,048,576 rows.
    static let maxColumns = 16_384
    static let maxRows = 1_048_576

    private let workbook: XlsxWorkbook
    private let stream: ZipEntryStream
    private let parser: XMLPushParser
    private let handler: SheetHandler
    private let chunk: UnsafeMutableRawBufferPointer
    private var pending: [XlsxRow] = []
    private var pendingIndex = 0
    private var finished = false

    package var file: String { workbook.file }
    package let part: String

    init(workbook: XlsxWorkbook, entry: ZipEntry) throws(XlsxError) {
        self.workbook = workbook
        part = entry.name
        stream = try workbook.archive.stream(entry, limits: workbook.limits)
        handler = SheetHandler(workbook: workbook, part: entry.name)
        parser = try XMLPushParser(handler: handler, file: workbook.file, part: entry.name)
        chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 1)
    }

    deinit {
        chunk.deallocate()
    }

    /// The next row that has at least one cell element, or nil at the end of the sheet.
    package func next() throws(XlsxError) -> XlsxRow? {
        while pendingIndex >= pending.count {
            if finished { return nil }
            pending.removeAll(keepingCapacity: true)
            pendingIndex = 0
            let n = try stream.read(into: chunk)
            if n == 0 {
                try parser.finish()
                finished = true
            } else {
                try parser.feed(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
            }
            if let error = handler.error { throw error }
            swap(&pending, &handler.completed)
        }
        defer { pendingIndex += 1 }
        return pending[pendingIndex]
    }

    /// Every remaining row (for small sheets and tests).
    package func readAll() throws(XlsxError) -> [XlsxRow] {
        var rows: [XlsxRow] = []
        while let row = try next() { rows.append(row) }
        return rows
    }
}

/// Builds rows from `<row>`, `<c>`, `<v>`, `<is>` events.
private final class SheetHandler: XMLContentHandler {
    let workbook: XlsxWorkbook
    let part: String
    var completed: [XlsxRow] = []
    var error: XlsxError?
    /// `error != nil`, as a plain flag: checked on every event.
    private var failed = false
    private var lastWidth = 8

    private enum CellKind { case number, sharedString, inlineString, formulaString, boolean, error, isoDate }

    private var rowNumber = 0
    private var cells: [CellValue] = []
    private var inRow = false
    private var column = -1
    private var kind = CellKind.number
    private var style = 0
    private var text: [UInt8] = []
    private var hasValue = false
    private var capture = false
    private var inInline = false
    private var phoneticDepth = 0

    init(workbook: XlsxWorkbook, part: String) {
        self.workbook = workbook
        self.part = part
        text.reserveCapacity(64)
    }

    private func fail(_ message: String) {
        if !failed {
            error = XlsxError(.invalidCell, file: workbook.file, part: part, row: rowNumber, message)
            failed = true
        }
    }

    override func startElement(_ name: XMLName, _ attributes: XMLAttributes) {
        guard !failed else { return }
        let first = name.pointer[0]
        if first == UInt8(ascii: "c"), name.pointer[1] == 0 {
            startCell(attributes)
        } else if first == UInt8(ascii: "v"), name.pointer[1] == 0 {
            capture = true
            hasValue = true
        } else if name.is("row") {
            startRow(attributes)
        } else if name.is("is") {
            inInline = true
            hasValue = true
        } else if name.is("t") {
            if inInline && phoneticDepth == 0 { capture = true }
        } else if name.is("rPh") {
            phoneticDepth += 1
        }
    }

    override func endElement(_ name: XMLName) {
        guard !failed else { return }
        let first = name.pointer[0]
        if first == UInt8(ascii: "c"), name.pointer[1] == 0 {
            endCell()
        } else if first == UInt8(ascii: "v"), name.pointer[1] == 0 {
            capture = false
        } else if name.is("row") {
            lastWidth = cells.count
            completed.append(XlsxRow(number: rowNumber, cells: cells))
            inRow = false
        } else if name.is("t") {
            capture = false
        } else if name.is("is") {
            inInline = false
        } else if name.is("rPh") {
            phoneticDepth -= 1
        }
    }

    override func characters(_ bytes: UnsafeBufferPointer<UInt8>) {
        if capture { text.append(contentsOf: bytes) }
    }

    private func startRow(_ attributes: XMLAttributes) {
        var number = rowNumber + 1
        if let raw = attributes.raw("r") {
            guard let parsed = parseDecimal(raw), parsed >= 1, parsed <= XlsxRowReader.maxRows else {
                fail("invalid row number \"\(String(decoding: raw, as: UTF8.self))\"")
                return
            }
            number = parsed
        }
        if number <= rowNumber {
            let previous = rowNumber
            rowNumber = number
            fail("row \(number) appears after row \(previous); rows must be in ascending order")
            return
        }
        rowNumber = number
        cells = []
        cells.reserveCapacity(lastWidth)
        column = -1
        inRow = true
    }

    private func startCell(_ attributes: XMLAttributes) {
        if !inRow {
            fail("a cell outside any row")
            return
        }
        var index = column + 1
        if let reference = attributes.raw("r") {
            guard let parsed = parseCellReference(reference) else {
                fail("invalid cell reference \"\(String(decoding: reference, as: UTF8.self))\"")
                return
            }
            if parsed.row != rowNumber {
                fail("cell \(String(decoding: reference, as: UTF8.self)) is inside row \(rowNumber)")
                return
            }
            index = parsed.column
        }
        if index <= column {
            fail("cell in column \(columnName(index)) appears after column \(columnName(column))")
            return
        }
        column = index
        kind = .number
        if let type = attributes.raw("t"), let firstByte = type.first {
            switch (firstByte, type.count) {
            case (UInt8(ascii: "n"), 1): kind = .number
            case (UInt8(ascii: "s"), 1): kind = .sharedString
            case (UInt8(ascii: "b"), 1): kind = .boolean
            case (UInt8(ascii: "e"), 1): kind = .error
            case (UInt8(ascii: "d"), 1): kind = .isoDate
            case (UInt8(ascii: "s"), 3): kind = .formulaString
            case (UInt8(ascii: "i"), 9): kind = .inlineString
            default:
                fail("unknown cell type \"\(String(decoding: type, as: UTF8.self))\" in \(columnName(index))\(rowNumber)")
                return
            }
        }
        style = attributes.raw("s").flatMap(parseDecimal) ?? 0
        text.removeAll(keepingCapacity: true)
        hasValue = false
        capture = false
    }

    private func endCell() {
        let value: CellValue
        // Like openpyxl, an empty <v></v> (a formula without a cached result) is no value.
        if !hasValue || (text.isEmpty && kind != .inlineString) {
            value = .empty
        } else {
            switch kind {
            case .number:
                value = numberValue()
            case .sharedString:
                guard let index = parseDecimal(text[...]), let string = workbook.sharedString(index) else {
                    fail("cell \(columnName(column))\(rowNumber) refers to shared string \"\(String(decoding: text, as: UTF8.self))\", which does not exist")
                    return
                }
                value = .string(string)
            case .inlineString, .formulaString:
                value = .string(String(decoding: text, as: UTF8.self))
            case .boolean:
                value = .boolean(text.count == 1 && text[0] == UInt8(ascii: "1") || String(decoding: text, as: UTF8.self) == "true")
            case .error:
                value = .error(String(decoding: text, as: UTF8.self))
            case .isoDate:
                guard let date = SpreadsheetDateTime(iso: String(decoding: text, as: UTF8.self)) else {
                    fail("cell \(columnName(column))\(rowNumber) holds an invalid ISO date \"\(String(decoding: text, as: UTF8.self))\"")
                    return
                }
                value = .dateTime(date)
            }
        }
        if cells.count < column { cells.append(contentsOf: repeatElement(.empty, count: column - cells.count)) }
        cells.append(value)
    }

    /// `<v>` of a number cell: an integer unless it has a decimal point or an exponent (as
    /// openpyxl reads it); a date when its style is a date format.
    private func numberValue() -> CellValue {
        var isInteger = !text.isEmpty
        for byte in text where byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
            isInteger = false
            break
        }
        var double: Double?
        if isInteger, let integer = parseInteger(text) {
            if !workbook.isDateStyle(style) { return .integer(integer) }
            double = Double(integer)
        } else {
            text.append(0)
            double = text.withUnsafeBufferPointer { buffer -> Double? in
                let start = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
                var end: UnsafeMutablePointer<CChar>?
                let value = strtod(start, &end)
                guard let end, end - UnsafeMutablePointer(mutating: start) == buffer.count - 1, buffer.count > 1 else { return nil }
                return value
            }
            text.removeLast()
        }
        guard let double, double.isFinite else {
            fail("cell \(columnName(column))\(rowNumber) holds an invalid number \"\(String(decoding: text, as: UTF8.self))\"")
            return .empty
        }
        if workbook.isDateStyle(style), let date = NumberFormat.dateTime(serial: double, date1904: workbook.date1904) {
            return .dateTime(date)
        }
        return .number(double)
    }
}

@inline(__always) private func parseDecimal<C: Collection>(_ bytes: C) -> Int? where C.Element == UInt8 {
    guard !bytes.isEmpty, bytes.count <= 10 else { return nil }
    var value = 0
    for byte in bytes {
        guard byte >= 48 && byte <= 57 else { return nil }
        value = value * 10 + Int(byte - 48)
    }
    return value
}

private func parseInteger(_ bytes: [UInt8]) -> Int64? {
    var index = 0
    var negative = false
    if bytes.first == UInt8(ascii: "-") { negative = true; index = 1 } else if bytes.first == UInt8(ascii: "+") { index = 1 }
    guard index < bytes.count else { return nil }
    var value: Int64 = 0
    while index < bytes.count {
        let byte = bytes[index]
        guard byte >= 48 && byte <= 57 else { return nil }
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (s, o2) = negative ? m.subtractingReportingOverflow(Int64(byte - 48)) : m.addingReportingOverflow(Int64(byte - 48))
        if o1 || o2 { return nil }
        value = s
        index += 1
    }
    return value
}

/// `C5` → column 2 (0-based), row 5; nil when malformed or out of Excel's range.
func parseCellReference<C: Collection>(_ bytes: C) -> (column: Int, row: Int)? where C.Element == UInt8 {
    var column = 0
    var row = 0
    var letters = 0
    var digits = 0
    for byte in bytes {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z") where digits == 0:
            column = column * 26 + Int(byte - UInt8(ascii: "A")) + 1
            letters += 1
        case UInt8(ascii: "a")...UInt8(ascii: "z") where digits == 0:
            column = column * 26 + Int(byte - UInt8(ascii: "a")) + 1
            letters += 1
        case UInt8(ascii: "$"):
            continue
        case UInt8(ascii: "0")...UInt8(ascii: "9") where letters > 0:
            row = row * 10 + Int(byte - 48)
            digits += 1
        default:
            return nil
        }
        if letters > 3 || digits > 7 { return nil }
    }
    guard letters > 0, digits > 0, column <= XlsxRowReader.maxColumns, row >= 1, row <= XlsxRowReader.maxRows else { return nil }
    return (column - 1, row)
}

/// 0 → `A`, 27 → `AB`.
package func columnName(_ index: Int) -> String {
    guard index >= 0 else { return "?" }
    var n = index + 1
    var name = ""
    while n > 0 {
        let remainder = (n - 1) % 26
        name = String(UnicodeScalar(UInt8(65 + remainder))) + name
        n = (n - 1) / 26
    }
    return name
}
