/// A malformed JSON document: what is wrong and where (1-based line and column).
package struct JSONParseError: Error, Equatable, CustomStringConvertible, Sendable {
    package var message: String
    package var line: Int
    package var column: Int
    package var description: String { "line \(line), column \(column): \(message)" }
}

/// Keys known in advance (an event's columns), matched by their UTF-8 bytes so that reading
/// an object with these keys makes no `String` per key.
package struct JSONKeys: Sendable {
    let names: [[UInt8]]
    /// Beyond this many keys, duplicates are found with a set instead of a bit mask.
    static let maskWidth = 64

    package init(_ names: [String]) {
        self.names = names.map { Array($0.utf8) }
    }

    /// The index of `key`; keys usually come in order, so `expected` is tried first.
    @inline(__always)
    func index(of key: UnsafeBufferPointer<UInt8>, expected: Int) -> Int? {
        if expected < names.count, names[expected].elementsEqual(key) { return expected }
        for (index, name) in names.enumerated() where name.elementsEqual(key) { return index }
        return nil
    }
}

/// What `JSONParser.parseObject(_:keys:)` found in a well-formed document.
package enum JSONObjectMembers: Sendable, Equatable {
    /// The object's members in document order, each with its key's index in the `JSONKeys`.
    case members([Member])
    /// The document is a value other than an object.
    case notAnObject(JSONValue)
    /// The object has a key the `JSONKeys` do not know (the first such key).
    case unknownKey(String)

    package struct Member: Sendable, Equatable {
        package var index: Int
        package var value: JSONValue
    }
}

/// The one JSON reader: a strict RFC 8259 parser over UTF-8 bytes, for configuration files,
/// events and reports. Nesting is capped so that hostile input (the DB stage parses whatever
/// arrives on a topic) cannot exhaust the stack.
///
/// Two entry points share every rule (strings, escapes, numbers, literals, whitespace, errors):
/// `parse` builds a `JSONValue`; `parseObject(_:keys:)` is the fast path for events, reading a
/// top-level object whose keys are known in advance into an array of indexed members with
/// no dictionary and no `String` per key. Strings without escapes are made straight from the
/// input bytes (validated as UTF-8 only when they hold non-ASCII bytes); integers are
/// accumulated without going through text.
package struct JSONParser {
    static let maximumDepth = 256

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0

    /// Parsers exist only inside `withUnsafeBufferPointer` of the input.
    private init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    package static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try withParser(bytes) { (parser: inout JSONParser) throws(JSONParseError) in
            parser.skipWhitespace()
            let value = try parser.parseValue()
            try parser.expectEnd()
            return value
        }
    }

    package static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    /// Reads a document that should be one object whose keys are among `keys`. Syntax errors
    /// throw exactly as `parse` would; a well-formed document that is not such an object is
    /// returned as `.notAnObject` or `.unknownKey` (the whole document is checked first).
    package static func parseObject(_ bytes: [UInt8], keys: JSONKeys) throws(JSONParseError) -> JSONObjectMembers {
        try withParser(bytes) { (parser: inout JSONParser) throws(JSONParseError) in
            parser.skipWhitespace()
            guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "{") else {
                let value = try parser.parseValue()
                try parser.expectEnd()
                return .notAnObject(value)
            }
            let result = try parser.parseKnownObject(keys)
            try parser.expectEnd()
            return result
        }
    }

    private static func withParser<T>(_ bytes: [UInt8], _ body: (inout JSONParser) throws(JSONParseError) -> T) throws(JSONParseError) -> T {
        let result: Result<T, JSONParseError> = bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(bytes: buffer)
            do throws(JSONParseError) { return .success(try body(&parser)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private func error(_ message: String) -> JSONParseError {
        var line = 1
        var column = 1
        for byte in bytes[..<min(index, bytes.count)] {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else if byte & 0xC0 != 0x80 { column += 1 }
        }
        return JSONParseError(message: message, line: line, column: column)
    }

    @inline(__always)
    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func expectEnd() throws(JSONParseError) {
        skipWhitespace()
        if index != bytes.count { throw error("unexpected text after the JSON value") }
    }

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input, expected a value") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character '\(Unicode.Scalar(bytes[index]))', expected a value")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        let matches = index + count <= bytes.count && literal.withUTF8Buffer { expected in
            expected.elementsEqual(bytes[index..<index + count])
        }
        guard matches else { throw error("invalid literal, expected \(literal)") }
        index += count
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maximumDepth { throw error("nesting deeper than \(Self.maximumDepth) levels") }
    }

    /// After a member's value: `,` (true: another member follows) or `}` (false).
    @inline(__always)
    private mutating func afterMember() throws(JSONParseError) -> Bool {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of input in an object") }
        if bytes[index] == UInt8(ascii: ",") { index += 1; return true }
        if bytes[index] == UInt8(ascii: "}") { index += 1; return false }
        throw error("expected ',' or '}' in an object")
    }

    @inline(__always)
    private mutating func expectColon() throws(JSONParseError) {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after key") }
        index += 1
        skipWhitespace()
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var object = JSONObject()
        var seen = Set<String>()
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(object) }
        repeat {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyStart = index
            let key = try parseString()
            guard seen.insert(key).inserted else {
                index = keyStart
                throw error("duplicate key \"\(key)\"")
            }
            try expectColon()
            object.appendUnchecked(key, try parseValue())
        } while try afterMember()
        return .object(object)
    }

    /// `parseObject` for `parseObject(_:keys:)`: the same grammar and errors, keys matched
    /// against `keys` by their bytes.
    private mutating func parseKnownObject(_ keys: JSONKeys) throws(JSONParseError) -> JSONObjectMembers {
        try enter()
        defer { depth -= 1 }
        index += 1
        var members: [JSONObjectMembers.Member] = []
        members.reserveCapacity(keys.names.count)
        var seenMask: UInt64 = 0
        var seenWide = Set<Int>()
        var unknown: [String] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .members(members) }
        repeat {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let keyStart = index
            var keyIndex: Int?
            if let raw = plainStringBytes() {
                keyIndex = keys.index(of: UnsafeBufferPointer(rebasing: bytes[raw]), expected: members.count)
                if keyIndex == nil {
                    index = keyStart
                    let key = try parseString()
                    if unknown.contains(key) { index = keyStart; throw error("duplicate key \"\(key)\"") }
                    unknown.append(key)
                }
            } else {
                let key = try parseString()
                keyIndex = Array(key.utf8).withUnsafeBufferPointer { keys.index(of: $0, expected: members.count) }
                if keyIndex == nil {
                    if unknown.contains(key) { index = keyStart; throw error("duplicate key \"\(key)\"") }
                    unknown.append(key)
                }
            }
            if let keyIndex {
                let duplicate: Bool
                if keyIndex < JSONKeys.maskWidth {
                    duplicate = seenMask & (1 << UInt64(keyIndex)) != 0
                    seenMask |= 1 << UInt64(keyIndex)
                } else {
                    duplicate = !seenWide.insert(keyIndex).inserted
                }
                if duplicate {
                    index = keyStart
                    throw error("duplicate key \"\(String(decoding: keys.names[keyIndex], as: UTF8.self))\"")
                }
            }
            try expectColon()
            let value = try parseValue()
            if let keyIndex { members.append(JSONObjectMembers.Member(index: keyIndex, value: value)) }
        } while try afterMember()
        if let first = unknown.first { return .unknownKey(first) }
        return .members(members)
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        index += 1
        var array: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(array) }
        while true {
            skipWhitespace()
            array.append(try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of input in an array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(array) }
            throw error("expected ',' or ']' in an array")
        }
    }

    /// The bytes between the quotes of a string at `index` that has no escapes, no control
    /// characters and only ASCII (what keys are), moving past it; nil (not moving) otherwise.
    @inline(__always)
    private mutating func plainStringBytes() -> Range<Int>? {
        let start = index + 1
        var j = start
        while j < bytes.count {
            let byte = bytes[j]
            if byte == UInt8(ascii: "\"") {
                index = j + 1
                return start..<j
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 || byte >= 0x80 { return nil }
            j += 1
        }
        return nil
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        let start = index
        var ascii = true
        // The common case: no escapes, so the string is the input bytes themselves.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let run = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                if ascii { return String(decoding: run, as: UTF8.self) }
                guard let text = String(validating: run, as: UTF8.self) else {
                    index = start - 1
                    throw error("invalid UTF-8 in a string")
                }
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("unescaped control character in a string") }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        guard index < bytes.count else { throw error("unterminated string") }
        // Escapes: unescape into a copy, then validate it as UTF-8 once.
        var unescaped = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                guard let text = String(validating: unescaped, as: UTF8.self) else {
                    index = start - 1
                    throw error("invalid UTF-8 in a string")
                }
                return text
            }
            if byte < 0x20 { throw error("unescaped control character in a string") }
            guard byte == UInt8(ascii: "\\") else {
                unescaped.append(byte)
                index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { break }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): unescaped.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): unescaped.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "/"): unescaped.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): unescaped.append(0x08)
            case UInt8(ascii: "f"): unescaped.append(0x0C)
            case UInt8(ascii: "n"): unescaped.append(0x0A)
            case UInt8(ascii: "r"): unescaped.append(0x0D)
            case UInt8(ascii: "t"): unescaped.append(0x09)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xD800..<0xDC00).contains(code) {
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"),
                          bytes[index + 1] == UInt8(ascii: "u") else { throw error("unpaired surrogate in \\u escape") }
                    index += 2
                    let low = try parseHex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("invalid low surrogate in \\u escape") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(code) {
                    throw error("unpaired surrogate in \\u escape")
                }
                guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                unescaped.append(contentsOf: UTF8.encode(scalar)!)
            default:
                index -= 1
                throw error("invalid escape '\\\(Unicode.Scalar(escape))'")
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    @inline(__always)
    private func isDigit(_ j: Int) -> Bool {
        j < bytes.count && bytes[j] >= UInt8(ascii: "0") && bytes[j] <= UInt8(ascii: "9")
    }

    /// `.int` when the number has no fraction or exponent and fits in `Int64` (accumulated
    /// digit by digit), else a finite `.double`.
    private mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") { negative = true; index += 1 }
        guard isDigit(index) else { throw error("invalid number") }
        var magnitude: UInt64 = 0
        var overflow = false
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while isDigit(index) {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = s
                index += 1
            }
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard isDigit(index) else { throw error("invalid number: digits expected after '.'") }
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard isDigit(index) else { throw error("invalid number: digits expected in exponent") }
            while isDigit(index) { index += 1 }
        }
        if isInteger && !overflow {
            if !negative, magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
            if negative, magnitude <= UInt64(Int64.max) + 1 {
                return .int(magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude))
            }
        }
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)),
              value.isFinite else {
            index = start
            throw error("number out of range")
        }
        return .double(value)
    }
}
