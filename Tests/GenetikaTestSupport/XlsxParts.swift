import Foundation
import GenetikaDataset

/// Builds small `.xlsx` archives part by part, for tests that need a particular structure
/// or a particular defect.
package struct XlsxParts {
    package var parts: [(name: String, bytes: [UInt8], options: ZipWriter.EntryOptions)] = []

    package init() {}

    /// A minimal valid workbook with one sheet named `sheetName` whose sheetData is `rowsXML`.
    package static func minimal(rowsXML: String, sheetName: String = "data", sharedStrings: [String] = []) -> XlsxParts {
        var parts = XlsxParts()
        parts.set("_rels/.rels", """
            <?xml version="1.0" encoding="UTF-8"?>
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>
            """)
        parts.set("xl/workbook.xml", """
            <?xml version="1.0" encoding="UTF-8"?>
            <workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="\(sheetName)" sheetId="1" r:id="rId1"/></sheets></workbook>
            """)
        parts.set("xl/_rels/workbook.xml.rels", """
            <?xml version="1.0" encoding="UTF-8"?>
            <Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>
            """)
        parts.set("xl/sharedStrings.xml", """
            <?xml version="1.0" encoding="UTF-8"?>
            <sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">\(sharedStrings.map { "<si><t>\($0)</t></si>" }.joined())</sst>
            """)
        parts.set("xl/worksheets/sheet1.xml", """
            <?xml version="1.0" encoding="UTF-8"?>
            <worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>\(rowsXML)</sheetData></worksheet>
            """)
        return parts
    }

    package mutating func set(_ name: String, _ text: String, options: ZipWriter.EntryOptions = .init()) {
        set(name, Array(text.utf8), options: options)
    }

    package mutating func set(_ name: String, _ bytes: [UInt8], options: ZipWriter.EntryOptions = .init()) {
        remove(name)
        parts.append((name, bytes, options))
    }

    package mutating func remove(_ name: String) {
        parts.removeAll { $0.name == name }
    }

    /// Writes the archive to a new temporary file and returns its path.
    package func write(named: String = "test.xlsx", zip64Directory: Bool = false) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("genetika-xlsx-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(named).path
        let zip = try ZipWriter(path: path, zip64Directory: zip64Directory)
        for part in parts { try zip.addEntry(part.name, bytes: part.bytes, options: part.options) }
        try zip.finish()
        return path
    }
}

/// A deterministic pseudo-random generator (SplitMix64) for seeded tests.
package struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
