import GenetikaSupport
import Foundation
import Synchronization

/// A minimal HTTP/1.1 server for `/metrics` and `/health`: one thread accepts connections
/// and answers `GET` requests one at a time (`Connection: close`). Enough for scrapes and
/// probes, with no dependency beyond POSIX sockets.
package final class HTTPEndpoint: Sendable {
    package struct Response: Sendable {
        package var status: Int
        var contentType: String
        package var body: [UInt8]

        package init(status: Int, contentType: String, body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    package let host: String
    package let port: Int
    private let listener: Int32
    private let running = Atomic<Bool>(true)
    private let finished = DispatchSemaphore(value: 0)

    /// Binds `host:port` and starts answering with `respond(path)`.
    package init(host: String, port: Int, respond: @escaping @Sendable (String) -> Response) throws {
        self.host = host
        self.port = port
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPEndpointError("socket(): \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw HTTPEndpointError("invalid IPv4 address \(host)")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw HTTPEndpointError("cannot listen on \(host):\(port): \(message)")
        }
        listener = fd
        let thread = Thread { [self] in
            while running.load(ordering: .acquiring) {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    // Closed by stop(), or a transient failure (EMFILE…): do not spin.
                    if running.load(ordering: .acquiring) { usleep(10_000) }
                    continue
                }
                Self.serve(client, respond: respond)
            }
            finished.signal()
        }
        thread.name = "genetika-http"
        thread.start()
    }

    /// Stops accepting and closes the socket.
    package func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        finished.wait()
    }

    private static func serve(_ client: Int32, respond: @Sendable (String) -> Response) {
        defer { close(client) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let n = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            request += chunk[0..<n]
            if request.count >= 4, request.suffix(4) == [13, 10, 13, 10] { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let response: Response
        if line.count >= 2, line[0] == "GET" {
            response = respond(String(line[1].split(separator: "?").first ?? ""))
        } else {
            response = Response(status: 405, contentType: "text/plain", body: Array("only GET is supported\n".utf8))
        }
        // No secret leaves in a body (an error text in /health can quote a URL or a property).
        let body = Array(Secrets.redact(String(decoding: response.body, as: UTF8.self)).utf8)
        let reason = [200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][response.status] ?? "Status"
        let head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(client, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
    }
}

struct HTTPEndpointError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
