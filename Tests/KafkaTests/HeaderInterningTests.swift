import Testing
@testable import GenetikaKafka

@Suite("Header names and repeated values shared between a consumer's copies")
struct HeaderInterningTests {
    /// One header through `HeaderInterning`, from C strings and bytes as librdkafka hands them over.
    static func header(_ interning: inout HeaderInterning, _ name: String?, _ value: [UInt8]?) -> KafkaHeader {
        func withName<R>(_ body: (UnsafePointer<CChar>?) -> R) -> R {
            guard let name else { return body(nil) }
            return name.withCString { body($0) }
        }
        return withName { cName in
            guard let value else { return interning.header(name: cName, value: nil) }
            return value.withUnsafeBytes { interning.header(name: cName, value: $0) }
        }
    }

    @Test("names and values as given: repeats, changes, a shorter value with the same prefix, empty and absent values")
    func cases() {
        var interning = HeaderInterning()
        let file = Array("sim_file1.xlsx".utf8)
        let steps: [(String?, [UInt8]?)] = [
            ("genetika-source-file", file), ("genetika-source-row", Array("2".utf8)),
            ("genetika-source-file", file), ("genetika-source-row", Array("3".utf8)),
            ("genetika-source-file", Array("sim_file1.xls".utf8)), ("genetika-source-file", file),
            ("genetika-source-row", []), ("genetika-source-row", nil), ("genetika-source-row", []),
            ("genetika-source-fil", file), (nil, file), ("", Array("x".utf8)),
        ]
        for (name, value) in steps {
            #expect(Self.header(&interning, name, value) == KafkaHeader(name ?? "", value))
        }
    }

    @Test("against plain copies: 5,000 random headers over 26 names (more than it keeps)")
    func random() {
        var generator = SystemRandomNumberGenerator()
        var interning = HeaderInterning()
        let names = (0..<24).map { "genetika-header-\($0)" } + ["a", "ab"]
        let values: [[UInt8]?] = [nil, [], [1], [1, 2], [1, 3], [2, 1], Array("sim_file2.xlsx".utf8)]
        for _ in 0..<5_000 {
            let name = names.randomElement(using: &generator)!
            let value = values.randomElement(using: &generator)!
            #expect(Self.header(&interning, name, value) == KafkaHeader(name, value))
        }
    }
}
