/// A JSON document as a Swift value: used for configuration, events and reports.
///
/// Objects keep their keys in document order (events read best that way) and reject
/// duplicate keys when parsed. Integers that fit in `Int64` stay integers.
package enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The value as text for messages: `"abc"`, `12`, `true`, `{…}`.
    package var kindDescription: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    package subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }
}

/// A JSON object whose members keep their order.
package struct JSONObject: Sendable, Equatable, Sequence {
    package struct Member: Sendable, Equatable {
        package var key: String
        package var value: JSONValue
        package init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    package private(set) var members: [Member] = []

    package init() {}
    package init(_ pairs: [(String, JSONValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    package var keys: [String] { members.map(\.key) }
    package var count: Int { members.count }

    package subscript(key: String) -> JSONValue? {
        get { members.first(where: { $0.key == key })?.value }
        set {
            if let index = members.firstIndex(where: { $0.key == key }) {
                if let newValue { members[index].value = newValue } else { members.remove(at: index) }
            } else if let newValue {
                members.append(Member(key: key, value: newValue))
            }
        }
    }

    package func makeIterator() -> IndexingIterator<[Member]> { members.makeIterator() }

    /// Appends without looking for an existing key (the parser checks duplicates itself).
    mutating func appendUnchecked(_ key: String, _ value: JSONValue) {
        members.append(Member(key: key, value: value))
    }
}
