import GenetikaSupport
import GenetikaJSON
import GenetikaXlsx
import GenetikaStorage
/// A row that cannot become an event, and why.
struct RowRejection: Error, Sendable, Equatable, CustomStringConvertible {
    var row: Int
    var reason: String
    /// The cell at fault (`B17`), when one is.
    var cell: String?
    var description: String { "row \(row): \(reason)" }

    init(row: Int, reason: String, cell: String? = nil) {
        self.row = row
        self.reason = reason
        self.cell = cell
    }
}

/// Turns spreadsheet rows of one source into typed events: finds the configured columns in
/// the header row, converts each cell to its column's type (`NA` and empty cells become
/// null) and serializes the event as JSON keyed by the source's key column.
struct RowMapper: Sendable {
    let source: SourceConfiguration
    /// For each configured column, its position in the sheet.
    private let positions: [Int]
    private let keyIndex: Int
    /// The header row's names by position ("" where a cell is not text).
    let headers: [String]
    /// `{"name":` for the first column, `,"name":` for the others.
    private let memberPrefixes: [[UInt8]]

    /// Matches the header row against the configured columns; throws naming the file and
    /// the missing columns.
    init(source: SourceConfiguration, header: XlsxRow, file: String) throws(XlsxError) {
        self.source = source
        var byName: [String: Int] = [:]
        for (index, cell) in header.cells.enumerated() {
            // The first column with a given header (ignoring surrounding spaces) wins.
            if case .string(let name) = cell, byName[name.trimmedWhitespace] == nil { byName[name.trimmedWhitespace] = index }
        }
        var positions: [Int] = []
        var missing: [String] = []
        for column in source.columns {
            if let index = byName[column.header] { positions.append(index) } else { missing.append(column.header) }
        }
        guard missing.isEmpty else {
            let found = header.cells.compactMap { if case .string(let s) = $0 { "\"\(s)\"" } else { nil } }.joined(separator: ", ")
            throw XlsxError(.invalidCell, file: file, row: header.number,
                            "header row lacks column(s) \(missing.map { "\"\($0)\"" }.joined(separator: ", ")) (found \(found))")
        }
        self.positions = positions
        headers = header.cells.map { if case .string(let name) = $0 { name.trimmedWhitespace } else { "" } }
        memberPrefixes = source.columns.enumerated().map { index, column in
            var writer = JSONWriter(reservingCapacity: column.name.utf8.count + 4)
            writer.appendRaw(UInt8(ascii: index == 0 ? "{" : ","))
            writer.writeString(column.name)
            writer.appendRaw(UInt8(ascii: ":"))
            return writer.bytes
        }
        keyIndex = source.columns.firstIndex { $0.name == source.key } ?? 0
    }

    /// The typed values of a data row, in configuration column order.
    func values(of row: XlsxRow) throws(RowRejection) -> [FieldValue] {
        var values: [FieldValue] = []
        values.reserveCapacity(positions.count)
        for (column, position) in zip(source.columns, positions) {
            do {
                values.append(try Self.convert(row[position], to: column, row: row.number))
            } catch {
                var rejection = error
                rejection.cell = columnName(position) + String(row.number)
                throw rejection
            }
        }
        if values[keyIndex] == .null {
            throw RowRejection(row: row.number, reason: "missing \(source.key) (the key column)",
                               cell: columnName(positions[keyIndex]) + String(row.number))
        }
        return values
    }

    /// The Kafka key: the key column's value as text.
    package func key(of values: [FieldValue]) -> String {
        switch values[keyIndex] {
        case .integer(let v): String(v)
        case .text(let v): v
        default: ""
        }
    }

    /// The event's JSON: `{"column": value, …}` in configuration order.
    package func event(of values: [FieldValue]) -> [UInt8] {
        var writer = JSONWriter(reservingCapacity: 32 * values.count)
        for (index, value) in values.enumerated() {
            // `{"name":` or `,"name":`, serialized once per column.
            writer.appendRaw(memberPrefixes[index])
            switch value {
            case .null: writer.appendRaw(Self.null)
            case .integer(let v): writer.writeInteger(v)
            case .real(let v): writer.writeDouble(v)
            case .text(let v), .temporal(let v): writer.writeString(v)
            case .boolean(let v): writer.appendRaw(v ? Self.true : Self.false)
            }
        }
        writer.appendRaw(values.isEmpty ? Self.emptyObject : Self.closingBrace)
        return writer.bytes
    }

    private static let null = Array("null".utf8), `true` = Array("true".utf8), `false` = Array("false".utf8)
    private static let emptyObject = Array("{}".utf8), closingBrace = Array("}".utf8)

    /// A spreadsheet cell as a value of `column`'s type.
    static func convert(_ cell: CellValue, to column: ColumnConfiguration, row: Int) throws(RowRejection) -> FieldValue {
        func reject(_ what: String) -> RowRejection {
            RowRejection(row: row, reason: "column \(column.name): expected \(column.type.rawValue), found \(what)")
        }
        let value: FieldValue
        switch (column.type, cell) {
        case (_, .empty):
            value = .null
        case (_, .string(let text)) where text.isNotAvailableMarker:
            value = .null
        case (.integer, .integer(let v)):
            value = .integer(v)
        case (.integer, .number(let v)):
            guard v == v.rounded(), abs(v) < 9.2e18 else { throw reject("the number \(v)") }
            value = .integer(Int64(v))
        case (.real, .integer(let v)):
            value = .real(Double(v))
        case (.real, .number(let v)):
            value = .real(v)
        case (.text, .string(let v)):
            value = .text(v)
        case (.text, .integer(let v)):
            value = .text(String(v))
        case (.text, .number(let v)):
            value = .text(v.description)
        case (.text, .boolean(let v)):
            value = .text(v ? "TRUE" : "FALSE")
        case (.text, .dateTime(let v)):
            value = .text(v.hasTime ? v.isoDateTime : v.isoDate)
        case (.boolean, .boolean(let v)):
            value = .boolean(v)
        case (.boolean, .integer(let v)) where v == 0 || v == 1:
            value = .boolean(v == 1)
        case (.boolean, .string(let v)) where ["true", "false"].contains(v.lowercased()):
            value = .boolean(v.lowercased() == "true")
        case (.date, .dateTime(let v)):
            guard !v.hasTime else { throw reject("a date with a time of day (\(v.isoDateTime))") }
            value = .temporal(v.isoDate)
        case (.date, .string(let v)):
            guard let parsed = SpreadsheetDateTime(iso: v), !parsed.hasTime else { throw reject("the text \"\(v)\"") }
            value = .temporal(parsed.isoDate)
        case (.datetime, .dateTime(let v)):
            value = .temporal(v.isoDateTime)
        case (.datetime, .string(let v)):
            guard let parsed = SpreadsheetDateTime(iso: v) else { throw reject("the text \"\(v)\"") }
            value = .temporal(parsed.isoDateTime)
        case (_, .error(let v)):
            throw reject("the error value \(v)")
        case (_, .string(let v)):
            throw reject("the text \"\(v.prefix(40))\"")
        case (_, let other):
            throw reject(describe(other))
        }
        if value == .null && !column.nullable {
            throw RowRejection(row: row, reason: "column \(column.name): a value is required")
        }
        return value
    }

    private static func describe(_ cell: CellValue) -> String {
        switch cell {
        case .empty: "an empty cell"
        case .integer(let v): "the integer \(v)"
        case .number(let v): "the number \(v)"
        case .string(let v): "the text \"\(v)\""
        case .boolean(let v): "the boolean \(v ? "TRUE" : "FALSE")"
        case .dateTime(let v): "the date \(v.isoDateTime)"
        case .error(let v): "the error value \(v)"
        }
    }
}

extension String {
    /// `NA` (the sources' missing-value marker), whitespace around it allowed. Checks for an
    /// `N` first, so that ordinary text costs no trimming copy.
    var isNotAvailableMarker: Bool {
        utf8.contains(UInt8(ascii: "N")) && trimmedWhitespace == "NA"
    }

}
