import Foundation
import Synchronization

/// Secrets the configuration holds (database passwords, secret Kafka properties), so that no
/// output shows them: every log line, error, `/health` body, `--summary` file and
/// `check-config` line goes through `redact`, which replaces each registered secret with
/// `***`, and the password of any `scheme://user:password@host` URL as well.
package enum Secrets {
    private static let registered = Mutex<[String]>([])

    /// Registers a secret value (empty or one-character values are ignored: they would mask
    /// ordinary text).
    package static func register(_ secret: String) {
        guard secret.count >= 2 else { return }
        registered.withLock { list in
            if !list.contains(secret) {
                list.append(secret)
                list.sort { $0.count > $1.count }   // longer first: a secret containing another
            }
        }
    }

    /// Whether a Kafka (librdkafka) property holds a secret: `*.password`, `sasl.jaas.config`,
    /// `ssl.key.*`, `*secret*` (e.g. `sasl.oauthbearer.client.secret`).
    package static func isSecretProperty(_ key: String) -> Bool {
        let key = key.lowercased()
        return key.hasSuffix(".password") || key == "password" || key == "sasl.jaas.config" || key.hasPrefix("ssl.key.")
            || key.contains("secret") || key.hasSuffix(".pem") && key.contains("key")
    }

    /// `text` with every registered secret and every URL password replaced by `***`.
    package static func redact(_ text: String) -> String {
        var result = maskURLPasswords(text)
        for secret in registered.withLock({ $0 }) where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        return result
    }

    /// `postgres://user:secret@host/db` → `postgres://user:***@host/db`, wherever such a URL
    /// appears in `text`.
    package static func maskURLPasswords(_ text: String) -> String {
        guard text.contains("://") else { return text }
        var output = ""
        var rest = Substring(text)
        while let scheme = rest.range(of: "://") {
            output += rest[..<scheme.upperBound]
            rest = rest[scheme.upperBound...]
            // The authority ends at the first '/', whitespace, quote or end; a password sits
            // between the first ':' and the last '@' in it.
            let end = rest.firstIndex { $0 == "/" || $0 == " " || $0 == "\"" || $0 == "'" || $0 == "\n" || $0 == "?" } ?? rest.endIndex
            let authority = rest[..<end]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                output += authority[...colon] + "***" + authority[at...]
            } else {
                output += authority
            }
            rest = rest[end...]
        }
        return output + rest
    }
}
