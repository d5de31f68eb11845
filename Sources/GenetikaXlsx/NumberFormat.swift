/// Tells date formats from number formats and turns Excel serial numbers into dates, the
/// way openpyxl does (so the two readers agree cell for cell).
enum NumberFormat {
    /// Built-in format ids that are dates or times (ECMA-376 §18.8.30, plus the East Asian ids).
    static let builtInDateIds: Set<Int> = Set(14...22).union(27...36).union(45...47).union(50...58)

    /// True when the format code shows a date or a time: a `d m y h s` token outside quoted
    /// text, escapes, `_x` padding and bracketed sections other than `[h]`, `[mm]`, `[ss]`.
    static func isDateFormat(_ code: String) -> Bool {
        var chars = Array(code.unicodeScalars)
        // Only the first section (positive numbers) decides.
        var section: [Unicode.Scalar] = []
        var inQuote = false
        for c in chars {
            if c == "\"" { inQuote.toggle() }
            if c == ";" && !inQuote { break }
            section.append(c)
        }
        chars = section
        var i = 0
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "\"":
                i += 1
                while i < chars.count && chars[i] != "\"" { i += 1 }
                i += 1
            case "\\", "_", "*":
                i += 2  // escaped, padding or fill character
            case "[":
                var j = i + 1
                var inner = ""
                while j < chars.count && chars[j] != "]" { inner.unicodeScalars.append(chars[j]); j += 1 }
                let lowered = inner.lowercased()
                if ["h", "hh", "m", "mm", "s", "ss"].contains(lowered) { return true }
                i = j + 1
            default:
                switch c {
                case "d", "D", "m", "M", "y", "Y", "h", "H", "s", "S": return true
                default: i += 1
                }
            }
        }
        return false
    }

    /// The date of an Excel serial number: 1900 system (with Excel's fictitious 1900-02-29
    /// at serial 60, as openpyxl treats it) or 1904 system; the time of day is rounded to
    /// the millisecond with round-half-even, like Python's `round`.
    static func dateTime(serial: Double, date1904: Bool) -> SpreadsheetDateTime? {
        guard serial.isFinite, abs(serial) < 3_000_000 else { return nil }
        var day = serial.rounded(.down)
        let fraction = serial - day
        if !date1904 && serial >= 0 && serial < 60 { day += 1 }
        let epoch = date1904 ? daysFromCivil(1904, 1, 1) : daysFromCivil(1899, 12, 30)
        var milliseconds = Int((fraction * 86_400_000).rounded(.toNearestOrEven))
        var days = epoch + Int(day)
        if milliseconds >= 86_400_000 { days += 1; milliseconds -= 86_400_000 }
        return SpreadsheetDateTime(daysSinceEpoch: days, millisecondOfDay: milliseconds)
    }
}
