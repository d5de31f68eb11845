/// Why a spreadsheet could not be read: always names the file, and the part (and row) where
/// the problem is when there is one.
package struct XlsxError: Error, Sendable, CustomStringConvertible, Equatable {
    package enum Kind: String, Sendable {
        case unreadable          // the file cannot be opened or read
        case notAZip             // no ZIP end-of-central-directory record
        case truncated           // data ends before what the ZIP directory promises
        case corrupt             // inconsistent ZIP structures or deflate data
        case checksumMismatch    // CRC-32 of a part differs from the directory's
        case sizeMismatch        // a part's size differs from the directory's
        case unsupported         // compression method or encryption we do not read
        case limitExceeded       // decompression-bomb limits (size or ratio)
        case missingPart         // workbook, relationship or sheet part absent
        case missingSheet        // no sheet of that name, or no sheets at all
        case forbiddenXML        // DOCTYPE or entity declarations (XXE, billion laughs)
        case malformedXML        // not well-formed XML
        case invalidCell         // a cell reference or value that cannot be understood
    }

    package var kind: Kind
    package var file: String
    package var part: String?
    package var row: Int?
    package var message: String

    package init(_ kind: Kind, file: String, part: String? = nil, row: Int? = nil, _ message: String) {
        self.kind = kind
        self.file = file
        self.part = part
        self.row = row
        self.message = message
    }

    package var description: String {
        var where_ = file
        if let part { where_ += ": \(part)" }
        if let row { where_ += ": row \(row)" }
        return "\(where_): \(message)"
    }
}

/// Limits that keep a hostile spreadsheet from exhausting memory or time.
package struct XlsxLimits: Sendable, Equatable {
    /// Largest uncompressed size of any one part.
    package var maxPartBytes: Int
    /// Largest uncompressed/compressed ratio of a part bigger than `ratioFloorBytes`.
    package var maxCompressionRatio: Double
    /// Parts smaller than this are never refused for their ratio.
    var ratioFloorBytes: Int

    package init(maxPartBytes: Int = 1 << 30, maxCompressionRatio: Double = 200, ratioFloorBytes: Int = 1 << 20) {
        self.maxPartBytes = maxPartBytes
        self.maxCompressionRatio = maxCompressionRatio
        self.ratioFloorBytes = ratioFloorBytes
    }
}
