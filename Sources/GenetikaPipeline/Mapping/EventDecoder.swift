import GenetikaJSON
import GenetikaXlsx
import GenetikaStorage
/// Why an event cannot be written to its table.
public struct EventRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public var description: String { reason }
}

/// Validates a JSON event against its source's table schema and returns the row to write:
/// every configured column, typed (absent nullable columns are null); unknown keys, wrong
/// types, a missing or null key column are rejected.
public struct EventDecoder: Sendable {
    public let source: SourceConfiguration
    private let indexByName: [String: Int]
    private let names: [[UInt8]]

    public init(source: SourceConfiguration) {
        self.source = source
        indexByName = Dictionary(uniqueKeysWithValues: source.columns.enumerated().map { ($1.name, $0) })
        names = source.columns.map { Array($0.name.utf8) }
    }

    public func decode(_ bytes: [UInt8]) throws(EventRejection) -> [FieldValue] {
        if let members = scanFlatObject(bytes) { return try validate(members) }
        return try decodeDocument(bytes)
    }

    /// The general path: the full JSON parser, then the same validation.
    func decodeDocument(_ bytes: [UInt8]) throws(EventRejection) -> [FieldValue] {
        let document: JSONValue
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw EventRejection(reason: "not JSON: \(error)")
        }
        guard case .object(let object) = document else {
            throw EventRejection(reason: "expected a JSON object, found \(document.kindDescription)")
        }
        var members: [(index: Int, value: JSONValue)] = []
        members.reserveCapacity(object.count)
        for member in object {
            guard let index = indexByName[member.key] else {
                throw EventRejection(reason: "unknown column \"\(member.key)\" for table \(source.table)")
            }
            members.append((index, member.value))
        }
        return try validate(members)
    }

    /// Types each member for its column and checks the key and required columns.
    private func validate(_ members: [(index: Int, value: JSONValue)]) throws(EventRejection) -> [FieldValue] {
        var values = [FieldValue](repeating: .null, count: source.columns.count)
        for (index, value) in members {
            values[index] = try Self.value(value, for: source.columns[index])
        }
        for (column, value) in zip(source.columns, values) where value == .null {
            if column.name == source.key { throw EventRejection(reason: "missing \(source.key) (the key column)") }
            if !column.nullable { throw EventRejection(reason: "column \(column.name): a value is required") }
        }
        return values
    }

    static func value(_ json: JSONValue, for column: ColumnConfiguration) throws(EventRejection) -> FieldValue {
        func reject() -> EventRejection {
            EventRejection(reason: "column \(column.name): expected \(column.type.rawValue), found \(json.kindDescription)")
        }
        switch (column.type, json) {
        case (_, .null): return .null
        case (.integer, .int(let v)): return .integer(v)
        case (.real, .int(let v)): return .real(Double(v))
        case (.real, .double(let v)): return .real(v)
        case (.text, .string(let v)):
            // PostgreSQL text cannot hold NUL; refuse it for every database alike.
            guard !v.utf8.contains(0) else { throw EventRejection(reason: "column \(column.name): text contains a NUL character") }
            return .text(v)
        case (.boolean, .bool(let v)): return .boolean(v)
        case (.date, .string(let v)):
            guard let parsed = SpreadsheetDateTime(iso: v), !parsed.hasTime, v.utf8.count == 10 else {
                throw EventRejection(reason: "column \(column.name): expected a date YYYY-MM-DD, found \"\(v.prefix(40))\"")
            }
            return .temporal(parsed.isoDate)
        case (.datetime, .string(let v)):
            guard let parsed = SpreadsheetDateTime(iso: v) else {
                throw EventRejection(reason: "column \(column.name): expected a datetime YYYY-MM-DDTHH:MM:SS, found \"\(v.prefix(40))\"")
            }
            return .temporal(parsed.isoDateTime)
        default: throw reject()
        }
    }
}

extension EventDecoder {
    /// The fast path for what the producer writes: one flat object whose keys are distinct
    /// column names and whose values are strings (valid UTF-8, simple escapes), numbers,
    /// booleans or null. Returns the members in document order, or nil for anything else
    /// (nesting, `\u` escapes, unknown or repeated keys, malformed input), which
    /// the general path then parses and reports exactly as before.
    func scanFlatObject(_ bytes: [UInt8]) -> [(index: Int, value: JSONValue)]? {
        bytes.withUnsafeBufferPointer { buffer -> [(index: Int, value: JSONValue)]? in
            let count = buffer.count
            var i = 0
            @inline(__always) func skipSpace() {
                while i < count, buffer[i] == 0x20 || buffer[i] == 0x0A || buffer[i] == 0x0D || buffer[i] == 0x09 { i += 1 }
            }
            /// The bytes of a plain string starting at `i` (on its opening quote): printable
            /// ASCII without escapes (what keys are), or nil.
            @inline(__always) func plainString() -> Range<Int>? {
                guard i < count, buffer[i] == UInt8(ascii: "\"") else { return nil }
                let start = i + 1
                var j = start
                while j < count {
                    let byte = buffer[j]
                    if byte == UInt8(ascii: "\"") { i = j + 1; return start..<j }
                    if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { return nil }
                    j += 1
                }
                return nil
            }
            /// A string value at `i`: valid UTF-8 and the simple escapes; nil for `\u`, control
            /// characters, invalid UTF-8 or an unterminated string.
            func stringValue() -> String? {
                guard i < count, buffer[i] == UInt8(ascii: "\"") else { return nil }
                let start = i + 1
                var j = start
                var ascii = true
                while j < count, buffer[j] != UInt8(ascii: "\"") {
                    let byte = buffer[j]
                    if byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                    if byte >= 0x80 { ascii = false }
                    j += 1
                }
                guard j < count else { return nil }
                if buffer[j] == UInt8(ascii: "\"") {
                    i = j + 1
                    let bytes = UnsafeBufferPointer(rebasing: buffer[start..<j])
                    return ascii ? String(decoding: bytes, as: UTF8.self) : String(validating: bytes, as: UTF8.self)
                }
                // Escapes: unescape into a copy.
                var unescaped = Array(buffer[start..<j])
                while j < count {
                    let byte = buffer[j]
                    if byte == UInt8(ascii: "\"") {
                        i = j + 1
                        return String(validating: unescaped, as: UTF8.self)
                    }
                    if byte < 0x20 { return nil }
                    if byte == UInt8(ascii: "\\") {
                        guard j + 1 < count else { return nil }
                        switch buffer[j + 1] {
                        case UInt8(ascii: "\""): unescaped.append(UInt8(ascii: "\""))
                        case UInt8(ascii: "\\"): unescaped.append(UInt8(ascii: "\\"))
                        case UInt8(ascii: "/"): unescaped.append(UInt8(ascii: "/"))
                        case UInt8(ascii: "n"): unescaped.append(0x0A)
                        case UInt8(ascii: "t"): unescaped.append(0x09)
                        case UInt8(ascii: "r"): unescaped.append(0x0D)
                        case UInt8(ascii: "b"): unescaped.append(0x08)
                        case UInt8(ascii: "f"): unescaped.append(0x0C)
                        default: return nil
                        }
                        j += 2
                        continue
                    }
                    unescaped.append(byte)
                    j += 1
                }
                return nil
            }
            skipSpace()
            guard i < count, buffer[i] == UInt8(ascii: "{") else { return nil }
            i += 1
            var members: [(index: Int, value: JSONValue)] = []
            members.reserveCapacity(names.count)
            var seen: UInt64 = 0
            skipSpace()
            if i < count, buffer[i] == UInt8(ascii: "}") {
                i += 1
            } else {
                while true {
                    skipSpace()
                    guard let key = plainString() else { return nil }
                    // Keys usually come in column order: try the next column first.
                    var index = -1
                    let expected = members.count
                    if expected < names.count, names[expected].elementsEqual(buffer[key]) {
                        index = expected
                    } else {
                        for (n, name) in names.enumerated() where name.elementsEqual(buffer[key]) { index = n; break }
                    }
                    guard index >= 0, index < 64, seen & (1 << UInt64(index)) == 0 else { return nil }
                    seen |= 1 << UInt64(index)
                    skipSpace()
                    guard i < count, buffer[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    skipSpace()
                    guard i < count else { return nil }
                    let value: JSONValue
                    switch buffer[i] {
                    case UInt8(ascii: "\""):
                        guard let text = stringValue() else { return nil }
                        value = .string(text)
                    case UInt8(ascii: "t"):
                        guard count - i >= 4, buffer[i + 1] == UInt8(ascii: "r"), buffer[i + 2] == UInt8(ascii: "u"),
                              buffer[i + 3] == UInt8(ascii: "e") else { return nil }
                        i += 4; value = .bool(true)
                    case UInt8(ascii: "f"):
                        guard count - i >= 5, buffer[i + 1] == UInt8(ascii: "a"), buffer[i + 2] == UInt8(ascii: "l"),
                              buffer[i + 3] == UInt8(ascii: "s"), buffer[i + 4] == UInt8(ascii: "e") else { return nil }
                        i += 5; value = .bool(false)
                    case UInt8(ascii: "n"):
                        guard count - i >= 4, buffer[i + 1] == UInt8(ascii: "u"), buffer[i + 2] == UInt8(ascii: "l"),
                              buffer[i + 3] == UInt8(ascii: "l") else { return nil }
                        i += 4; value = .null
                    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                        guard let number = Self.scanNumber(buffer, &i) else { return nil }
                        value = number
                    default:
                        return nil
                    }
                    members.append((index, value))
                    skipSpace()
                    guard i < count else { return nil }
                    if buffer[i] == UInt8(ascii: ",") { i += 1; continue }
                    if buffer[i] == UInt8(ascii: "}") { i += 1; break }
                    return nil
                }
            }
            skipSpace()
            return i == count ? members : nil
        }
    }

    /// A JSON number at `i` (RFC 8259 grammar): `.int` when it has no fraction or exponent
    /// and fits, else a finite `.double`; nil when malformed or out of range.
    private static func scanNumber(_ buffer: UnsafeBufferPointer<UInt8>, _ i: inout Int) -> JSONValue? {
        let count = buffer.count
        let start = i
        var negative = false
        if buffer[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        func isDigit(_ j: Int) -> Bool { j < count && buffer[j] >= UInt8(ascii: "0") && buffer[j] <= UInt8(ascii: "9") }
        guard isDigit(i) else { return nil }
        var magnitude: UInt64 = 0
        var overflow = false
        if buffer[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            while isDigit(i) {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(buffer[i] - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = s
                i += 1
            }
        }
        var isInteger = true
        if i < count, buffer[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard isDigit(i) else { return nil }
            while isDigit(i) { i += 1 }
        }
        if i < count, buffer[i] == UInt8(ascii: "e") || buffer[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < count, buffer[i] == UInt8(ascii: "+") || buffer[i] == UInt8(ascii: "-") { i += 1 }
            guard isDigit(i) else { return nil }
            while isDigit(i) { i += 1 }
        }
        if isInteger && !overflow {
            if !negative, magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
            if negative, magnitude <= UInt64(Int64.max) + 1 { return .int(magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude)) }
        }
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<i]), as: UTF8.self)),
              value.isFinite else { return nil }
        return .double(value)
    }
}
