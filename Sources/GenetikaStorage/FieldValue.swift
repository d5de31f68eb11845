/// The type a source column has in events and in its table.
package enum ColumnType: String, Sendable, CaseIterable {
    case integer, real, text, boolean, date, datetime
}

/// A typed value of one column, ready for an event and for a table.
package enum FieldValue: Sendable, Equatable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case boolean(Bool)
    /// `YYYY-MM-DD` (for `date`) or `YYYY-MM-DDTHH:MM:SS[.mmm]` (for `datetime`).
    case temporal(String)

    package var sql: SQLValue {
        switch self {
        case .null: .null
        case .integer(let v): .integer(v)
        case .real(let v): .real(v)
        case .text(let v), .temporal(let v): .text(v)
        case .boolean(let v): .integer(v ? 1 : 0)
        }
    }
}
