import Foundation
import CLibCrypto

/// The SHA-256 of a file's content (OpenSSL's EVP interface, the only place it is called):
/// how the inbox records which file it took, whatever its name.
package enum FileDigest {
    package struct Failure: Error, CustomStringConvertible {
        package var file: String
        package var reason: String
        package var description: String { "\(file): \(reason)" }
    }

    /// The file's SHA-256 in lower-case hex, read in 1 MiB chunks.
    package static func sha256(of file: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw Failure(file: file, reason: "cannot open it") }
        defer { try? handle.close() }
        guard let context = EVP_MD_CTX_new() else { throw Failure(file: file, reason: "no digest context") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else { throw Failure(file: file, reason: "SHA-256 unavailable") }
        while true {
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { break }
            _ = chunk.withUnsafeBytes { EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &digest, &length)
        return digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }
}
