import CLibXML2

/// Receives the events of an `XMLPushParser`. Subclasses override what they need; element
/// names are libxml2's local names (no prefix), valid only during the call.
class XMLContentHandler {
    func startElement(_ name: XMLName, _ attributes: XMLAttributes) {}
    func endElement(_ name: XMLName) {}
    func characters(_ bytes: UnsafeBufferPointer<UInt8>) {}
}

/// An element's local name as libxml2 passes it (NUL-terminated UTF-8).
struct XMLName {
    let pointer: UnsafePointer<UInt8>

    @inline(__always) func `is`(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        let bytes = literal.utf8Start
        for i in 0..<count where pointer[i] != bytes[i] { return false }
        return pointer[count] == 0
    }

    var string: String { String(cString: pointer) }
}

/// An element's attributes: libxml2's SAX2 array of (localname, prefix, URI, value, end).
struct XMLAttributes {
    let pointer: UnsafeMutablePointer<UnsafePointer<UInt8>?>?
    let count: Int

    /// The raw value bytes of the attribute with this local name, entity references undecoded.
    @inline(__always) func raw(_ localName: StaticString) -> UnsafeBufferPointer<UInt8>? {
        guard let pointer else { return nil }
        for i in 0..<count {
            guard let name = pointer[i * 5], XMLName(pointer: name).is(localName),
                  let start = pointer[i * 5 + 3], let end = pointer[i * 5 + 4] else { continue }
            return UnsafeBufferPointer(start: start, count: end - start)
        }
        return nil
    }

    /// The decoded value of the attribute with this local name.
    func string(_ localName: StaticString) -> String? {
        raw(localName).map(decodeXMLText)
    }
}

/// Decodes the predefined entities and character references that libxml2's SAX interface
/// leaves in attribute values.
func decodeXMLText(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    guard bytes.contains(UInt8(ascii: "&")) else { return String(decoding: bytes, as: UTF8.self) }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
        let byte = bytes[i]
        guard byte == UInt8(ascii: "&"), let semicolon = bytes[i...].firstIndex(of: UInt8(ascii: ";")), semicolon - i <= 12 else {
            out.append(byte)
            i += 1
            continue
        }
        let entity = String(decoding: bytes[(i + 1)..<semicolon], as: UTF8.self)
        var scalar: Unicode.Scalar?
        switch entity {
        case "amp": scalar = "&"
        case "lt": scalar = "<"
        case "gt": scalar = ">"
        case "quot": scalar = "\""
        case "apos": scalar = "'"
        default:
            if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                scalar = UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init)
            } else if entity.hasPrefix("#") {
                scalar = UInt32(entity.dropFirst(1)).flatMap(Unicode.Scalar.init)
            }
        }
        if let scalar {
            out.append(contentsOf: String(Character(scalar)).utf8)
            i = semicolon + 1
        } else {
            out.append(byte)
            i += 1
        }
    }
    return String(decoding: out, as: UTF8.self)
}

/// libxml2's SAX2 push parser, fed chunk by chunk: streaming, never a tree. A DOCTYPE or
/// entity declaration stops it with `.forbiddenXML` (no external fetch, no entity expansion:
/// XXE and billion laughs never get started); malformed XML stops it with `.malformedXML`.
final class XMLPushParser {
    private static let initialized: Bool = {
        xmlInitParser()
        return true
    }()

    private let handler: XMLContentHandler
    private let file: String
    private let part: String
    private var context: xmlParserCtxtPtr?
    private var failure: XlsxError?
    /// `failure != nil`, as a plain flag: checked on every callback.
    private var failed = false

    init(handler: XMLContentHandler, file: String, part: String) throws(XlsxError) {
        _ = Self.initialized
        self.handler = handler
        self.file = file
        self.part = part
        var sax = xmlSAXHandler()
        sax.initialized = XML_SAX2_MAGIC
        sax.startElementNs = saxStartElement
        sax.endElementNs = saxEndElement
        sax.characters = saxCharacters
        sax.cdataBlock = saxCharacters
        sax.internalSubset = saxInternalSubset
        sax.externalSubset = saxInternalSubset
        sax.entityDecl = saxEntityDeclaration
        sax.getEntity = saxGetEntity
        sax.getParameterEntity = saxGetEntity
        sax.resolveEntity = saxResolveEntity
        sax.serror = saxStructuredError
        let user = Unmanaged.passUnretained(self).toOpaque()
        guard let context = xmlCreatePushParserCtxt(&sax, user, nil, 0, part) else {
            throw XlsxError(.malformedXML, file: file, part: part, "libxml2 could not create a parser")
        }
        // No network, no DTD loading, no entity substitution, no default attributes.
        _ = xmlCtxtUseOptions(context, Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOWARNING.rawValue | XML_PARSE_NOERROR.rawValue))
        self.context = context
    }

    deinit {
        if let context { xmlFreeParserCtxt(context) }
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(XlsxError) {
        try parse(bytes.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(bytes.count), terminate: false)
    }

    func finish() throws(XlsxError) {
        try parse(nil, 0, terminate: true)
    }

    private func parse(_ pointer: UnsafePointer<CChar>?, _ count: Int32, terminate: Bool) throws(XlsxError) {
        if let failure { throw failure }
        guard let context else { return }
        let result = xmlParseChunk(context, pointer, count, terminate ? 1 : 0)
        if let failure { throw failure }
        if result != 0 || (terminate && context.pointee.wellFormed == 0) {
            let error = XlsxError(.malformedXML, file: file, part: part, "malformed XML (libxml2 error \(result))")
            failure = error
            failed = true
            throw error
        }
    }

    fileprivate func stop(_ error: XlsxError) {
        if !failed {
            failure = error
            failed = true
        }
        if let context { xmlStopParser(context) }
    }

    fileprivate func forbid(_ what: String) {
        stop(XlsxError(.forbiddenXML, file: file, part: part, "\(what) is not allowed in a spreadsheet part (refused: no entity is fetched or expanded)"))
    }

    fileprivate func reportError(_ error: xmlErrorPtr) {
        var message = error.pointee.message.map { String(cString: $0) } ?? "error"
        while message.last?.isNewline == true { message.removeLast() }
        let line = error.pointee.line
        let level = error.pointee.level
        guard level.rawValue >= XML_ERR_ERROR.rawValue else { return }
        stop(XlsxError(.malformedXML, file: file, part: part, "malformed XML at line \(line): \(message)"))
    }

    fileprivate func dispatchStart(_ name: UnsafePointer<UInt8>, _ count: Int32, _ attributes: UnsafeMutablePointer<UnsafePointer<UInt8>?>?) {
        guard !failed else { return }
        handler.startElement(XMLName(pointer: name), XMLAttributes(pointer: attributes, count: Int(count)))
    }

    fileprivate func dispatchEnd(_ name: UnsafePointer<UInt8>) {
        guard !failed else { return }
        handler.endElement(XMLName(pointer: name))
    }

    fileprivate func dispatchCharacters(_ bytes: UnsafePointer<UInt8>, _ count: Int32) {
        guard !failed, count > 0 else { return }
        handler.characters(UnsafeBufferPointer(start: bytes, count: Int(count)))
    }
}

@inline(__always) private func parser(_ context: UnsafeMutableRawPointer?) -> XMLPushParser {
    Unmanaged<XMLPushParser>.fromOpaque(context!).takeUnretainedValue()
}

/// Calls `body` with the parser behind `context` without retaining it: the parser owns the
/// libxml2 context that makes this call, so it is alive for the call's duration.
@inline(__always) private func withParser(_ context: UnsafeMutableRawPointer?, _ body: (XMLPushParser) -> Void) {
    Unmanaged<XMLPushParser>.fromOpaque(context!)._withUnsafeGuaranteedRef(body)
}

private let saxStartElement: startElementNsSAX2Func = { context, localName, _, _, _, _, attributeCount, _, attributes in
    guard let localName else { return }
    withParser(context) { $0.dispatchStart(localName, attributeCount, attributes) }
}

private let saxEndElement: endElementNsSAX2Func = { context, localName, _, _ in
    guard let localName else { return }
    withParser(context) { $0.dispatchEnd(localName) }
}

private let saxCharacters: charactersSAXFunc = { context, bytes, count in
    guard let bytes else { return }
    withParser(context) { $0.dispatchCharacters(bytes, count) }
}

private let saxInternalSubset: internalSubsetSAXFunc = { context, _, _, _ in
    parser(context).forbid("a DOCTYPE declaration")
}

private let saxEntityDeclaration: entityDeclSAXFunc = { context, _, _, _, _, _ in
    parser(context).forbid("an entity declaration")
}

private let saxGetEntity: getEntitySAXFunc = { context, name in
    parser(context).forbid("a reference to entity '\(name.map { String(cString: $0) } ?? "")'")
    return nil
}

private let saxResolveEntity: resolveEntitySAXFunc = { context, _, _ in
    parser(context).forbid("an external entity")
    return nil
}

private let saxStructuredError: xmlStructuredErrorFunc = { context, error in
    guard let context, let error else { return }
    parser(context).reportError(error)
}
