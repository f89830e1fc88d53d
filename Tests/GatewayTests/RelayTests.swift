import Foundation
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore

/// The single-node relay seen from a client: what crosses the proxy, what a broken instance turns into, and what a
/// slow client costs the Coordinator.
@Suite("Coordinator relay", .serialized)
struct RelayTests {
    @Test("the instance's Connection: close does not end the client's keep-alive connection (pipelined requests all answered)")
    func instanceConnectionCloseStaysOnItsHop() async throws {
        let h = try Harness(instances: 1) // mindie_sim answers non-stream requests with Connection: close, as MindIE Server
        try await h.refreshAll()
        let c = try RawClient(port: h.coordinator.dataPort)
        defer { c.close() }
        let body = #"{"model":"llama3-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#
        let req = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
        c.send(req + req + req)
        let r = c.read(within: 20) { String(decoding: $0, as: UTF8.self).components(separatedBy: "\"chat.completion\"").count == 4 }
        let text = String(decoding: r.bytes, as: UTF8.self)
        #expect(text.components(separatedBy: "HTTP/1.1 200").count == 4, "\(text)")
        #expect(!text.lowercased().contains("connection: close"))
        #expect(!r.closed)
    }

    @Test("a broken instance reply (garbage, a body shorter than its Content-Length, a 200 kB head) is a 502 in the caller's dialect")
    func brokenRepliesAre502sInDialect() async throws {
        let h = try Harness(instances: 1)
        let replies = [
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"id\":\"cut",
            "HTTP/1.1 200 OK\r\nx-big: " + String(repeating: "a", count: 200_000) + "\r\ncontent-length: 2\r\n\r\n{}",
        ]
        for (k, reply) in replies.enumerated() {
            let up = ScriptedUpstream { fd, _ in sendAll(fd, reply) }
            defer { up.stop() }
            try await h.refresh([h.instanceJSON(0, id: 10 + k, port: up.port)], ids: [10 + k])
            let chat = try await h.chat()
            #expect(chat.status == 502, "\(k): \(chat.text)")
            let openAI = try JSONSerialization.jsonObject(with: Data(chat.body)) as? [String: Any]
            let error = openAI?["error"] as? [String: Any]
            #expect(error?["type"] as? String == "server_error", "\(k): \(chat.text)")
            #expect(error?["code"] as? Int == 502, "\(k): \(chat.text)")
            #expect((error?["message"] as? String)?.hasPrefix("upstream failed after 1 attempt") == true, "\(k): \(chat.text)")
            #expect(!chat.text.contains("cut") && !chat.text.contains("aaaa"))
            let tgi = try await h.post(port: h.coordinator.dataPort, "/generate", #"{"inputs":"hi","parameters":{"max_new_tokens":2}}"#)
            #expect(tgi.status == 502)
            let tgiBody = try JSONSerialization.jsonObject(with: Data(tgi.body)) as? [String: Any]
            #expect(tgiBody?["error_type"] as? String == "generation", "\(k): \(tgi.text)")
            #expect(tgiBody?["error"] is String)
        }
    }

    @Test("http_config.relay_buffer_bytes is optional (1 MiB), bounded, and named in the error")
    func relayBufferBytesKey() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("conf/ms_coordinator.json"), encoding: .utf8)
        #expect(try CoordinatorConfig.parse(Array(text.utf8)).http.relayBufferBytes == 1 << 20)
        func with(_ v: String) -> String {
            text.replacingOccurrences(of: "\"http_config\": {", with: "\"http_config\": {\n        \"relay_buffer_bytes\": \(v),")
        }
        #expect(with("1").contains("relay_buffer_bytes"))
        #expect(try CoordinatorConfig.parse(Array(with("262144").utf8)).http.relayBufferBytes == 262144)
        #expect(throws: ConfigError.self) { try CoordinatorConfig.parse(Array(with("1").utf8)) }
        do {
            _ = try CoordinatorConfig.parse(Array(with("\"big\"").utf8))
            Issue.record("accepted a string")
        } catch {
            #expect("\(error)".contains("relay_buffer_bytes"))
        }
    }
}
