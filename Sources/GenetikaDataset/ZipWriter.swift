import CZlib
import Glibc
import GenetikaXlsx

/// Writes a ZIP archive sequentially to a file: stored or deflated entries, optional data
/// descriptors and ZIP64 records. Used to generate spreadsheets (benchmarks, crash tests)
/// and, in tests, archives with particular structures.
package final class ZipWriter {
    package enum Method: UInt16, Sendable { case stored = 0, deflate = 8 }

    package struct EntryOptions: Sendable {
        package var method: Method = .deflate
        /// Sizes and CRC after the data (flag bit 3) instead of in the local header.
        package var dataDescriptor = false
        /// ZIP64 extra fields even for small entries.
        package var zip64 = false
        package init(method: Method = .deflate, dataDescriptor: Bool = false, zip64: Bool = false) {
            self.method = method
            self.dataDescriptor = dataDescriptor
            self.zip64 = zip64
        }
    }

    private struct Written {
        var name: [UInt8]
        var options: EntryOptions
        var crc: UInt32
        var compressed: Int64
        var uncompressed: Int64
        var offset: Int64
    }

    package let path: String
    private let fd: Int32
    private var offset: Int64 = 0
    private var written: [Written] = []
    private var buffer: [UInt8] = []
    private let forceZip64Directory: Bool

    package init(path: String, zip64Directory: Bool = false) throws(XlsxError) {
        self.path = path
        self.forceZip64Directory = zip64Directory
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw XlsxError(.unreadable, file: path, "cannot create: \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(1 << 16)
    }

    deinit {
        close(fd)
    }

    /// Adds an entry whose content `body` writes through the given entry writer.
    package func addEntry(_ name: String, options: EntryOptions = EntryOptions(), body: (ZipEntryWriter) throws -> Void) throws {
        let start = offset
        let nameBytes = Array(name.utf8)
        var flags: UInt16 = 0x0800  // UTF-8 names
        if options.dataDescriptor { flags |= 0x0008 }
        var header: [UInt8] = []
        put32(&header, 0x0403_4B50)
        put16(&header, options.zip64 ? 45 : 20)
        put16(&header, flags)
        put16(&header, options.method.rawValue)
        put16(&header, 0)       // time
        put16(&header, 0x21)    // date: 1980-01-01
        put32(&header, 0)       // crc (patched or in descriptor)
        put32(&header, options.zip64 ? 0xFFFF_FFFF : 0)
        put32(&header, options.zip64 ? 0xFFFF_FFFF : 0)
        put16(&header, UInt16(nameBytes.count))
        put16(&header, options.zip64 ? 20 : 0)
        header += nameBytes
        if options.zip64 {
            put16(&header, 0x0001)
            put16(&header, 16)
            put64(&header, 0)
            put64(&header, 0)
        }
        try emit(header)
        let entry = try ZipEntryWriter(zip: self, method: options.method)
        try body(entry)
        try entry.finish()
        if options.dataDescriptor {
            var descriptor: [UInt8] = []
            put32(&descriptor, 0x0807_4B50)
            put32(&descriptor, entry.crc)
            if options.zip64 {
                put64(&descriptor, UInt64(entry.compressed))
                put64(&descriptor, UInt64(entry.uncompressed))
            } else {
                put32(&descriptor, UInt32(truncatingIfNeeded: entry.compressed))
                put32(&descriptor, UInt32(truncatingIfNeeded: entry.uncompressed))
            }
            try emit(descriptor)
        } else {
            try flushBuffer()
            var patch: [UInt8] = []
            put32(&patch, entry.crc)
            if options.zip64 {
                put32(&patch, 0xFFFF_FFFF)
                put32(&patch, 0xFFFF_FFFF)
            } else {
                put32(&patch, UInt32(truncatingIfNeeded: entry.compressed))
                put32(&patch, UInt32(truncatingIfNeeded: entry.uncompressed))
            }
            try pwriteAll(patch, at: start + 14)
            if options.zip64 {
                var sizes: [UInt8] = []
                put64(&sizes, UInt64(entry.uncompressed))
                put64(&sizes, UInt64(entry.compressed))
                try pwriteAll(sizes, at: start + 30 + Int64(nameBytes.count) + 4)
            }
        }
        written.append(Written(name: nameBytes, options: options, crc: entry.crc, compressed: entry.compressed,
                               uncompressed: entry.uncompressed, offset: start))
    }

    /// Adds an entry holding `bytes`.
    package func addEntry(_ name: String, bytes: [UInt8], options: EntryOptions = EntryOptions()) throws {
        try addEntry(name, options: options) { try $0.write(bytes) }
    }

    /// Writes the central directory and closes the file.
    package func finish() throws {
        let directoryStart = offset
        for entry in written {
            var record: [UInt8] = []
            let zip64 = entry.options.zip64
            put32(&record, 0x0201_4B50)
            put16(&record, 45)
            put16(&record, zip64 ? 45 : 20)
            put16(&record, entry.options.dataDescriptor ? 0x0808 : 0x0800)
            put16(&record, entry.options.method.rawValue)
            put16(&record, 0)
            put16(&record, 0x21)
            put32(&record, entry.crc)
            put32(&record, zip64 ? 0xFFFF_FFFF : UInt32(entry.compressed))
            put32(&record, zip64 ? 0xFFFF_FFFF : UInt32(entry.uncompressed))
            put16(&record, UInt16(entry.name.count))
            put16(&record, zip64 ? 28 : 0)
            put16(&record, 0)
            put16(&record, 0)
            put16(&record, 0)
            put32(&record, 0)
            put32(&record, zip64 ? 0xFFFF_FFFF : UInt32(entry.offset))
            record += entry.name
            if zip64 {
                put16(&record, 0x0001)
                put16(&record, 24)
                put64(&record, UInt64(entry.uncompressed))
                put64(&record, UInt64(entry.compressed))
                put64(&record, UInt64(entry.offset))
            }
            try emit(record)
        }
        let directorySize = offset - directoryStart
        let zip64Directory = forceZip64Directory || written.count >= 0xFFFF || directoryStart >= 0xFFFF_FFFF
        if zip64Directory {
            let recordOffset = offset
            var record: [UInt8] = []
            put32(&record, 0x0606_4B50)
            put64(&record, 44)
            put16(&record, 45)
            put16(&record, 45)
            put32(&record, 0)
            put32(&record, 0)
            put64(&record, UInt64(written.count))
            put64(&record, UInt64(written.count))
            put64(&record, UInt64(directorySize))
            put64(&record, UInt64(directoryStart))
            put32(&record, 0x0706_4B50)
            put32(&record, 0)
            put64(&record, UInt64(recordOffset))
            put32(&record, 1)
            try emit(record)
        }
        var end: [UInt8] = []
        put32(&end, 0x0605_4B50)
        put16(&end, 0)
        put16(&end, 0)
        put16(&end, zip64Directory ? 0xFFFF : UInt16(written.count))
        put16(&end, zip64Directory ? 0xFFFF : UInt16(written.count))
        put32(&end, zip64Directory ? 0xFFFF_FFFF : UInt32(directorySize))
        put32(&end, zip64Directory ? 0xFFFF_FFFF : UInt32(directoryStart))
        put16(&end, 0)
        try emit(end)
        try flushBuffer()
    }

    func emit(_ bytes: [UInt8]) throws(XlsxError) {
        try emit(bytes[...])
    }

    func emit(_ bytes: ArraySlice<UInt8>) throws(XlsxError) {
        buffer.append(contentsOf: bytes)
        offset += Int64(bytes.count)
        if buffer.count >= 1 << 16 { try flushBuffer() }
    }

    private func flushBuffer() throws(XlsxError) {
        var done = 0
        while done < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw XlsxError(.unreadable, file: path, "write failed: \(String(cString: strerror(errno)))") }
            done += n
        }
        buffer.removeAll(keepingCapacity: true)
    }

    private func pwriteAll(_ bytes: [UInt8], at position: Int64) throws(XlsxError) {
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, $0.count, off_t(position)) }
        guard n == bytes.count else { throw XlsxError(.unreadable, file: path, "write failed: \(String(cString: strerror(errno)))") }
    }
}

/// The content of one entry being written: CRC-32, sizes and (for deflate) compression.
package final class ZipEntryWriter {
    private unowned let zip: ZipWriter
    private let method: ZipWriter.Method
    private var stream: UnsafeMutablePointer<z_stream>?
    private var output: [UInt8]
    private(set) var crc: UInt32 = 0
    private(set) var compressed: Int64 = 0
    private(set) var uncompressed: Int64 = 0
    private var crcState: UInt = 0

    init(zip: ZipWriter, method: ZipWriter.Method) throws(XlsxError) {
        self.zip = zip
        self.method = method
        output = [UInt8](repeating: 0, count: 1 << 16)
        if method == .deflate {
            let z = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            z.initialize(to: z_stream())
            guard deflateInit2_(z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                z.deallocate()
                throw XlsxError(.corrupt, file: zip.path, "zlib deflateInit2 failed")
            }
            stream = z
        }
    }

    deinit {
        if let stream {
            deflateEnd(stream)
            stream.deallocate()
        }
    }

    package func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        crcState = crc32(crcState, bytes.baseAddress!.assumingMemoryBound(to: Bytef.self), UInt32(bytes.count))
        uncompressed += Int64(bytes.count)
        guard let z = stream else {
            try zip.emit(Array(bytes)[...])
            compressed += Int64(bytes.count)
            return
        }
        z.pointee.next_in = UnsafeMutablePointer(mutating: bytes.baseAddress!.assumingMemoryBound(to: Bytef.self))
        z.pointee.avail_in = UInt32(bytes.count)
        try pump(flush: Z_NO_FLUSH)
    }

    /// Runs deflate with `flush` and writes what it produces: for `Z_NO_FLUSH` until the
    /// input is consumed, for `Z_FINISH` until the stream's end.
    private func pump(flush: Int32) throws {
        guard let z = stream else { return }
        while true {
            var result: Int32 = Z_OK
            let produced: Int = output.withUnsafeMutableBytes { out in
                z.pointee.next_out = out.baseAddress!.assumingMemoryBound(to: Bytef.self)
                z.pointee.avail_out = UInt32(out.count)
                result = deflate(z, flush)
                return out.count - Int(z.pointee.avail_out)
            }
            if produced > 0 {
                try zip.emit(output[0..<produced])
                compressed += Int64(produced)
            }
            let done = flush == Z_FINISH ? result == Z_STREAM_END : z.pointee.avail_out != 0
            if done { return }
        }
    }

    func finish() throws {
        if let z = stream {
            z.pointee.avail_in = 0
            try pump(flush: Z_FINISH)
        }
        crc = UInt32(truncatingIfNeeded: crcState)
    }
}

private func put16(_ bytes: inout [UInt8], _ value: UInt16) {
    bytes.append(UInt8(value & 0xFF))
    bytes.append(UInt8(value >> 8))
}

private func put32(_ bytes: inout [UInt8], _ value: UInt32) {
    for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8((value >> UInt32(shift)) & 0xFF)) }
}

private func put64(_ bytes: inout [UInt8], _ value: UInt64) {
    for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8((value >> UInt64(shift)) & 0xFF)) }
}
