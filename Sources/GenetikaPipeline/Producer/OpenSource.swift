import GenetikaXlsx

extension ProducerStage {
    /// A source checked at start-up: the file opens, the sheet exists, the header has every column.
    struct OpenSource: @unchecked Sendable {
        // @unchecked: an OpenSource has one user at a time: the start-up check hands it (under
        // a lock, once) to the first producer stage, which gives it to exactly one task.
        var index: Int
        var source: SourceConfiguration
        var path: String
        var file: String
        var reader: XlsxRowReader
        var mapper: RowMapper
    }

    static func openSources(_ configuration: GenetikaConfiguration, only: Set<Int>? = nil) throws -> [OpenSource] {
        try configuration.sources.enumerated().filter { $0.element.file != nil && only?.contains($0.offset) ?? true }.map { index, source in
            try openSource(index: index, source: source, path: configuration.resolve(source.file!), configuration: configuration)
        }
    }

    /// Opens one spreadsheet of `source` and checks its header.
    static func openSource(index: Int, source: SourceConfiguration, path: String, configuration: GenetikaConfiguration) throws -> OpenSource {
        let workbook = try XlsxWorkbook(path: path, limits: XlsxLimits(configuration.xlsx))
        let reader = try workbook.rows(sheet: source.sheet)
        guard let header = try reader.next() else {
            throw XlsxError(.missingSheet, file: workbook.file, "the sheet has no header row")
        }
        let mapper = try RowMapper(source: source, header: header, file: workbook.file)
        return OpenSource(index: index, source: source, path: path, file: workbook.file, reader: reader, mapper: mapper)
    }
}
