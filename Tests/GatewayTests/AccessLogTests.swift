import Foundation
import Metrics
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore
import Synchronization
import Simulator
import Logging

/// The access log's lines, parsed; empty until the file exists.
private func lines(_ path: String) -> [[String: Any]] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

private func tempPath(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("accesslog-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

@Suite("Access log: one JSON line per data-port request, written off the loop", .serialized)
struct AccessLogTests {
    @Test("a 200, a stream, a 4xx refusal and a client that leaves mid-stream: one line each, with their fields")
    func linesPerRequest() async throws {
        let path = tempPath("access.log")
        let h = try Harness(instances: 1, speedup: 1, configure: {
            $0.log.accessLog.enable = true
            $0.log.accessLog.path = path
        })
        try await h.refreshAll()

        let plain = try await h.chat(maxTokens: 4)
        #expect(plain.status == 200)
        #expect(await eventually(within: 10) { lines(path).count == 1 })
        let first = try #require(lines(path).first)
        #expect(first["route"] as? String == "/v1/chat/completions")
        #expect(first["method"] as? String == "POST")
        #expect(first["dialect"] as? String == "openai")
        #expect(first["status"] as? Int == 200)
        #expect(first["stream"] as? Bool == false)
        #expect(first["model"] as? String == "llama3-8b")
        #expect(first["bytes_out"] as? Int == plain.body.count)
        #expect(first["retries"] as? Int == 0)
        #expect(first["client_disconnect"] as? Bool == false)
        #expect((first["request_id"] as? String).flatMap(UInt64.init) != nil)
        let instance = try #require(first["instance"] as? [String: Any])
        #expect(instance["id"] as? Int == 0)
        #expect(instance["address"] as? String == "\(h.sim.ports[0].host):\(h.sim.ports[0].data)")
        #expect(first["prefill"] is NSNull && first["decode"] is NSNull)
        let ttft = try #require(first["ttft_ms"] as? Double)
        let duration = try #require(first["duration_ms"] as? Double)
        #expect(ttft > 0 && ttft <= duration)
        #expect((first["trace_id"] as? String)?.count == 32)
        #expect((first["time"] as? String)?.hasSuffix("Z") == true)

        // the client's own traceparent: its trace id is the one logged
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let streamed = try await h.post(port: h.coordinator.dataPort, "/v1/chat/completions",
                                        #"{"model":"llama3-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true}"#,
                                        headers: [("content-type", "application/json"), ("traceparent", "00-\(traceID)-00f067aa0ba902b7-01")])
        #expect(streamed.status == 200)
        #expect(await eventually(within: 10) { lines(path).count == 2 })
        let second = lines(path)[1]
        #expect(second["stream"] as? Bool == true)
        #expect(second["status"] as? Int == 200)
        #expect(second["bytes_out"] as? Int == streamed.body.count)
        #expect(second["trace_id"] as? String == traceID)
        #expect(second["request_id"] as? String != first["request_id"] as? String)

        let refused = try await h.post(port: h.coordinator.dataPort, "/v1/chat/completions", #"{"model":"m"}"#)
        #expect(refused.status == 400)
        #expect(await eventually(within: 10) { lines(path).count == 3 })
        let third = lines(path)[2]
        #expect(third["status"] as? Int == 400)
        #expect(third["request_id"] is NSNull, "refused before it got an id")
        #expect(third["instance"] is NSNull)
        #expect(third["ttft_ms"] is NSNull)
        #expect(third["bytes_out"] as? Int == refused.body.count)
        #expect((third["error"] as? String)?.contains("Missing both 'prompt' or 'messages'") == true)

        // a long stream (speedup 1) the client leaves after its first bytes
        let c = try RawConnection(port: h.coordinator.dataPort)
        let body = #"{"model":"llama3-8b","messages":[{"role":"user","content":"stay"}],"max_tokens":400,"stream":true}"#
        c.send("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)")
        var buf = [UInt8](repeating: 0, count: 4096)
        var got = 0
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !String(decoding: buf[..<got], as: UTF8.self).contains("data:") {
            let n = recv(c.fd, &buf[got], buf.count - got, 0)
            if n <= 0 { break }
            got += n
        }
        #expect(String(decoding: buf[..<got], as: UTF8.self).contains("data:"), "the stream started")
        c.close()
        #expect(await eventually(within: 10) { lines(path).count == 4 })
        let fourth = lines(path)[3]
        #expect(fourth["client_disconnect"] as? Bool == true)
        #expect(fourth["status"] as? Int == 200, "the head went out before the client left")
        #expect(fourth["ttft_ms"] as? Double != nil)
        #expect(h.coordinator.inFlightCount == 0)
        // nothing more: exactly one line per request
        try await Task.sleep(for: .milliseconds(200))
        #expect(lines(path).count == 4)
    }

    @Test("a full queue drops lines and counts them; submitting never waits for the writer")
    func fullQueueDrops() throws {
        // a FIFO nobody reads: the writer blocks in write(2) once the pipe is full, as on a stalled disk
        let path = tempPath("fifo")
        #expect(mkfifo(path, 0o600) == 0)
        let reader = open(path, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }
        let sink = MetricsSink.isolated()
        let dropped = Counter(label: "mindie_coordinator_access_log_dropped_total", factory: sink.factory)
        let log = try AccessLog(path: path, capacity: 16, dropped: dropped)
        let record = AccessRecord(requestID: 1, method: "POST", route: "/v1/chat/completions", dialect: .openAI, status: 200,
                                  error: String(repeating: "x", count: 1000))
        var accepted = 0
        for _ in 0..<2000 where log.submit(record) { accepted += 1 }
        #expect(accepted < 2000)
        let text = String(decoding: sink.render(), as: UTF8.self)
        #expect(text.contains("mindie_coordinator_access_log_dropped_total \(2000 - accepted)"))
        // drain the pipe so the writer can finish and close
        let drainer = Thread {
            var b = [UInt8](repeating: 0, count: 65536)
            let flags = fcntl(reader, F_GETFL)
            _ = fcntl(reader, F_SETFL, flags & ~O_NONBLOCK)
            while read(reader, &b, b.count) > 0 {}
        }
        drainer.start()
        log.close()
        #expect(log.written.load(ordering: .relaxed) == accepted)
    }

    @Test("lines are gathered: a full batch is written at once, close() cuts the linger short and writes the rest")
    func batching() async throws {
        let path = tempPath("access.log")
        let dropped = Counter(label: "mindie_coordinator_access_log_dropped_total", factory: MetricsSink.isolated().factory)
        // a linger no test waits out: whatever is written below was written by the batch size or by close()
        let log = try AccessLog(path: path, capacity: 64, dropped: dropped, batchLines: 8, linger: .seconds(3600))
        let record = AccessRecord(requestID: 1, method: "POST", route: "/v1/chat/completions", dialect: .openAI, status: 200)
        for _ in 0..<8 { #expect(log.submit(record)) }
        #expect(await eventually(within: 10) { log.written.load(ordering: .relaxed) == 8 })
        #expect(log.batches.load(ordering: .relaxed) == 1, "eight lines, one write")
        #expect(lines(path).count == 8)

        for _ in 0..<3 { #expect(log.submit(record)) }
        let closed = DispatchSemaphore(value: 0)
        let closer = Thread {
            log.close()
            closed.signal()
        }
        closer.start()
        #expect(await eventually(within: 30) { closed.wait(timeout: .now()) == .success }, "close() does not wait out the linger")
        #expect(log.written.load(ordering: .relaxed) == 11)
        #expect(log.batches.load(ordering: .relaxed) == 2)
        #expect(lines(path).count == 11)
        #expect(!log.submit(record), "a closed log takes nothing")
    }

    @Test("a rename (logrotate) or removal of the file is noticed: the writer reopens the path, no line is lost or doubled")
    func rotation() async throws {
        let path = tempPath("access.log")
        let dropped = Counter(label: "mindie_coordinator_access_log_dropped_total", factory: MetricsSink.isolated().factory)
        let log = try AccessLog(path: path, capacity: 1024, dropped: dropped)
        defer { log.close() }
        var submitted = 0
        func submit() {
            submitted += 1
            #expect(log.submit(AccessRecord(requestID: UInt64(submitted), method: "POST", route: "/v1/completions", status: 200)))
        }
        submit()
        #expect(await eventually(within: 10) { lines(path).count == 1 })

        // Rotation is looked for at most once a second, so keep logging (as a live Coordinator would) until the
        // writer has reopened the path; a generous deadline, no timing assumed.
        let rotated = path + ".1"
        #expect(rename(path, rotated) == 0)
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: path), Date() < deadline {
            submit()
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(FileManager.default.fileExists(atPath: path), "the renamed file was noticed and the path reopened")
        #expect(await eventually(within: 10) { log.written.load(ordering: .relaxed) == submitted })
        let old = lines(rotated), new = lines(path)
        #expect(old.count + new.count == submitted, "every line once, in one file or the other")
        let ids = (old + new).compactMap { ($0["request_id"] as? String).flatMap(Int.init) }
        #expect(ids == Array(1...submitted), "in order, the old file's lines first")

        // removed outright: the path is created again
        #expect(unlink(path) == 0)
        let again = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: path), Date() < again {
            submit()
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(FileManager.default.fileExists(atPath: path), "the removed file was noticed and the path created again")
        #expect(await eventually(within: 10) { log.written.load(ordering: .relaxed) == submitted })
        let last = try #require(lines(path).last)
        #expect(last["request_id"] as? String == String(submitted))
    }

    @Test("log_info.access_log: bad values are refused with the key named")
    func config() throws {
        func parse(_ accessLog: String) throws -> CoordinatorConfig {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            var text = try String(contentsOf: root.appendingPathComponent("conf/ms_coordinator.json"), encoding: .utf8)
            let anchor = "\"log_info\""
            let range = try #require(text.range(of: anchor))
            let brace = try #require(text[range.upperBound...].firstIndex(of: "{"))
            text.insert(contentsOf: "\"access_log\": \(accessLog), ", at: text.index(after: brace))
            return try CoordinatorConfig.parse(Array(text.utf8), environment: [:])
        }
        #expect(try parse(#"{"enable": false}"#).log.accessLog.enable == false)
        let on = try parse(#"{"enable": true, "path": "/var/log/ms/access.log", "queue_size": 100}"#)
        #expect(on.log.accessLog == { var a = CoordinatorConfig.Log.AccessLog(); a.enable = true; a.path = "/var/log/ms/access.log"; a.queueSize = 100; return a }())
        for (bad, key) in [(#"{"enable": "yes"}"#, "log_info.access_log.enable"), (#"{"enable": true}"#, "log_info.access_log.path"),
                           (#"{"enable": true, "path": ""}"#, "log_info.access_log.path"),
                           (#"{"enable": true, "path": "/tmp/"}"#, "log_info.access_log.path"),
                           (#"{"enable": true, "path": "/tmp/a", "queue_size": 1}"#, "log_info.access_log.queue_size"),
                           (#""on""#, "log_info.access_log")] {
            #expect(throws: ConfigError.self) { try parse(bad) }
            do { _ = try parse(bad) } catch let e as ConfigError { #expect(e.key == key, "\(bad)") }
        }
    }

    @Test("an access log path that cannot be opened stops the start with the key and path named")
    func unopenable() throws {
        var c = CoordinatorConfig()
        c.http.predictPort = 0; c.http.managePort = 0; c.http.statusPort = 0; c.http.externalPort = 0
        c.scheduler.deployMode = .singleNode
        for k in CoordinatorConfig.tlsPrefixes { c.tls[k]?.enabled = false }
        c.log.accessLog.enable = true
        c.log.accessLog.path = "/nonexistent-dir-\(UUID().uuidString)/access.log"
        let coordinator = try Coordinator(config: c, logger: .init(label: "test"), metrics: .isolated())
        do {
            try coordinator.start(threads: 1)
            Issue.record("started")
            coordinator.shutdown()
        } catch {
            #expect(error.description.contains("log_info.access_log.path"))
            #expect(error.description.contains("nonexistent-dir"))
        }
    }

    @Test("JSON strings are escaped; the trace id comes from a valid traceparent only")
    func formatting() throws {
        var out: [UInt8] = []
        AccessLog.format(AccessRecord(requestID: nil, method: "POST", route: "/a\"b\\c\n\u{01}", dialect: nil, status: 404,
                                      traceparent: "garbage"), into: &out)
        #expect(out.last == 10)
        let j = try #require(try JSONSerialization.jsonObject(with: Data(out.dropLast())) as? [String: Any])
        #expect(j["route"] as? String == "/a\"b\\c\n\u{01}")
        #expect(j["trace_id"] is NSNull)
        #expect(j["tokens_out"] is NSNull)
        #expect(AccessLog.traceID("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01") == "4bf92f3577b34da6a3ce929d0e0e4736")
    }

    @Test("numbers and the time are written exactly: zero padding, three decimals, null for what is unknown")
    func exactLine() {
        var out: [UInt8] = []
        // 2026-01-02T03:04:05.006Z
        let wall: Int64 = 1_767_323_045 * 1_000_000_000 + 6_400_000
        AccessLog.format(AccessRecord(requestID: 18_446_744_073_709_551_615, method: "GET", route: "/v1/models", dialect: .openAI,
                                      stream: true, model: "m", status: 503, arrivalNanos: 1_000, firstByteNanos: 6_000,
                                      endNanos: 1_234_568_000, wallNanos: wall, tokensOut: 0, bytesOut: 10, retries: 2,
                                      clientDisconnect: true, traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                      error: "tab\there"), into: &out)
        #expect(String(decoding: out, as: UTF8.self) == """
            {"time":"2026-01-02T03:04:05.006Z","request_id":"18446744073709551615","method":"GET","route":"/v1/models",\
            "dialect":"openai","stream":true,"model":"m","instance":null,"prefill":null,"decode":null,"status":503,\
            "ttft_ms":0.005,"duration_ms":1234.567,"tokens_out":0,"bytes_out":10,"retries":2,"client_disconnect":true,\
            "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","error":"tab\\there"}

            """)
    }
}
