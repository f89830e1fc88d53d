import Foundation
import Synchronization
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore
@testable import Simulator

/// DECISIONS 10 in PD mode: a dead P, or a P that cannot reach its D, is retried elsewhere before any byte reached
/// the client (issue 13 item 3).
@Suite("Coordinator PD: failover before the first byte", .serialized)
struct PDFailoverTests {
    @Test("a P killed under load: no request fails while another P lives", arguments: [CoordinatorConfig.Algorithm.roundRobin, .loadBalance])
    func deadPrefill(_ algorithm: CoordinatorConfig.Algorithm) async throws {
        let h = try await PDHarness(prefills: 2, decodes: 1, algorithm: algorithm, maxRetry: 2)
        try await h.refreshAll()
        let done = Box(0)
        let killed = Box(false)
        // (started after the kill, status, body)
        let results = Box<[(Bool, Int, String)]>([])
        let total = 80
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<8 {
                group.addTask {
                    var i = w
                    while i < total {
                        let after = killed.get()
                        let r = try await h.chat("load \(i)", stream: i % 2 == 0, maxTokens: 4)
                        results.update { $0.append((after, r.status, r.text)) }
                        done.update { $0 += 1 }
                        i += 8
                    }
                }
            }
            group.addTask {
                _ = await eventually(within: 20) { done.get() >= 16 }
                // P0 drops every connection and stops listening, as after kill -9; the Controller has not noticed
                _ = try? await h.client.execute(HTTPClientRequest(method: "PUT", host: h.sim.ports[0].host, port: h.sim.ports[0].control!,
                                                                  path: "/sim/faults/kill", body: Array(#"{"type":"refuse"}"#.utf8),
                                                                  timeoutMilliseconds: 2000))
                killed.set(true)
            }
            try await group.waitForAll()
        }
        let all = results.get()
        #expect(all.count == total)
        #expect(all.contains { $0.0 }, "no request started after the kill")
        let failed = all.filter { $0.1 != 200 || ($0.2.hasPrefix("data:") && !$0.2.hasSuffix("data: [DONE]\n\n")) }
        #expect(failed.count == 0, "\(failed.count) failed, e.g. \(failed.first.map { "\($0.1) \($0.2)" } ?? "")")
        #expect(await eventually(within: 5) { h.coordinator.inFlightCount == 0 })
    }

    @Test("issue 13.4 in PD: a frozen P is steered around: its reply deadline retries elsewhere and opens its circuit")
    func frozenPrefill() async throws {
        // first-token and infer timeouts of 600 s: without a deadline on P's reply a request sent to the frozen P
        // would wait far longer than the test client does
        let h = try await PDHarness(prefills: 2, decodes: 1, maxRetry: 2, configure: { c in
            c.health.firstByteTimeoutMs = 300
            c.health.failureThreshold = 2
            c.health.openMs = 5000
            c.health.maxOpenMs = 10000
        })
        try await h.refreshAll()
        // frozen: P0 accepts connections (as a stopped process's kernel does) and never answers
        try await h.putFault(0, id: "frozen", #"{"type":"hang","params":{"mode":"data"}}"#)
        for i in 0..<6 {
            let r = try await h.chat("frozen p \(i)", stream: i % 2 == 0, maxTokens: 3)
            #expect(r.status == 200, "\(r.text)")
            if i % 2 == 0 { #expect(r.text.hasSuffix("data: [DONE]\n\n"), "\(r.text)") }
        }
        let info = try await h.client.execute(HTTPClientRequest(host: "127.0.0.1", port: h.coordinator.managementPort,
                                                                path: "/v1/coordinator_info"))
        let j = try JSONSerialization.jsonObject(with: Data(info.body)) as? [String: Any] ?? [:]
        let p0 = (j["schedule_info"] as? [[String: Any]] ?? []).first { ($0["id"] as? NSNumber)?.intValue == 0 }
        #expect(p0?["circuit"] as? String == "open", "\(info.text)")
        #expect(await eventually(within: 5) { h.coordinator.inFlightCount == 0 })
    }

    @Test("P could not reach its D: retried with another D; once retries are spent the client gets P's message in its own dialect")
    func prefillCannotReachDecode() async throws {
        let h = try await PDHarness(prefills: 1, decodes: 2, maxRetry: 2)
        try await h.refreshAll()
        try await h.putFault(0, id: "nod", #"{"type":"p_send_d_fail","params":{"why":"D gone"},"count":1}"#)
        let r = try await h.chat("pd", maxTokens: 4)
        #expect(r.status == 200, "\(r.text)")
        let s = try await h.chat("pd stream", stream: true, maxTokens: 4)
        #expect(s.status == 200 && s.text.hasSuffix("data: [DONE]\n\n"), "\(s.text)")
        // every send fails: each D is tried once (then no pair is left), then P's text in the OpenAI error shape
        // (not the server's TGI shape)
        try await h.putFault(0, id: "nod2", #"{"type":"p_send_d_fail","params":{"why":"D gone"}}"#)
        let before = try await h.simMetric(0, "request_received_total")
        let f = try await h.chat("pd fail", maxTokens: 4)
        #expect(f.status == 500)
        #expect(f.text == #"{"error":{"message":"[P Node] Send D request failed:D gone","type":"server_error","code":500}}"#, "\(f.text)")
        #expect(try await h.simMetric(0, "request_received_total") - before == 2)
        #expect(await eventually(within: 5) { h.coordinator.inFlightCount == 0 })
    }
}

/// What a PD client sees equals what a single node shows (issue 13 item 5).
@Suite("Coordinator PD: streams look like single node", .serialized)
struct PDStreamShapeTests {
    /// ids and timestamps differ between runs; everything else must not.
    static func normalised(_ text: String) -> String {
        var t = text.replacingOccurrences(of: #""id":"[^"]*""#, with: #""id":"X""#, options: .regularExpression)
        t = t.replacingOccurrences(of: #""created":[0-9]+"#, with: #""created":0"#, options: .regularExpression)
        return t
    }

    static func roleOnlyChunks(_ text: String) -> Int {
        sseFrames(text).filter { frame in
            guard frame.hasPrefix("data: {"), let j = try? JSONSerialization.jsonObject(with: Data(frame.dropFirst(6).utf8)) as? [String: Any],
                  let delta = (j["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any] else { return false }
            return delta["role"] != nil && (delta["content"] as? String ?? "") == ""
        }.count
    }

    @Test("a PD OpenAI chat stream equals the single-node stream of the same request: exactly one role chunk", arguments: [2, 6])
    func chatStreamLikeSingleNode(maxTokens: Int) async throws {
        let h = try await PDHarness()
        try await h.refreshAll()
        let pd = try await h.chat("compare me", stream: true, maxTokens: maxTokens)
        #expect(pd.status == 200)
        var ic = InstanceConfiguration()
        ic.ipAddress = "127.0.0.9"
        ic.managementIpAddress = ic.ipAddress
        ic.port = 0; ic.managementPort = 0; ic.metricsPort = 0; ic.interCommPort = 0; ic.controlPort = 0
        ic.modelName = "llama3-8b"
        ic.engine = EngineConfiguration(profile: .tiny, speedup: 50, seed: 1)
        let config = ic
        let single = try StableThread.run {
            let s = try SimulatorServer(configuration: .init(instances: [config]))
            try s.start()
            return s
        }
        defer { single.shutdown() }
        let direct = try await h.post(host: single.ports[0].host, port: single.ports[0].data, "/v1/chat/completions",
                                      h.chatBody("compare me", stream: true, maxTokens: maxTokens))
        #expect(direct.status == 200)
        #expect(Self.roleOnlyChunks(direct.text) == 1)
        #expect(Self.roleOnlyChunks(pd.text) == 1, "\(pd.text)")
        #expect(Self.normalised(pd.text) == Self.normalised(direct.text))
    }
}

@Suite("DIGS: a retry kept off the instances that failed it")
struct DIGSExclusionTests {
    let snapshot = InstanceSnapshot([
        InstanceInfo(id: 0, role: .prefill, groupID: 0, label: 2, totalSlots: 10, totalBlocks: 1024),
        InstanceInfo(id: 1, role: .prefill, groupID: 0, label: 2, totalSlots: 10, totalBlocks: 1024),
        InstanceInfo(id: 10, role: .decode, groupID: 0, label: 3, totalSlots: 10, totalBlocks: 1024, peers: [0, 1]),
        InstanceInfo(id: 11, role: .decode, groupID: 0, label: 3, totalSlots: 10, totalBlocks: 1024, peers: [0, 1]),
    ])
    let features = RequestFeatures(dialect: .openAI, prompt: PromptFeatures(renderedPrompt: [], size: .bytes(100)))

    @Test("an excluded P or D is never chosen, though it is the least booked")
    func excluded() {
        var s = DIGSScheduler(configuration: DIGSScheduler.Configuration())
        s.enqueue(1, features: features, excluding: [0])
        s.enqueue(2, features: features, excluding: [10])
        let placed = s.schedule(snapshot: snapshot)
        #expect(placed.count == 2)
        #expect(placed[0].1 == .pair(prefill: 1, decode: 10))
        #expect(placed[1].1 == .pair(prefill: 0, decode: 11))
    }

    @Test("a request excluded from every P waits without holding up the queue behind it")
    func noHeadOfLineBlock() {
        var s = DIGSScheduler(configuration: DIGSScheduler.Configuration())
        s.enqueue(1, features: features, excluding: [0, 1])
        s.enqueue(2, features: features)
        let placed = s.schedule(snapshot: snapshot)
        #expect(placed.map(\.0) == [2])
        #expect(s.queuedIDs == [1])
    }
}

/// A client that sends one request and never reads (a small receive buffer so the kernel holds little of it).
final class NonReadingClient {
    let fd: Int32

    init(port: Int, request: String) throws {
        fd = try loopbackConnect(port: port, receiveBuffer: 4096)
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
    }

    deinit { close(fd) }
}

/// Issue 12.3 (PD part): one slow client must not stall the other streams of a shared `/dresult` link, nor make the
/// Coordinator hold its whole stream.
@Suite("Coordinator PD: a slow client on a shared /dresult link", .serialized)
struct PDBackPressureTests {
    @Test("a non-reading client's stream is failed once over the bound too long and its D work stopped; a normal stream through the same D completes")
    func slowClient() async throws {
        let h = try await PDHarness(prefills: 1, decodes: 1, configureSim: { c, _ in
            // long streams, quickly
            c.engine.profile.maxIterTimes = 100_000
            c.engine.profile.maxSeqLen = 200_000
            c.engine.profile.totalBlocks = 20_000
            c.engine.profile.delta2 = 0
        }, configure: { c in
            // D decoding flat out starves the 2 cores this runs on; P's reply may then come after the default
            // first-byte deadline, which is not what this test is about
            c.health.firstByteTimeoutMs = 120_000
        })
        h.coordinator.clientBufferBytes = 64 << 10
        h.coordinator.slowClientTimeoutMilliseconds = 500
        try await h.refreshAll()
        // ~170 bytes a token: far more than the kernel's socket buffers absorb (~3 MB on loopback) plus the bound, and
        // D still decoding when the Coordinator drops the stream even if the loops run behind under load
        let maxTokens = 100_000
        let body = h.chatBody("slow reader", stream: true, maxTokens: maxTokens)
        let slow = try NonReadingClient(port: h.coordinator.dataPort, request:
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)")
        let normal = StreamRecorder(h.client, port: h.coordinator.dataPort, path: "/v1/chat/completions",
                                    body: h.chatBody("normal reader", stream: true, maxTokens: 200))
        // a guard against a hang, not a speed check: D decoding flat out for the slow client starves a loaded machine
        #expect(await eventually(within: 60) { normal.isEnded })
        #expect(normal.text.hasSuffix("data: [DONE]\n\n"))
        // the Coordinator drops the slow stream (it would otherwise end normally, with no stopInfer, once D is done) and
        // tells D to stop; whether D is still decoding then depends on how far the loops lag D under load
        #expect(await eventually(within: 30) { h.coordinator.inFlightCount == 0 })
        #expect(await eventually(within: 20) { h.stopInfers().contains { $0.1 == 1 } }, "\(h.stopInfers())")
        #expect(await eventuallyAsync(within: 5) { await h.sim.withInstance(1) { $0.engine.runningCount } == 0 })
        withExtendedLifetime(slow) {}
    }
}
