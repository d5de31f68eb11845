import CZlib
import Foundation

/// One file in a ZIP archive, as its central directory describes it.
struct ZipEntry: Sendable {
    var name: String
    var method: UInt16
    var flags: UInt16
    var crc32: UInt32
    var compressedSize: Int64
    var uncompressedSize: Int64
    var localHeaderOffset: Int64
}

/// A ZIP archive read from its central directory (with ZIP64 support). Parts are streamed
/// with `pread`, so memory does not grow with the archive's size.
final class ZipArchive {
    let file: String
    private let fd: Int32
    let fileSize: Int64
    private(set) var entries: [ZipEntry] = []
    private var byName: [String: Int] = [:]
    private var byLowercasedName: [String: Int] = [:]

    init(path: String) throws(XlsxError) {
        file = (path as NSString).lastPathComponent
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw XlsxError(.unreadable, file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw XlsxError(.unreadable, file: path, "not a regular file")
        }
        fileSize = Int64(info.st_size)
        // Every stored property is set from here on, so if this throws, deinit runs and
        // closes `fd`. Closing it here as well closed it twice: the second close hit whatever
        // file another thread had opened under the same number in between (seen as "Bad file
        // descriptor" in parallel release-build tests).
        try readCentralDirectory()
    }

    deinit {
        close(fd)
    }

    func entry(named name: String) -> ZipEntry? {
        if let index = byName[name] { return entries[index] }
        // Office treats part names case-insensitively.
        if let index = byLowercasedName[name.lowercased()] { return entries[index] }
        return nil
    }

    private func fail(_ kind: XlsxError.Kind, _ message: String, part: String? = nil) -> XlsxError {
        XlsxError(kind, file: file, part: part, message)
    }

    /// Reads exactly `count` bytes at `offset`.
    func readBytes(at offset: Int64, count: Int, part: String? = nil) throws(XlsxError) -> [UInt8] {
        guard count >= 0, offset >= 0, offset + Int64(count) <= fileSize else {
            throw fail(.truncated, "needs \(count) bytes at offset \(offset) but the file has \(fileSize)", part: part)
        }
        var buffer = [UInt8](repeating: 0, count: count)
        let ok = buffer.withUnsafeMutableBytes { preadFully(into: $0, at: offset) }
        guard ok else { throw fail(.unreadable, "read failed at offset \(offset): \(String(cString: strerror(errno)))", part: part) }
        return buffer
    }

    func preadFully(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Bool {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + Int64(done)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    private func readCentralDirectory() throws(XlsxError) {
        // End of central directory: 22 bytes plus a comment of up to 65,535 bytes.
        let tailSize = Int(min(fileSize, 22 + 65_535))
        guard tailSize >= 22 else { throw fail(.notAZip, "not a ZIP archive (too short to be an xlsx file)") }
        let tail = try readBytes(at: fileSize - Int64(tailSize), count: tailSize)
        var eocd = -1
        var i = tailSize - 22
        while i >= 0 {
            if tail[i] == 0x50, tail[i + 1] == 0x4B, tail[i + 2] == 0x05, tail[i + 3] == 0x06 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw fail(.notAZip, "not a ZIP archive (no end-of-central-directory record); is it an xlsx file?") }
        var entryCount = Int64(le16(tail, eocd + 10))
        var directorySize = Int64(le32(tail, eocd + 12))
        var directoryOffset = Int64(le32(tail, eocd + 16))
        let eocdOffset = fileSize - Int64(tailSize) + Int64(eocd)
        if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // ZIP64: a locator sits right before the classic record.
            guard eocdOffset >= 20 else { throw fail(.corrupt, "ZIP64 locator missing") }
            let locator = try readBytes(at: eocdOffset - 20, count: 20)
            guard le32(locator, 0) == 0x0706_4B50 else { throw fail(.corrupt, "ZIP64 end-of-central-directory locator missing") }
            let recordOffset = Int64(bitPattern: le64(locator, 8))
            let record = try readBytes(at: recordOffset, count: 56)
            guard le32(record, 0) == 0x0606_4B50 else { throw fail(.corrupt, "ZIP64 end-of-central-directory record missing at offset \(recordOffset)") }
            entryCount = Int64(bitPattern: le64(record, 32))
            directorySize = Int64(bitPattern: le64(record, 40))
            directoryOffset = Int64(bitPattern: le64(record, 48))
        }
        guard directoryOffset >= 0, directorySize >= 0, directoryOffset + directorySize <= fileSize else {
            throw fail(.truncated, "central directory (\(directorySize) bytes at offset \(directoryOffset)) lies beyond the end of the file (\(fileSize) bytes)")
        }
        guard entryCount >= 0, entryCount <= directorySize / 46 + 1, directorySize <= 64 << 20 else {
            throw fail(.corrupt, "implausible central directory: \(entryCount) entries in \(directorySize) bytes")
        }
        let directory = try readBytes(at: directoryOffset, count: Int(directorySize))
        var position = 0
        for index in 0..<Int(entryCount) {
            guard position + 46 <= directory.count, le32(directory, position) == 0x0201_4B50 else {
                throw fail(.corrupt, "central directory entry \(index) is damaged")
            }
            let flags = le16(directory, position + 8)
            let method = le16(directory, position + 10)
            let crc = le32(directory, position + 16)
            var compressed = Int64(le32(directory, position + 20))
            var uncompressed = Int64(le32(directory, position + 24))
            let nameLength = Int(le16(directory, position + 28))
            let extraLength = Int(le16(directory, position + 30))
            let commentLength = Int(le16(directory, position + 32))
            var localOffset = Int64(le32(directory, position + 42))
            let nameStart = position + 46
            guard nameStart + nameLength + extraLength + commentLength <= directory.count else {
                throw fail(.corrupt, "central directory entry \(index) runs past the directory")
            }
            let name = String(decoding: directory[nameStart..<nameStart + nameLength], as: UTF8.self)
            // ZIP64 extended information replaces the fields that hold 0xFFFFFFFF, in order.
            var extra = nameStart + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = le16(directory, extra)
                let size = Int(le16(directory, extra + 2))
                let body = extra + 4
                guard body + size <= extraEnd else { break }
                if id == 0x0001 {
                    var field = body
                    func next() -> Int64? {
                        guard field + 8 <= body + size else { return nil }
                        defer { field += 8 }
                        return Int64(bitPattern: le64(directory, field))
                    }
                    if uncompressed == 0xFFFF_FFFF, let value = next() { uncompressed = value }
                    if compressed == 0xFFFF_FFFF, let value = next() { compressed = value }
                    if localOffset == 0xFFFF_FFFF, let value = next() { localOffset = value }
                }
                extra = body + size
            }
            guard compressed >= 0, uncompressed >= 0, localOffset >= 0 else {
                throw fail(.corrupt, "negative size or offset in the central directory", part: name)
            }
            byName[name] = entries.count
            byLowercasedName[name.lowercased()] = entries.count
            entries.append(ZipEntry(name: name, method: method, flags: flags, crc32: crc,
                                    compressedSize: compressed, uncompressedSize: uncompressed,
                                    localHeaderOffset: localOffset))
            position = nameStart + nameLength + extraLength + commentLength
        }
    }

    /// Opens a part for streaming after checking it against `limits`.
    func stream(_ entry: ZipEntry, limits: XlsxLimits) throws(XlsxError) -> ZipEntryStream {
        try ZipEntryStream(archive: self, entry: entry, limits: limits)
    }

    /// A whole (small) part in memory.
    func readAll(_ entry: ZipEntry, limits: XlsxLimits) throws(XlsxError) -> [UInt8] {
        let stream = try stream(entry, limits: limits)
        var result: [UInt8] = []
        result.reserveCapacity(Int(entry.uncompressedSize))
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 1)
        defer { chunk.deallocate() }
        while true {
            let n = try stream.read(into: chunk)
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }
}

/// Decompressed bytes of one part, with its CRC-32 and size checked at the end.
final class ZipEntryStream {
    private let archive: ZipArchive
    let entry: ZipEntry
    private var compressedOffset: Int64
    private var compressedRemaining: Int64
    private var produced: Int64 = 0
    private var crc: UInt = 0
    private var finished = false
    private var stream: UnsafeMutablePointer<z_stream>?
    private var input: UnsafeMutableRawBufferPointer

    init(archive: ZipArchive, entry: ZipEntry, limits: XlsxLimits) throws(XlsxError) {
        self.archive = archive
        self.entry = entry
        let part = entry.name
        func fail(_ kind: XlsxError.Kind, _ message: String) -> XlsxError {
            XlsxError(kind, file: archive.file, part: part, message)
        }
        if entry.flags & 0x0001 != 0 { throw fail(.unsupported, "the part is encrypted") }
        guard entry.method == 0 || entry.method == 8 else {
            throw fail(.unsupported, "compression method \(entry.method) is not supported (only stored and deflate)")
        }
        if entry.uncompressedSize > Int64(limits.maxPartBytes) {
            throw fail(.limitExceeded, "uncompressed size \(entry.uncompressedSize) bytes exceeds the limit of \(limits.maxPartBytes) bytes (xlsx.maxPartBytes)")
        }
        if entry.uncompressedSize > Int64(limits.ratioFloorBytes) {
            let ratio = Double(entry.uncompressedSize) / Double(max(entry.compressedSize, 1))
            if ratio > limits.maxCompressionRatio {
                throw fail(.limitExceeded, "compression ratio \(Int(ratio)):1 exceeds the limit of \(Int(limits.maxCompressionRatio)):1 (xlsx.maxCompressionRatio); a decompression bomb?")
            }
        }
        if entry.method == 0 && entry.compressedSize != entry.uncompressedSize {
            throw fail(.corrupt, "stored part with compressed size \(entry.compressedSize) ≠ uncompressed size \(entry.uncompressedSize)")
        }
        let header = try archive.readBytes(at: entry.localHeaderOffset, count: 30, part: part)
        guard le32(header, 0) == 0x0403_4B50 else { throw fail(.corrupt, "local file header missing at offset \(entry.localHeaderOffset)") }
        let dataStart = entry.localHeaderOffset + 30 + Int64(le16(header, 26)) + Int64(le16(header, 28))
        guard dataStart + entry.compressedSize <= archive.fileSize else {
            throw fail(.truncated, "data (\(entry.compressedSize) bytes at offset \(dataStart)) runs past the end of the file (\(archive.fileSize) bytes)")
        }
        compressedOffset = dataStart
        compressedRemaining = entry.compressedSize
        input = UnsafeMutableRawBufferPointer.allocate(byteCount: entry.method == 8 ? 64 * 1024 : 0, alignment: 1)
        if entry.method == 8 {
            let z = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            z.initialize(to: z_stream())
            guard inflateInit2_(z, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                z.deallocate()
                // `input` is not freed here: every stored property is set, so deinit runs and frees it.
                throw fail(.corrupt, "zlib inflateInit2 failed")
            }
            stream = z
        }
    }

    deinit {
        if let stream {
            inflateEnd(stream)
            stream.deallocate()
        }
        input.deallocate()
    }

    private func fail(_ kind: XlsxError.Kind, _ message: String) -> XlsxError {
        XlsxError(kind, file: archive.file, part: entry.name, message)
    }

    /// Fills `buffer` with the next decompressed bytes; 0 at the end (after the checks).
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(XlsxError) -> Int {
        guard !finished, buffer.count > 0 else { return 0 }
        let count: Int
        var atEnd = false
        if let z = stream {
            z.pointee.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = UInt32(buffer.count)
            while z.pointee.avail_out == UInt32(buffer.count) {
                if z.pointee.avail_in == 0 && compressedRemaining > 0 {
                    let n = Int(min(Int64(input.count), compressedRemaining))
                    let slice = UnsafeMutableRawBufferPointer(rebasing: input[0..<n])
                    guard archive.preadFully(into: slice, at: compressedOffset) else {
                        throw fail(.truncated, "compressed data ends early at offset \(compressedOffset)")
                    }
                    compressedOffset += Int64(n)
                    compressedRemaining -= Int64(n)
                    z.pointee.next_in = input.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    z.pointee.avail_in = UInt32(n)
                }
                let availIn = z.pointee.avail_in
                let result = inflate(z, Z_NO_FLUSH)
                if result == Z_STREAM_END { atEnd = true; break }
                if result == Z_BUF_ERROR || (result == Z_OK && availIn == z.pointee.avail_in && z.pointee.avail_out == UInt32(buffer.count)) {
                    if z.pointee.avail_in == 0 && compressedRemaining == 0 {
                        throw fail(.truncated, "deflate stream ends before its end marker")
                    }
                    throw fail(.corrupt, "deflate data makes no progress")
                }
                if result != Z_OK {
                    let message = z.pointee.msg.map { String(cString: $0) } ?? "error \(result)"
                    throw fail(.corrupt, "corrupt deflate data: \(message)")
                }
            }
            count = buffer.count - Int(z.pointee.avail_out)
        } else {
            count = Int(min(Int64(buffer.count), compressedRemaining))
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
            guard archive.preadFully(into: slice, at: compressedOffset) else {
                throw fail(.truncated, "data ends early at offset \(compressedOffset)")
            }
            compressedOffset += Int64(count)
            compressedRemaining -= Int64(count)
            atEnd = compressedRemaining == 0
        }
        produced += Int64(count)
        if produced > entry.uncompressedSize {
            throw fail(.sizeMismatch, "inflates to more than the \(entry.uncompressedSize) bytes the directory declares")
        }
        crc = crc32(crc, buffer.baseAddress!.assumingMemoryBound(to: Bytef.self), UInt32(count))
        if atEnd {
            finished = true
            if produced != entry.uncompressedSize {
                throw fail(.sizeMismatch, "inflates to \(produced) bytes, the directory declares \(entry.uncompressedSize)")
            }
            if UInt32(truncatingIfNeeded: crc) != entry.crc32 {
                throw fail(.checksumMismatch, String(format: "CRC-32 mismatch (directory %08x, data %08x)", entry.crc32, UInt32(truncatingIfNeeded: crc)))
            }
        }
        return count
    }
}

@inline(__always) func le16(_ bytes: [UInt8], _ at: Int) -> UInt16 {
    UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
}

@inline(__always) func le32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
    UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
}

@inline(__always) func le64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
    UInt64(le32(bytes, at)) | UInt64(le32(bytes, at + 4)) << 32
}
