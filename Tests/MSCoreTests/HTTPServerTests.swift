import Foundation
import Testing
import TestSupport
@testable import MSCore

private let echo: HTTPHandler = { req, res in
    let body = "{\"method\":\"\(req.method)\",\"path\":\"\(req.path)\",\"query\":\"\(req.query ?? "")\",\"bytes\":\(req.body.count),\"version\":\(req.httpVersion),\"tls\":\(req.isTLS)}"
    res.respondJSON(status: 200, body, headers: [("x-echo-header", req.headers["x-test"] ?? "")])
}

@Suite("CH2O server over real sockets", .serialized)
struct HTTPServerTests {
    @Test func answersHTTP11AndH2cPriorKnowledge() throws {
        let (server, port) = try startServer(handler: echo)
        defer { server.shutdown() }
        let h1 = try curl(["--http1.1", "-H", "x-test: one", "-D", "-", "http://127.0.0.1:\(port)/a/b?x=1"])
        #expect(h1.status == 0)
        #expect(h1.stdout.hasPrefix("HTTP/1.1 200"))
        #expect(h1.stdout.lowercased().contains("content-length: "))
        #expect(h1.stdout.lowercased().contains("x-echo-header: one"))
        #expect(h1.stdout.contains("\"path\":\"/a/b\",\"query\":\"x=1\""))
        let h2 = try curl(["--http2-prior-knowledge", "-D", "-", "-d", "hello", "http://127.0.0.1:\(port)/p"])
        #expect(h2.status == 0)
        #expect(h2.stdout.hasPrefix("HTTP/2 200"))
        #expect(h2.stdout.contains("\"method\":\"POST\""))
        #expect(h2.stdout.contains("\"bytes\":5,\"version\":512"))
    }

    @Test func servesH2AndHTTP11OverTLSByALPN() async throws {
        let pki = try makePKI()
        let tls = TLSConfiguration(certificatePath: pki.appendingPathComponent("server.pem").path,
                                   privateKeyPath: pki.appendingPathComponent("server.key.pem").path, verifyPeer: false)
        let (server, port) = try startServer(tls: tls, handler: echo)
        defer { server.shutdown() }
        let ca = pki.appendingPathComponent("ca.pem").path
        let h2 = try curl(["--http2", "--cacert", ca, "-D", "-", "https://127.0.0.1:\(port)/tls"])
        #expect(h2.status == 0, "\(h2.stderr)")
        #expect(h2.stdout.hasPrefix("HTTP/2 200"))
        #expect(h2.stdout.contains("\"tls\":true"))
        let h1 = try curl(["--http1.1", "--cacert", ca, "-D", "-", "https://localhost:\(port)/tls"])
        #expect(h1.stdout.hasPrefix("HTTP/1.1 200"))
        // TLS 1.2 is refused by default (TLS 1.3 only, as the reference)
        let old = try curl(["--http1.1", "--cacert", ca, "--tls-max", "1.2", "https://127.0.0.1:\(port)/tls"])
        #expect(old.status != 0)
        // the project's own client over TLS
        let client = HTTPClient(tls: try TLSClient(TLSConfiguration(caPath: ca)))
        let r = try await client.execute(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/own"))
        #expect(r.status == 200)
        #expect(r.text.contains("\"tls\":true"))
    }

    @Test func mutualTLSRefusesAClientWithoutCertificate() async throws {
        let pki = try makePKI()
        func path(_ f: String) -> String { pki.appendingPathComponent(f).path }
        let tls = TLSConfiguration(certificatePath: path("server.pem"), privateKeyPath: path("server.key.pem"),
                                   caPath: path("ca.pem"), crlPath: path("crl.pem"), verifyPeer: true)
        let (server, port) = try startServer(tls: tls, handler: echo)
        defer { server.shutdown() }
        let without = try curl(["--cacert", path("ca.pem"), "https://127.0.0.1:\(port)/"])
        #expect(without.status != 0)
        let with = try curl(["--cacert", path("ca.pem"), "--cert", path("client.pem"), "--key", path("client.key.pem"),
                             "https://127.0.0.1:\(port)/"])
        #expect(with.status == 0, "\(with.stderr)")
        #expect(with.stdout.contains("\"tls\":true"))
        // the project's own client, with and without a client certificate
        let good = HTTPClient(tls: try TLSClient(TLSConfiguration(certificatePath: path("client.pem"), privateKeyPath: path("client.key.pem"), caPath: path("ca.pem"))))
        let r = try await good.execute(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/mtls"))
        #expect(r.status == 200)
        let bad = HTTPClient(tls: try TLSClient(TLSConfiguration(caPath: path("ca.pem"))))
        await #expect(throws: HTTPClientError.self) {
            _ = try await bad.execute(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/mtls"))
        }
    }

    @Test func revokedClientCertificateIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pki-revoked-\(UUID().uuidString)")
        let made = try run("/bin/bash", [packageRoot.appendingPathComponent("scripts/gen_test_pki.sh").path, dir.path, "--revoke-client"])
        #expect(made.status == 0)
        func path(_ f: String) -> String { dir.appendingPathComponent(f).path }
        let tls = TLSConfiguration(certificatePath: path("server.pem"), privateKeyPath: path("server.key.pem"),
                                   caPath: path("ca.pem"), crlPath: path("crl.pem"), verifyPeer: true)
        let (server, port) = try startServer(tls: tls, handler: echo)
        defer { server.shutdown() }
        let r = try curl(["--cacert", path("ca.pem"), "--cert", path("client.pem"), "--key", path("client.key.pem"), "https://127.0.0.1:\(port)/"])
        #expect(r.status != 0)
    }

    @Test func oversizedBodyGets413AndOversizedHeadersGet431() throws {
        let (server, port) = try startServer(maxBody: 1 << 20, handler: echo)
        defer { server.shutdown() }
        let big = FileManager.default.temporaryDirectory.appendingPathComponent("big-\(UUID().uuidString)")
        try Data(repeating: 0x61, count: 2 << 20).write(to: big)
        let r = try curl(["-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@\(big.path)", "http://127.0.0.1:\(port)/upload"])
        #expect(r.stdout == "413")
        let small = try curl(["-w", "\n%{http_code}", "--data-binary", "abc", "http://127.0.0.1:\(port)/upload"])
        #expect(small.stdout.hasSuffix("\n200"))
        let huge = String(repeating: "h", count: 70 * 1024)
        let h = try curl(["-w", "\n%{http_code}", "-H", "x-big: \(huge)", "http://127.0.0.1:\(port)/"])
        #expect(h.stdout.hasSuffix("\n431"))
        #expect(h.stdout.contains("over the limit"))
    }

    @Test func connectionLimitRefusesWithA503() async throws {
        let (server, port) = try startServer(threads: 1, maxConnections: 1, handler: echo)
        defer { server.shutdown() }
        let first = try RawConnection(port: port)
        defer { first.close() }
        #expect(await eventually(within: 5) { server.openConnections == 1 })
        let second = try curl(["-D", "-", "http://127.0.0.1:\(port)/"])
        #expect(second.stdout.hasPrefix("HTTP/1.1 503"))
        #expect(second.stdout.contains("too many connections"))
    }

    @Test func aKeepAliveConnectionIsClosedAtItsRequestLimitWithoutLosingARequest() throws {
        let server = try HTTPServer(
            configuration: HTTPServerConfiguration(threads: 1, listeners: [HTTPListener(host: "127.0.0.1", port: 0)],
                                                   maxRequestsPerConnection: 2),
            handler: echo)
        try server.start()
        defer { server.shutdown() }
        let port = server.boundPorts[0]
        // five requests on keep-alive connections: the 2nd reply on each connection says "Connection: close" and the
        // client carries on on a new one; none is refused (the reference answered the 3rd with 429)
        let r = try curl(["-D", "-", "-w", "\nresult=%{http_code} %{num_connects}\n"] + "abcde".map { "http://127.0.0.1:\(port)/\($0)" })
        let results = r.stdout.split(separator: "\n").filter { $0.hasPrefix("result=") }.map { $0.dropFirst(7) }
        // a new connection for the 1st, 3rd and 5th request
        #expect(results == ["200 1", "200 0", "200 1", "200 0", "200 1"], "\(r.stdout)")
        #expect(!r.stdout.contains("out of limit"))
        #expect(r.stdout.components(separatedBy: "Connection: close").count - 1 == 2, "\(r.stdout)")
    }

    @Test func streamsChunkByChunkWhileTheServerIsStillProducing() async throws {
        // The second chunk is produced only after the client proves it has received the first.
        let waiting = Box<HTTPResponder?>(nil)
        let (server, port) = try startServer(threads: 1) { req, res in
            if req.path == "/stream" {
                res.startStream(status: 200, headers: [("content-type", "text/event-stream")])
                res.write("data: first\n\n")
                waiting.set(res)
            } else if req.path == "/release", let s = waiting.get() {
                s.write("data: second\n\n")
                s.end()
                res.respond(status: 200, body: "released")
            }
        }
        defer { server.shutdown() }
        let client = HTTPClient()
        let received = Box<[String]>([])
        let ended = Box<HTTPClientError??>(.none)
        client.loop.execute {
            client.stream(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/stream"), on: client.loop,
                          onHead: { _, _ in }, onBody: { b in received.update { $0.append(String(decoding: b, as: UTF8.self)) } },
                          onEnd: { ended.set(.some($0)) })
        }
        #expect(await eventually(within: 10) { received.get().joined().contains("data: first\n\n") })
        #expect(!received.get().joined().contains("second"))
        #expect(ended.get() == nil)
        let r = try await client.execute(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/release"))
        #expect(r.text == "released")
        #expect(await eventually(within: 10) { ended.get() != nil })
        #expect(received.get().joined() == "data: first\n\ndata: second\n\n")
        #expect(ended.get()! == nil)
    }

    @Test func timersAndCrossLoopPostsRunOnTheirLoop() async throws {
        let loop = EventLoop()
        defer { loop.stop() }
        let fired = Box<[String]>([])
        loop.execute {
            precondition(loop.inEventLoop)
            let cancelled = loop.schedule(afterMilliseconds: 30) { fired.update { $0.append("cancelled") } }
            loop.schedule(afterMilliseconds: 20) { fired.update { $0.append("b") } }
            loop.schedule(afterMilliseconds: 1) { fired.update { $0.append("a") } }
            cancelled.cancel()
        }
        #expect(await eventually(within: 5) { fired.get().count == 2 })
        try await Task.sleep(for: .milliseconds(60))
        #expect(fired.get() == ["a", "b"])
    }

    @Test func aStoppedLoopRefusesWorkInsteadOfDroppingIt() async throws {
        let loop = EventLoop()
        let ran = Box<[Int]>([])
        // posted before the stop: runs even though the loop stops right behind it (a waiter on it must not hang)
        #expect(loop.execute { ran.update { $0.append(1) } })
        loop.stop()
        #expect(ran.get() == [1])
        // posted after: refused, so the caller knows to answer itself
        #expect(!loop.execute { ran.update { $0.append(2) } })
        #expect(ran.get() == [1])
    }

    @Test func gracefulShutdownLetsAnInFlightRequestFinish() async throws {
        // signals, not deadlines: the slow request's answer is held until the test has seen the shutdown begin (a
        // fixed delay raced the test's own scheduling on a loaded machine: the answer went out before the check)
        let arrived = AsyncStream<Void>.makeStream()
        let finished = AsyncStream<Void>.makeStream()
        let release = Box(false)
        let (server, port) = try startServer(threads: 1) { req, res in
            guard req.path == "/slow" else { return res.respond(status: 200, body: "quick") }
            arrived.continuation.yield()
            let bound = res.bound
            @Sendable func answerWhenReleased() {
                let res = bound.value
                if release.get() {
                    res.respond(status: 200, body: "finished")
                } else {
                    res.loop.schedule(afterMilliseconds: 5) { answerWhenReleased() }
                }
            }
            answerWhenReleased()
        }
        let result = Box<ProcessResult?>(nil)
        let t = Thread {
            result.set(try? curl(["http://127.0.0.1:\(port)/slow"]))
            finished.continuation.yield()
        }
        t.start()
        // in flight means the server has the request, not only the connection (accepted but unread, it is idle)
        var inFlight = arrived.stream.makeAsyncIterator()
        _ = await inFlight.next()
        #expect(server.openConnections == 1)
        let stopper = Thread { server.shutdown() }
        stopper.start()
        // the shutdown has begun once the listener refuses new connections; the slow request is still unanswered
        while (try? curl(["http://127.0.0.1:\(port)/"]))?.status == 0 {}
        #expect(result.get() == nil)
        release.set(true)
        var done = finished.stream.makeAsyncIterator()
        _ = await done.next()
        #expect(result.get()?.stdout == "finished")
        server.waitUntilStopped()
    }
}
