import GenetikaJSON
/// One problem found in a configuration file, at a key path such as
/// `sources[1].columns[3].type`.
struct ConfigIssue: Sendable, Equatable, CustomStringConvertible {
    var path: String
    var message: String
    var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// A configuration that cannot be used; lists every problem found, each with its key path.
package struct ConfigError: Error, Sendable, CustomStringConvertible {
    package var file: String
    var issues: [ConfigIssue]
    package var description: String {
        "invalid configuration \(file):\n" + issues.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// Walks a JSON object, reading typed values by key while recording the key path of every
/// problem: wrong types, missing keys and, when the object is finished, unknown keys.
struct ConfigReader {
    final class Issues {
        var list: [ConfigIssue] = []
    }

    let path: String
    let object: JSONObject
    let issues: Issues
    private var consumed: Set<String> = []

    init(root: JSONValue, issues: Issues) {
        self.path = ""
        self.issues = issues
        if case .object(let object) = root {
            self.object = object
        } else {
            self.object = JSONObject()
            issues.list.append(ConfigIssue(path: "", message: "expected an object at the top level, found \(root.kindDescription)"))
        }
    }

    private init(path: String, object: JSONObject, issues: Issues) {
        self.path = path
        self.object = object
        self.issues = issues
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func report(_ key: String?, _ message: String) {
        issues.list.append(ConfigIssue(path: key.map(child) ?? path, message: message))
    }

    private mutating func take(_ key: String, required: Bool) -> JSONValue? {
        consumed.insert(key)
        guard let value = object[key] else {
            if required { report(key, "missing required key") }
            return nil
        }
        return value
    }

    mutating func string(_ key: String) -> String? { string(key, required: true) }

    mutating func string(_ key: String, default fallback: String) -> String {
        string(key, required: false) ?? fallback
    }

    mutating func optionalString(_ key: String) -> String? {
        if case .null? = object[key] { consumed.insert(key); return nil }
        return string(key, required: false)
    }

    private mutating func string(_ key: String, required: Bool) -> String? {
        guard let value = take(key, required: required) else { return nil }
        guard case .string(let text) = value else {
            report(key, "expected a string, found \(value.kindDescription)")
            return nil
        }
        return text
    }

    mutating func integer(_ key: String, default fallback: Int, range: ClosedRange<Int>) -> Int {
        integer(key, required: false, range: range) ?? fallback
    }

    mutating func integer(_ key: String, range: ClosedRange<Int>) -> Int? {
        integer(key, required: true, range: range)
    }

    private mutating func integer(_ key: String, required: Bool, range: ClosedRange<Int>) -> Int? {
        guard let value = take(key, required: required) else { return nil }
        guard case .int(let number) = value else {
            report(key, "expected an integer, found \(value.kindDescription)")
            return nil
        }
        guard let int = Int(exactly: number), range.contains(int) else {
            report(key, "expected an integer in \(range.lowerBound)...\(range.upperBound), found \(number)")
            return nil
        }
        return int
    }

    mutating func number(_ key: String, default fallback: Double, range: ClosedRange<Double>) -> Double {
        guard let value = take(key, required: false) else { return fallback }
        let number: Double
        switch value {
        case .int(let int): number = Double(int)
        case .double(let double): number = double
        default:
            report(key, "expected a number, found \(value.kindDescription)")
            return fallback
        }
        guard range.contains(number) else {
            report(key, "expected a number in \(range.lowerBound)...\(range.upperBound), found \(number)")
            return fallback
        }
        return number
    }

    mutating func bool(_ key: String, default fallback: Bool) -> Bool {
        guard let value = take(key, required: false) else { return fallback }
        guard case .bool(let flag) = value else {
            report(key, "expected true or false, found \(value.kindDescription)")
            return fallback
        }
        return flag
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String, as type: T.Type) -> T? where T.RawValue == String {
        guard let text = string(key) else { return nil }
        guard let value = T(rawValue: text) else {
            let options = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            report(key, "expected one of \(options), found \"\(text)\"")
            return nil
        }
        return value
    }

    /// A nested object; `body` reads it. Missing optional objects are read as empty.
    mutating func object<T>(_ key: String, required: Bool = false, _ body: (inout ConfigReader) -> T) -> T? {
        let value = take(key, required: required)
        var nested: ConfigReader
        switch value {
        case .object(let object)?: nested = ConfigReader(path: child(key), object: object, issues: issues)
        case nil where !required: nested = ConfigReader(path: child(key), object: JSONObject(), issues: issues)
        case nil: return nil
        case let other?:
            report(key, "expected an object, found \(other.kindDescription)")
            return nil
        }
        let result = body(&nested)
        nested.finish()
        return result
    }

    /// An object of string values (free-form properties such as librdkafka settings).
    mutating func stringMap(_ key: String) -> [String: String] {
        guard let value = take(key, required: false) else { return [:] }
        guard case .object(let object) = value else {
            report(key, "expected an object of strings, found \(value.kindDescription)")
            return [:]
        }
        var map: [String: String] = [:]
        for member in object {
            switch member.value {
            case .string(let text): map[member.key] = text
            case .int(let number): map[member.key] = String(number)
            case .bool(let flag): map[member.key] = String(flag)
            default: report("\(key).\(member.key)", "expected a string, found \(member.value.kindDescription)")
            }
        }
        return map
    }

    /// An array of objects; `body` reads each element.
    mutating func objects<T>(_ key: String, _ body: (inout ConfigReader) -> T?) -> [T] {
        guard let value = take(key, required: true) else { return [] }
        guard case .array(let items) = value else {
            report(key, "expected an array, found \(value.kindDescription)")
            return []
        }
        var results: [T] = []
        for (position, item) in items.enumerated() {
            let itemPath = "\(child(key))[\(position)]"
            guard case .object(let object) = item else {
                issues.list.append(ConfigIssue(path: itemPath, message: "expected an object, found \(item.kindDescription)"))
                continue
            }
            var nested = ConfigReader(path: itemPath, object: object, issues: issues)
            if let result = body(&nested) { results.append(result) }
            nested.finish()
        }
        return results
    }

    /// Reports every key that nothing read.
    func finish() {
        for key in object.keys where !consumed.contains(key) {
            report(key, "unknown key")
        }
    }
}
