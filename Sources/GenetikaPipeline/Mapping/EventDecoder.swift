import GenetikaJSON
import GenetikaXlsx
import GenetikaStorage
/// Why an event cannot be written to its table.
struct EventRejection: Error, Sendable, Equatable, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// Validates a JSON event against its source's table schema and returns the row to write:
/// every configured column, typed (absent nullable columns are null); unknown keys, wrong
/// types, a missing or null key column are rejected.
struct EventDecoder: Sendable {
    let source: SourceConfiguration
    private let keys: JSONKeys

    init(source: SourceConfiguration) {
        self.source = source
        keys = JSONKeys(source.columns.map(\.name))
    }

    func decode(_ bytes: [UInt8]) throws(EventRejection) -> [FieldValue] {
        let document: JSONObjectMembers
        do {
            document = try JSONParser.parseObject(bytes, keys: keys)
        } catch {
            throw EventRejection(reason: "not JSON: \(error)")
        }
        switch document {
        case .members(let members):
            return try validate(members)
        case .notAnObject(let value):
            throw EventRejection(reason: "expected a JSON object, found \(value.kindDescription)")
        case .unknownKey(let key):
            throw EventRejection(reason: "unknown column \"\(key)\" for table \(source.table)")
        }
    }

    /// Types each member for its column and checks the key and required columns.
    private func validate(_ members: [JSONObjectMembers.Member]) throws(EventRejection) -> [FieldValue] {
        var values = [FieldValue](repeating: .null, count: source.columns.count)
        for member in members {
            values[member.index] = try Self.value(member.value, for: source.columns[member.index])
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
