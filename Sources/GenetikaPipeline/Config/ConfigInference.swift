import Foundation
import GenetikaJSON
import GenetikaXlsx
import GenetikaStorage
import GenetikaSupport

/// `genetika init`: a configuration written from spreadsheets. Reads each file's header and
/// rows (all of them, streaming, or the first `sample`), infers each column's type from the
/// cells it holds and whether it may be empty, and describes one source per file.
package enum ConfigInference {
    /// What was learned of one column.
    package struct Column: Sendable, Equatable {
        package var header: String
        package var name: String
        package var type: ColumnType
        package var nullable: Bool
    }

    /// One spreadsheet's source.
    package struct Source: Sendable, Equatable {
        package var file: String
        package var sheet: String
        package var topic: String
        package var table: String
        package var key: String
        package var columns: [Column]
        package var rows: Int
    }

    struct InferenceError: Error, CustomStringConvertible {
        var description: String
    }

    /// The cells seen in one column.
    struct Seen {
        var integers = 0, reals = 0, booleans = 0, dates = 0, dateTimes = 0, isoDateTexts = 0, isoDateTimeTexts = 0, texts = 0
        var empty = false

        mutating func add(_ cell: CellValue) {
            switch cell {
            case .empty: empty = true
            case .string(let text) where text.isNotAvailableMarker: empty = true
            case .integer: integers += 1
            case .number: reals += 1
            case .boolean: booleans += 1
            case .dateTime(let value): if value.hasTime { dateTimes += 1 } else { dates += 1 }
            case .string(let text):
                if let value = SpreadsheetDateTime(iso: text) {
                    if value.hasTime { isoDateTimeTexts += 1 } else { isoDateTexts += 1 }
                } else {
                    texts += 1
                }
            case .error: texts += 1
            }
        }

        /// The narrowest type every cell seen converts to (`RowMapper.convert`'s rules).
        var type: ColumnType {
            let numbers = integers + reals
            let temporal = dates + dateTimes + isoDateTexts + isoDateTimeTexts
            let kinds = [numbers > 0, booleans > 0, temporal > 0, texts > 0].filter { $0 }.count
            if kinds != 1 { return .text }   // mixed (or nothing seen): text takes every cell
            if numbers > 0 { return reals > 0 ? .real : .integer }
            if booleans > 0 { return .boolean }
            if temporal > 0 { return dateTimes + isoDateTimeTexts > 0 ? .datetime : .date }
            return .text
        }
    }

    /// A name usable as a topic, table and column: lower case, letters, digits and `_`.
    static func identifier(_ text: String) -> String {
        var name = ""
        for scalar in text.lowercased().unicodeScalars {
            if scalar.properties.isAlphabetic && scalar.isASCII || ("0"..."9").contains(scalar) { name.unicodeScalars.append(scalar) } else if !name.hasSuffix("_") { name += "_" }
        }
        while name.hasSuffix("_") { name.removeLast() }
        while name.hasPrefix("_") { name.removeFirst() }
        if name.isEmpty { name = "column" }
        if name.first!.isNumber { name = "c_" + name }
        return name
    }

    /// Infers one source per file. `key`: the key column's header (default `id`, which must
    /// then be present); `sample`: rows to read per file (nil: all).
    package static func infer(files: [String], sheet: String? = nil, key: String? = nil, sample: Int? = nil,
                             limits: XlsxLimits = XlsxLimits()) throws -> [Source] {
        var sources: [Source] = []
        for path in files {
            let workbook = try XlsxWorkbook(path: path, limits: limits)
            let reader = try workbook.rows(sheet: sheet)
            let sheetName = try workbook.sheet(named: sheet).name
            guard let header = try reader.next() else {
                throw InferenceError(description: "\(path): sheet \(sheetName) has no header row")
            }
            var headers: [(index: Int, text: String)] = []
            for (index, cell) in header.cells.enumerated() {
                if case .string(let text) = cell, !text.trimmedWhitespace.isEmpty, !headers.contains(where: { $0.text == text.trimmedWhitespace }) {
                    headers.append((index, text.trimmedWhitespace))
                }
            }
            guard !headers.isEmpty else { throw InferenceError(description: "\(path): the header row (row \(header.number)) has no column names") }
            let keyHeader = key ?? "id"
            guard headers.contains(where: { $0.text == keyHeader }) else {
                throw InferenceError(description: "\(path): no column \"\(keyHeader)\" to key the events by; name one with --key (columns: \(headers.map(\.text).joined(separator: ", ")))")
            }
            var seen = [Seen](repeating: Seen(), count: headers.count)
            var rows = 0
            while let row = try reader.next() {
                if row.isEmpty { continue }
                rows += 1
                for (position, column) in headers.enumerated() { seen[position].add(row[column.index]) }
                if let sample, rows >= sample { break }
            }
            var names = Set<String>()
            let columns = headers.enumerated().map { position, column -> Column in
                var name = identifier(column.text)
                while names.contains(name) { name += "_" }
                names.insert(name)
                let isKey = column.text == keyHeader
                var type = seen[position].type
                if isKey && type != .integer { type = .text }   // a key is an integer or text
                return Column(header: column.text, name: name, type: type, nullable: isKey ? false : seen[position].empty)
            }
            let base = identifier(String((path.split(separator: "/").last ?? "").split(separator: ".").first ?? "source"))
            sources.append(Source(file: path, sheet: sheetName, topic: base, table: base,
                                  key: columns.first { $0.header == keyHeader }!.name, columns: columns, rows: rows))
        }
        var topics = Set<String>()
        for index in sources.indices {
            while topics.contains(sources[index].topic) { sources[index].topic += "_"; sources[index].table += "_" }
            topics.insert(sources[index].topic)
        }
        return sources
    }

    /// A whole configuration for `sources`, as `config.json` text (two-space indented).
    package static func configuration(_ sources: [Source], bootstrapServers: String, database: String) -> String {
        let sourceValues: [JSONValue] = sources.map { source in
            .object(JSONObject([
                ("file", .string(source.file)), ("sheet", .string(source.sheet)), ("topic", .string(source.topic)),
                ("table", .string(source.table)), ("key", .string(source.key)),
                ("columns", .array(source.columns.map { column in
                    var members: [(String, JSONValue)] = [("name", .string(column.name)), ("type", .string(column.type.rawValue)),
                                                          ("nullable", .bool(column.nullable))]
                    if column.header != column.name { members.append(("header", .string(column.header))) }
                    return .object(JSONObject(members))
                })),
            ]))
        }
        let root = JSONValue.object(JSONObject([
            ("kafka", .object(JSONObject([("bootstrapServers", .string(bootstrapServers))]))),
            ("sources", .array(sourceValues)),
            ("database", .object(JSONObject([("url", .string(database))]))),
            ("stateDirectory", .string("state")),
        ]))
        return pretty(root, indent: "") + "\n"
    }

    /// JSON with one member or element a line; arrays of scalars and small objects stay on one line.
    static func pretty(_ value: JSONValue, indent: String) -> String {
        let inner = indent + "  "
        switch value {
        case .object(let object):
            let members = Array(object)
            if members.isEmpty { return "{}" }
            let flat = JSONWriter.string(value)
            if flat.count <= 100 && members.allSatisfy({ if case .object = $0.value { false } else if case .array = $0.value { false } else { true } }) {
                return flat.replacingOccurrences(of: "\",\"", with: "\", \"").replacingOccurrences(of: "\":", with: "\": ")
                    .replacingOccurrences(of: ",\"", with: ", \"").replacingOccurrences(of: "{", with: "{ ").replacingOccurrences(of: "}", with: " }")
            }
            return "{\n" + members.map { "\(inner)\(JSONWriter.string(.string($0.key))): \(pretty($0.value, indent: inner))" }.joined(separator: ",\n") + "\n\(indent)}"
        case .array(let elements):
            if elements.isEmpty { return "[]" }
            return "[\n" + elements.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        default:
            return JSONWriter.string(value)
        }
    }
}
