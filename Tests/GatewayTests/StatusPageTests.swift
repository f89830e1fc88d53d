import Foundation
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore

@Suite("Status page: windows, error ring, /v1/cluster")
struct StatusPageTests {
    static let second: UInt64 = 1_000_000_000

    @Test("latency percentiles are within one bucket (±10 %) and the window forgets after a minute")
    func latencyWindow() {
        let w = LatencyWindow()
        let now = 1_000 * Self.second
        for ms in 1...100 { w.record(nanos: UInt64(ms) * 1_000_000, now: now) }
        let s = w.summary(now: now)
        #expect(s.count == 100)
        for (got, want) in [(s.p50, 50.0), (s.p90, 90.0), (s.p99, 99.0)] {
            let v = try! #require(got)
            #expect(abs(v - want) / want < 0.1, "\(v) vs \(want)")
        }
        // still there 40 s later, gone once all four 15 s slots have turned over
        #expect(w.summary(now: now + 40 * Self.second).count == 100)
        #expect(w.summary(now: now + 61 * Self.second).count == 0)
        #expect(w.summary(now: now + 61 * Self.second).p50 == nil)
        // a reused slot starts from zero
        w.record(nanos: 5_000_000, now: now + 60 * Self.second)
        #expect(w.summary(now: now + 60 * Self.second).count == 1)
        // out-of-range values land in the end buckets
        w.record(nanos: 1, now: now + 60 * Self.second)
        w.record(nanos: UInt64.max / 2, now: now + 60 * Self.second)
        #expect(w.summary(now: now + 60 * Self.second).count == 3)
    }

    @Test("the rate counts the last 10 whole seconds and loses no increment under contention")
    func rateWindow() async {
        let r = RateWindow()
        let t = 500 * Self.second + Self.second / 2
        await withTaskGroup(of: Void.self) { g in
            for _ in 0..<4 { g.addTask { for _ in 0..<25_000 { r.add(now: t) } } }
        }
        // the current second is still filling: not counted yet
        #expect(r.perSecond(now: t) == 0)
        #expect(r.perSecond(now: t + Self.second) == 10_000)
        #expect(r.perSecond(now: t + 10 * Self.second) == 10_000)
        #expect(r.perSecond(now: t + 11 * Self.second) == 0)
    }

    @Test("the error ring keeps the last 50, newest first, messages cut at a character boundary")
    func errorRing() async {
        let ring = ErrorRing(capacity: 50)
        #expect(ring.recent().isEmpty)
        for k in 0..<60 { ring.record(status: 400 + k % 100, message: "error \(k)", instance: k % 2 == 0 ? InstanceID(k) : nil) }
        let recent = ring.recent()
        #expect(recent.count == 50)
        #expect(recent.first?.message == "error 59" && recent.first?.status == 459 && recent.first?.instance == nil)
        #expect(recent.last?.message == "error 10" && recent.last?.instance == 10)
        let long = String(repeating: "é", count: 200) // 2 bytes each
        ring.record(status: 500, message: long, instance: 7)
        let cut = ring.recent()[0]
        #expect(cut.message.utf8.count <= ErrorRing.maxMessageBytes && cut.message.allSatisfy { $0 == "é" } && !cut.message.isEmpty)
        #expect(cut.unixMilliseconds > 1_700_000_000_000)
        // writers on several threads: the ring stays readable and bounded
        await withTaskGroup(of: Void.self) { g in
            for w in 0..<4 { g.addTask { for k in 0..<2_000 { ring.record(status: 500, message: "w\(w) \(k)", instance: nil) } } }
            g.addTask { for _ in 0..<200 { #expect(ring.recent().count <= 50) } }
        }
        #expect(ring.recent().allSatisfy { $0.status == 500 && $0.message.hasPrefix("w") })
    }

    @Test("prefix-cache hit rate from an instance's metrics text")
    func prefixHitRate() {
        let text = """
        # HELP npu_prefix_cache_hit_rate NPU prefix cache block hit rate.
        # TYPE npu_prefix_cache_hit_rate gauge
        npu_prefix_cache_hit_rate{model_name="llama3-8b"} 0.25
        npu_prefix_cache_hit_rate_other 9
        """
        #expect(Coordinator.prefixHitRate(inMetrics: Array(text.utf8)) == 0.25)
        #expect(Coordinator.prefixHitRate(inMetrics: Array("npu_prefix_cache_hit_rate 0.5\nnpu_prefix_cache_hit_rate 1\n".utf8)) == 0.75)
        #expect(Coordinator.prefixHitRate(inMetrics: Array("other 1\n".utf8)) == nil)
    }

    @Test("/v1/cluster and the HTML page on the status and external ports; the data port keeps its own /")
    func clusterEndpoint() async throws {
        let h = try Harness(instances: 2)
        try await h.refreshAll()
        #expect(try await h.chat(stream: true).status == 200)
        #expect(try await h.post(port: h.coordinator.dataPort, "/v1/chat/completions", "{not json").status == 400)
        for port in [h.coordinator.statusPort, h.coordinator.externalPort] {
            let r = try await h.get(port: port, "/v1/cluster")
            #expect(r.status == 200)
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
            let instances = try #require(doc["instances"] as? [[String: Any]])
            #expect(instances.map { $0["id"] as? Int } == [0, 1])
            #expect(instances.allSatisfy { $0["role"] as? String == "mixed" && $0["state"] as? String == "up" && $0["circuit"] as? String == "closed" })
            let coordinator = try #require(doc["coordinator"] as? [String: Any])
            #expect((coordinator["ttft_ms"] as? [String: Any])?["count"] as? Int == 1)
            let errors = try #require(doc["recent_errors"] as? [[String: Any]])
            #expect(errors.first?["status"] as? Int == 400)
            #expect(doc["deploy_mode"] as? String == "single_node" && doc["ready"] as? Bool == true)

            let page = try await h.client.execute(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/",
                                                                    headers: [("accept", "text/html,application/xhtml+xml")]))
            #expect(page.status == 200)
            #expect(page.text.contains("<title>MindIE-MS cluster</title>") && page.text.contains("fetch(\"v1/cluster\""))
        }
        let notPage = try await h.client.execute(HTTPClientRequest(host: "127.0.0.1", port: h.coordinator.dataPort, path: "/",
                                                                   headers: [("accept", "text/html")]))
        #expect(!notPage.text.contains("MindIE-MS cluster"))
        let refused = try await h.post(port: h.coordinator.statusPort, "/v1/cluster", "{}")
        #expect(refused.status == 405)
    }

    @Test("an instance the Controller removes is shown as gone, with why")
    func goneInstance() async throws {
        let h = try Harness(instances: 2)
        try await h.refreshAll()
        try await h.refresh([h.instanceJSON(1)], ids: [1])
        let r = try await h.get(port: h.coordinator.statusPort, "/v1/cluster")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
        let instances = try #require(doc["instances"] as? [[String: Any]])
        let gone = try #require(instances.first { $0["id"] as? Int == 0 })
        #expect(gone["state"] as? String == "gone" && (gone["reason"] as? String ?? "").contains("refresh"))
        #expect(instances.first { $0["id"] as? Int == 1 }?["state"] as? String == "up")
        // back again: no longer gone
        try await h.refreshAll()
        let again = try await h.get(port: h.coordinator.statusPort, "/v1/cluster")
        #expect(!again.text.contains("\"gone\""))
    }
}
