import Foundation
import Synchronization
import Testing
import TestSupport
@testable import MSCore

/// Sends `bytes` on a fresh connection and reads until the server closes it (or `seconds` pass: then the result
/// ends with "<timeout>"). The bytes after a refusal may fail to send; what was read is still returned.
private func exchange(_ port: Int, _ bytes: [UInt8], seconds: Int = 5) throws -> String {
    let c = try RawConnection(port: port)
    defer { c.close() }
    var tv = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        off += n
    }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(c.fd, &buf, buf.count, 0)
        if n == 0 { break }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { out += Array("<timeout>".utf8) }
            break
        }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

private func statusLines(_ s: String) -> [String] {
    s.components(separatedBy: "\r\n").filter { $0.hasPrefix("HTTP/1.1 ") }
}

@Suite("CH2O server under abuse", .serialized)
struct HTTPServerAbuseTests {
    /// A server that records the paths it was asked for.
    private func recordingServer() throws -> (HTTPServer, Int, Box<[String]>) {
        let seen = Box<[String]>([])
        let (server, port) = try startServer(threads: 1) { req, res in
            seen.update { $0.append(req.path) }
            res.respondJSON(status: 200, "{\"bytes\":\(req.body.count)}")
        }
        return (server, port, seen)
    }

    @Test func requestsPipelinedPastTheConnectionLimitAreNotServedAndTheConnectionCloses() throws {
        let seen = Box<[String]>([])
        let server = try HTTPServer(
            configuration: HTTPServerConfiguration(threads: 1, listeners: [HTTPListener(host: "127.0.0.1", port: 0)],
                                                   maxRequestsPerConnection: 2),
            handler: { req, res in
                seen.update { $0.append(req.path) }
                res.respondJSON(status: 200, "{}")
            })
        try server.start()
        defer { server.shutdown() }
        let r = try exchange(server.boundPorts[0], Array((1...4).map { "GET /\($0) HTTP/1.1\r\nHost: x\r\n\r\n" }.joined().utf8))
        // the 2nd reply closes the connection; the client must send the 3rd and 4th again on a new one (RFC 9112 §9.3.2)
        #expect(r.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 2, "\(r)")
        #expect(r.components(separatedBy: "Connection: keep-alive").count - 1 == 1, "\(r)")
        #expect(r.components(separatedBy: "Connection: close").count - 1 == 1, "\(r)")
        #expect(!r.hasSuffix("<timeout>"), "the connection must close")
        #expect(seen.get() == ["/1", "/2"])
    }

    @Test func contentLengthWithTransferEncodingIs400AndTheTrailingBytesAreNeverARequest() throws {
        let (server, port, seen) = try recordingServer()
        defer { server.shutdown() }
        let body = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        let r = try exchange(port, Array(("POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Transfer-Encoding: chunked\r\n\r\n" + body).utf8))
        #expect(statusLines(r) == ["HTTP/1.1 400 Bad Request"], "\(r)")
        #expect(r.contains("both Content-Length and Transfer-Encoding"))
        #expect(!r.hasSuffix("<timeout>"), "the connection must close")
        #expect(!seen.get().contains("/smuggled"))
        #expect(!seen.get().contains("/front"))
        // and it still serves
        let ok = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/after"])
        #expect(ok.stdout == "200")
    }

    @Test func differingContentLengthsAre400AndEqualOnesAreServed() throws {
        let (server, port, seen) = try recordingServer()
        defer { server.shutdown() }
        let bad = try exchange(port, Array("POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde".utf8))
        #expect(statusLines(bad) == ["HTTP/1.1 400 Bad Request"], "\(bad)")
        #expect(bad.contains("conflicting Content-Length headers"))
        #expect(!bad.hasSuffix("<timeout>"))
        #expect(!seen.get().contains("/two"))
        let same = try exchange(port, Array(("POST /same HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n"
            + "Connection: close\r\n\r\nabc").utf8))
        #expect(statusLines(same) == ["HTTP/1.1 200 OK"], "\(same)")
        #expect(same.contains("{\"bytes\":3}"))
    }

    @Test func aThousandHeadersOrAMebibyteHeaderIs431AndTheServerGoesOn() throws {
        let (server, port, _) = try recordingServer()
        defer { server.shutdown() }
        let many = "GET /many HTTP/1.1\r\nHost: x\r\n" + (0..<1000).map { "x-h\($0): v\r\n" }.joined() + "\r\n"
        let r1 = try exchange(port, Array(many.utf8))
        #expect(statusLines(r1) == ["HTTP/1.1 431 Request Header Fields Too Large"], "\(r1.prefix(300))")
        #expect(r1.contains("more than 100 header fields"))
        let big = "GET /big HTTP/1.1\r\nHost: x\r\nx-big: " + String(repeating: "a", count: 1 << 20) + "\r\n\r\n"
        let r2 = try exchange(port, Array(big.utf8))
        #expect(statusLines(r2) == ["HTTP/1.1 431 Request Header Fields Too Large"], "\(r2.prefix(300))")
        #expect(r2.contains("over the limit"))
        let ok = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/after"])
        #expect(ok.stdout == "200")
    }

    @Test func aChunkAnnouncedBeyondTheBodyLimitIsRefusedAtOnce() throws {
        let (server, port, seen) = try recordingServer()
        defer { server.shutdown() }
        // 2^64-1: h2o would wait for it (the read below would time out)
        let r = try exchange(port, Array("POST /chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc".utf8))
        #expect(statusLines(r) == ["HTTP/1.1 413 Payload Too Large"], "\(r)")
        #expect(r.contains("over the body limit"))
        #expect(!seen.get().contains("/chunk"))
        // a sane chunked body still works
        let ok = try exchange(port, Array(("POST /fine HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").utf8))
        #expect(statusLines(ok) == ["HTTP/1.1 200 OK"], "\(ok)")
        #expect(ok.contains("{\"bytes\":5}"))
    }

    @Test func aSecondServerOnTheSamePortFailsToStart() throws {
        let (server, port, _) = try recordingServer()
        defer { server.shutdown() }
        #expect(throws: HTTPServerError.self) {
            _ = try HTTPServer(configuration: HTTPServerConfiguration(threads: 2, listeners: [HTTPListener(host: "127.0.0.1", port: port)]),
                               handler: { _, res in res.respond(status: 200, body: "") })
        }
        do {
            _ = try HTTPServer(configuration: HTTPServerConfiguration(threads: 2, listeners: [HTTPListener(host: "127.0.0.1", port: port)]),
                               handler: { _, res in res.respond(status: 200, body: "") })
        } catch {
            #expect(error.description.contains("Address already in use"))
        }
        // two loops share the one socket: both keep answering
        for _ in 0..<4 {
            let ok = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/x"])
            #expect(ok.stdout == "200")
        }
    }
}
