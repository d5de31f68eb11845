import Testing
@testable import GenetikaJSON

@Suite("JSON parser and writer")
struct JSONTests {
    @Test("values survive a round trip, with key order kept")
    func roundTrip() throws {
        let text = #"{"b":1,"a":[true,false,null,-2.5,"x\"y\\z\n\u00e9"],"c":{"d":9007199254740993}}"#
        let value = try JSONParser.parse(text)
        #expect(value["c"]?["d"] == .int(9_007_199_254_740_993))
        guard case .object(let object) = value else { Issue.record("not an object"); return }
        #expect(object.keys == ["b", "a", "c"])
        #expect(try JSONParser.parse(JSONWriter.serialize(value)) == value)
    }

    @Test("surrogate pairs and non-ASCII text decode")
    func unicode() throws {
        #expect(try JSONParser.parse(#""\ud83d\ude00 é""#) == .string("😀 é"))
    }

    @Test("errors carry line and column", arguments: [
        ("{\"a\":}", 1, 6), ("[1,\n 2,,]", 2, 4), ("\"abc", 1, 5), ("{\"a\":1,\"a\":2}", 1, 8), ("01", 1, 2),
    ])
    func errors(text: String, line: Int, column: Int) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
        do { _ = try JSONParser.parse(text) } catch {
            #expect(error.line == line && error.column == column, "\(error)")
        }
    }

    @Test("deep nesting is refused instead of overflowing the stack")
    func depthLimit() {
        let text = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test("doubles keep a decimal point; control characters are escaped")
    func writer() {
        #expect(JSONWriter.string(.double(78.0)) == "78.0")
        #expect(JSONWriter.string(.double(0.1)) == "0.1")
        #expect(JSONWriter.string(.string("a\u{01}b")) == #""a\u0001b""#)
        #expect(JSONWriter.string(.double(.nan)) == "null")
    }
}
