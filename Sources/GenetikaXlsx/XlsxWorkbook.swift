/// An `.xlsx` workbook opened for reading: its sheets, shared strings and date formats.
/// Rows are streamed with `rows(sheet:)`; memory stays at one row plus the shared strings.
package final class XlsxWorkbook {
    /// A worksheet as the workbook lists it.
    package struct Sheet: Sendable, Equatable {
        package var name: String
        /// The worksheet part inside the archive, e.g. `xl/worksheets/sheet1.xml`.
        package var part: String
    }

    package let path: String
    package let limits: XlsxLimits
    /// Sheets in workbook order.
    package private(set) var sheets: [Sheet] = []
    /// True for workbooks using the 1904 date system.
    package private(set) var date1904 = false
    let archive: ZipArchive
    private(set) var sharedStrings: [String] = []
    /// For each cell style index (`s`), whether its number format is a date format.
    private(set) var dateStyles: [Bool] = []

    package var file: String { archive.file }

    package init(path: String, limits: XlsxLimits = XlsxLimits()) throws(XlsxError) {
        self.path = path
        self.limits = limits
        archive = try ZipArchive(path: path)
        let workbookPart = try officeDocumentPart()
        let relationships = try readRelationships(of: workbookPart)
        try readWorkbook(workbookPart, relationships: relationships)
        if let part = relationships.values.first(where: { $0.type.hasSuffix("/sharedStrings") })?.target
            ?? (archive.entry(named: "xl/sharedStrings.xml") != nil ? "xl/sharedStrings.xml" : nil) {
            try readSharedStrings(part)
        }
        if let part = relationships.values.first(where: { $0.type.hasSuffix("/styles") })?.target
            ?? (archive.entry(named: "xl/styles.xml") != nil ? "xl/styles.xml" : nil) {
            try readStyles(part)
        }
    }

    /// The sheet with this name, or the first sheet when `name` is nil.
    package func sheet(named name: String?) throws(XlsxError) -> Sheet {
        guard let first = sheets.first else { throw XlsxError(.missingSheet, file: file, "the workbook lists no sheets") }
        guard let name else { return first }
        guard let sheet = sheets.first(where: { $0.name == name }) else {
            let names = sheets.map { "\"\($0.name)\"" }.joined(separator: ", ")
            throw XlsxError(.missingSheet, file: file, "no sheet named \"\(name)\" (sheets: \(names))")
        }
        return sheet
    }

    /// Streams the rows of a sheet (the first one when `sheet` is nil).
    package func rows(sheet name: String? = nil) throws(XlsxError) -> XlsxRowReader {
        let sheet = try sheet(named: name)
        guard let entry = archive.entry(named: sheet.part) else {
            throw XlsxError(.missingPart, file: file, part: sheet.part, "the worksheet part of sheet \"\(sheet.name)\" is missing")
        }
        return try XlsxRowReader(workbook: self, entry: entry)
    }

    func isDateStyle(_ index: Int) -> Bool { index >= 0 && index < dateStyles.count && dateStyles[index] }

    func sharedString(_ index: Int) -> String? { index >= 0 && index < sharedStrings.count ? sharedStrings[index] : nil }

    // MARK: - Parts

    private func parse(_ part: String, with handler: XMLContentHandler, required: Bool = true) throws(XlsxError) {
        guard let entry = archive.entry(named: part) else {
            if required { throw XlsxError(.missingPart, file: file, part: part, "required part is missing; is this an xlsx workbook?") }
            return
        }
        let stream = try archive.stream(entry, limits: limits)
        let parser = try XMLPushParser(handler: handler, file: file, part: entry.name)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 1)
        defer { chunk.deallocate() }
        while true {
            let n = try stream.read(into: chunk)
            if n == 0 { break }
            try parser.feed(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
        try parser.finish()
    }

    struct Relationship {
        var type: String
        var target: String
    }

    /// The workbook part named by the package relationships (`_rels/.rels`).
    private func officeDocumentPart() throws(XlsxError) -> String {
        if archive.entry(named: "_rels/.rels") != nil {
            let relationships = try readRelationships(path: "_rels/.rels", base: "")
            if let target = relationships.values.first(where: { $0.type.hasSuffix("/officeDocument") })?.target {
                return target
            }
        }
        if archive.entry(named: "xl/workbook.xml") != nil { return "xl/workbook.xml" }
        throw XlsxError(.missingPart, file: file, part: "xl/workbook.xml", "no workbook part; is this an xlsx file?")
    }

    /// Relationships of a part, by id, with targets resolved to archive paths.
    private func readRelationships(of part: String) throws(XlsxError) -> [String: Relationship] {
        let directory = part.split(separator: "/").dropLast().joined(separator: "/")
        let name = part.split(separator: "/").last.map(String.init) ?? part
        let relsPath = (directory.isEmpty ? "" : directory + "/") + "_rels/" + name + ".rels"
        guard archive.entry(named: relsPath) != nil else {
            throw XlsxError(.missingPart, file: file, part: relsPath, "the workbook's relationships part is missing")
        }
        return try readRelationships(path: relsPath, base: directory)
    }

    private func readRelationships(path: String, base: String) throws(XlsxError) -> [String: Relationship] {
        let handler = RelationshipsHandler()
        try parse(path, with: handler)
        var result: [String: Relationship] = [:]
        for (id, type, target, external) in handler.relationships where !external {
            result[id] = Relationship(type: type, target: resolvePartPath(target, base: base))
        }
        return result
    }

    private func readWorkbook(_ part: String, relationships: [String: Relationship]) throws(XlsxError) {
        let handler = WorkbookHandler()
        try parse(part, with: handler)
        date1904 = handler.date1904
        for (name, id) in handler.sheets {
            guard let relationship = relationships[id] else {
                throw XlsxError(.missingPart, file: file, part: part, "sheet \"\(name)\" refers to relationship \(id), which the workbook's relationships do not define")
            }
            sheets.append(Sheet(name: name, part: relationship.target))
        }
    }

    private func readSharedStrings(_ part: String) throws(XlsxError) {
        let handler = SharedStringsHandler()
        try parse(part, with: handler, required: false)
        sharedStrings = handler.strings
    }

    private func readStyles(_ part: String) throws(XlsxError) {
        let handler = StylesHandler()
        try parse(part, with: handler, required: false)
        dateStyles = handler.cellFormatIds.map { id in
            if let code = handler.customFormats[id] { return NumberFormat.isDateFormat(code) }
            return NumberFormat.builtInDateIds.contains(id)
        }
    }
}

/// Resolves a relationship target against the directory of the part that declares it.
func resolvePartPath(_ target: String, base: String) -> String {
    var segments: [Substring] = target.hasPrefix("/") ? [] : base.split(separator: "/")
    for segment in target.split(separator: "/") {
        switch segment {
        case ".": continue
        case "..": if !segments.isEmpty { segments.removeLast() }
        default: segments.append(segment)
        }
    }
    return segments.joined(separator: "/")
}

private final class RelationshipsHandler: XMLContentHandler {
    var relationships: [(String, String, String, Bool)] = []

    override func startElement(_ name: XMLName, _ attributes: XMLAttributes) {
        guard name.is("Relationship"), let id = attributes.string("Id"), let target = attributes.string("Target") else { return }
        let external = attributes.string("TargetMode") == "External"
        relationships.append((id, attributes.string("Type") ?? "", target, external))
    }
}

private final class WorkbookHandler: XMLContentHandler {
    var sheets: [(String, String)] = []
    var date1904 = false

    override func startElement(_ name: XMLName, _ attributes: XMLAttributes) {
        if name.is("sheet"), let sheetName = attributes.string("name"), let id = attributes.string("id") {
            sheets.append((sheetName, id))
        } else if name.is("workbookPr"), let value = attributes.string("date1904") {
            date1904 = value == "1" || value == "true"
        }
    }
}

/// `<si>` items: plain `<t>` or rich-text runs `<r><t>` joined; phonetic runs `<rPh>` skipped.
private final class SharedStringsHandler: XMLContentHandler {
    var strings: [String] = []
    private var buffer: [UInt8] = []
    private var inItem = false
    private var inText = false
    private var phoneticDepth = 0

    override func startElement(_ name: XMLName, _ attributes: XMLAttributes) {
        if name.is("si") {
            inItem = true
            buffer.removeAll(keepingCapacity: true)
        } else if name.is("rPh") {
            phoneticDepth += 1
        } else if name.is("t"), inItem, phoneticDepth == 0 {
            inText = true
        }
    }

    override func endElement(_ name: XMLName) {
        if name.is("si") {
            strings.append(String(decoding: buffer, as: UTF8.self))
            inItem = false
        } else if name.is("rPh") {
            phoneticDepth -= 1
        } else if name.is("t") {
            inText = false
        }
    }

    override func characters(_ bytes: UnsafeBufferPointer<UInt8>) {
        if inText { buffer.append(contentsOf: bytes) }
    }
}

/// Custom number formats and the number format of each cell format (`cellXfs`).
private final class StylesHandler: XMLContentHandler {
    var customFormats: [Int: String] = [:]
    var cellFormatIds: [Int] = []
    private var inCellXfs = false

    override func startElement(_ name: XMLName, _ attributes: XMLAttributes) {
        if name.is("numFmt"), let id = attributes.string("numFmtId").flatMap({ Int($0) }) {
            customFormats[id] = attributes.string("formatCode") ?? ""
        } else if name.is("cellXfs") {
            inCellXfs = true
        } else if name.is("xf"), inCellXfs {
            cellFormatIds.append(attributes.string("numFmtId").flatMap { Int($0) } ?? 0)
        }
    }

    override func endElement(_ name: XMLName) {
        if name.is("cellXfs") { inCellXfs = false }
    }
}
