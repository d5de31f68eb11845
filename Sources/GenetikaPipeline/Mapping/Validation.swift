import GenetikaXlsx

/// `genetika validate`: a dry run of the producer's reading and typing of every row, which
/// sends nothing and writes nothing.
package enum Validation {
    /// One row (or file) that would not go through, with where and why.
    package struct Problem: Sendable, Equatable, CustomStringConvertible {
        package var file: String
        package var sheet: String
        /// `B17`, or `row 17` when no one cell is at fault, or empty for the file as a whole.
        package var place: String
        package var reason: String
        package var description: String { "\(file)\(sheet.isEmpty ? "" : " [\(sheet)]") \(place.isEmpty ? "" : place + ": ")\(reason)" }
    }

    /// What one file gave.
    package struct FileResult: Sendable, Equatable {
        package var file: String
        package var source: String
        package var rows: Int
        package var rejected: Int
        package var problems: [Problem]
        /// The file could not be read to its end (not xlsx, no such sheet, a header without a
        /// configured column, corrupt part-way): every row after the problem is unchecked.
        package var unreadable: Bool
    }

    /// The files to check: `files` (each matched to the source whose configured file has its
    /// name, else to the first source whose sheet it has with every configured column) or, when
    /// none are given, every source's configured file.
    package static func run(_ configuration: GenetikaConfiguration, files: [String]) -> [FileResult] {
        if files.isEmpty {
            return configuration.sources.compactMap { source in
                source.file.map { check(configuration.resolve($0), source: source, configuration: configuration) }
            }
        }
        return files.map { path in
            let name = path.split(separator: "/").last.map(String.init) ?? path
            if let source = configuration.sources.first(where: { $0.file?.split(separator: "/").last.map(String.init) == name }) {
                return check(path, source: source, configuration: configuration)
            }
            for source in configuration.sources {
                let result = check(path, source: source, configuration: configuration, headerOnly: true)
                if !result.unreadable { return check(path, source: source, configuration: configuration) }
            }
            return FileResult(file: path, source: "", rows: 0, rejected: 0, problems: [
                Problem(file: path, sheet: "", place: "", reason: "no source of the configuration matches it (by file name, or by a sheet with every configured column)"),
            ], unreadable: true)
        }
    }

    static func check(_ path: String, source: SourceConfiguration, configuration: GenetikaConfiguration, headerOnly: Bool = false) -> FileResult {
        var result = FileResult(file: path, source: source.topic, rows: 0, rejected: 0, problems: [], unreadable: false)
        let sheet = source.sheet ?? "(first sheet)"
        do {
            let workbook = try XlsxWorkbook(path: path, limits: XlsxLimits(configuration.xlsx))
            let reader = try workbook.rows(sheet: source.sheet)
            guard let header = try reader.next() else {
                throw XlsxError(.missingSheet, file: workbook.file, "the sheet has no header row")
            }
            let mapper = try RowMapper(source: source, header: header, file: workbook.file)
            if headerOnly { return result }
            while let row = try reader.next() {
                if row.isEmpty { continue }
                result.rows += 1
                do {
                    _ = try mapper.values(of: row)
                } catch {
                    result.rejected += 1
                    result.problems.append(Problem(file: path, sheet: sheet, place: error.cell ?? "row \(row.number)", reason: error.reason))
                }
            }
        } catch {
            result.unreadable = true
            result.problems.append(Problem(file: path, sheet: sheet, place: "", reason: "\(error)"))
        }
        return result
    }
}
