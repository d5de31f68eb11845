/// A calendar date and time of day read from a spreadsheet (no time zone: Excel has none),
/// to the millisecond.
package struct SpreadsheetDateTime: Sendable, Equatable, Hashable, CustomStringConvertible {
    package var year: Int
    package var month: Int
    package var day: Int
    package var hour: Int
    package var minute: Int
    package var second: Int
    package var millisecond: Int

    package init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0, millisecond: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
        self.millisecond = millisecond
    }

    /// `YYYY-MM-DD`.
    package var isoDate: String {
        pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2)
    }

    /// `YYYY-MM-DDTHH:MM:SS`, with `.mmm` when there are milliseconds.
    package var isoDateTime: String {
        var text = isoDate + "T" + pad(hour, 2) + ":" + pad(minute, 2) + ":" + pad(second, 2)
        if millisecond != 0 { text += "." + pad(millisecond, 3) }
        return text
    }

    package var hasTime: Bool { hour != 0 || minute != 0 || second != 0 || millisecond != 0 }

    package var description: String { isoDateTime }

    /// Days since 1970-01-01 of the date part (proleptic Gregorian calendar).
    package var daysSinceEpoch: Int { daysFromCivil(year, month, day) }

    /// From days and milliseconds since 1970-01-01.
    package init(daysSinceEpoch days: Int, millisecondOfDay ms: Int) {
        let (y, m, d) = civilFromDays(days)
        self.init(year: y, month: m, day: d, hour: ms / 3_600_000, minute: ms / 60_000 % 60,
                  second: ms / 1000 % 60, millisecond: ms % 1000)
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` (a space may replace `T`; a
    /// trailing `Z` is accepted).
    package init?(iso text: String) {
        let chars = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= chars.count else { return nil }
            var value = 0
            for c in chars[from..<from + count] {
                guard c >= 48 && c <= 57 else { return nil }
                value = value * 10 + Int(c - 48)
            }
            return value
        }
        guard chars.count >= 10, chars[4] == UInt8(ascii: "-"), chars[7] == UInt8(ascii: "-"),
              let y = number(0, 4), let mo = number(5, 2), let d = number(8, 2),
              (1...12).contains(mo), (1...daysInMonth(y, mo)).contains(d) else { return nil }
        var h = 0, mi = 0, s = 0, ms = 0
        var end = 10
        if chars.count > 10 {
            guard chars[10] == UInt8(ascii: "T") || chars[10] == UInt8(ascii: " "),
                  let hh = number(11, 2), chars.count > 13, chars[13] == UInt8(ascii: ":"), let mm = number(14, 2),
                  hh < 24, mm < 60 else { return nil }
            h = hh; mi = mm; end = 16
            if chars.count > 16, chars[16] == UInt8(ascii: ":") {
                guard let ss = number(17, 2), ss < 60 else { return nil }
                s = ss; end = 19
                if chars.count > 19, chars[19] == UInt8(ascii: ".") {
                    var digits = 0
                    var fraction = 0
                    var i = 20
                    while i < chars.count, chars[i] >= 48, chars[i] <= 57 {
                        if digits < 3 { fraction = fraction * 10 + Int(chars[i] - 48); digits += 1 }
                        i += 1
                    }
                    guard i > 20 else { return nil }
                    while digits < 3 { fraction *= 10; digits += 1 }
                    ms = fraction; end = i
                }
            }
        }
        if end < chars.count, chars[end] == UInt8(ascii: "Z") { end += 1 }
        guard end == chars.count else { return nil }
        self.init(year: y, month: mo, day: d, hour: h, minute: mi, second: s, millisecond: ms)
    }
}

/// A cell's value as the reader returns it. Formulas give their cached result; the text
/// `NA` stays text (turning it into NULL is the mapping's business).
package enum CellValue: Sendable, Equatable, Hashable, CustomStringConvertible {
    case empty
    /// A number written without a decimal point or exponent.
    case integer(Int64)
    case number(Double)
    case string(String)
    case boolean(Bool)
    /// A number whose cell format is a date or time format, or an ISO date cell.
    case dateTime(SpreadsheetDateTime)
    /// An error value such as `#DIV/0!`.
    case error(String)

    package var isEmpty: Bool { if case .empty = self { true } else { false } }

    package var description: String {
        switch self {
        case .empty: "(empty)"
        case .integer(let v): String(v)
        case .number(let v): String(v)
        case .string(let v): v
        case .boolean(let v): v ? "TRUE" : "FALSE"
        case .dateTime(let v): v.isoDateTime
        case .error(let v): v
        }
    }
}

private func pad(_ value: Int, _ width: Int) -> String {
    let text = String(value)
    return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
}

func isLeapYear(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

func daysInMonth(_ y: Int, _ m: Int) -> Int {
    switch m {
    case 2: isLeapYear(y) ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
package func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

func civilFromDays(_ days: Int) -> (Int, Int, Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let y = yoe + era * 400
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (m <= 2 ? y + 1 : y, m, d)
}
