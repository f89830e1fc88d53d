import Foundation
import Logging
import Synchronization
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore
@testable import Simulator

/// A PD Coordinator in front of in-process `mindie_sim` instances: the first `prefills` are P, the rest D, each
/// on its own 127.0.0.x with its role set and linked through the management API.
final class PDHarness: @unchecked Sendable {
    let sim: SimulatorServer
    let coordinator: Coordinator
    let client = HTTPClient()
    let prefills: Int
    let decodes: Int

    init(prefills: Int = 1, decodes: Int = 1, mode: CoordinatorConfig.DeployMode = .pdDisaggregationSingleContainer,
         algorithm: CoordinatorConfig.Algorithm = .roundRobin, maxRetry: Int = 2, firstTokenTimeout: Int = 600,
         inferTimeout: Int = 600, singleNodeMaxRequests: Int = 1000, speedup: Double = 50,
         configureSim: (inout InstanceConfiguration, Int) -> Void = { _, _ in }) async throws {
        self.prefills = prefills
        self.decodes = decodes
        sim = try SimulatorServer.loopback(count: prefills + decodes, dmi: true, speedup: speedup) { c, k in
            c.linkDelay = 20
            c.roleCheckInterval = 50
            configureSim(&c, k)
        }
        var c = CoordinatorConfig()
        c.http.predictPort = 0
        c.http.managePort = 0
        c.http.statusPort = 0
        c.http.externalPort = 0
        c.scheduler.deployMode = mode
        c.scheduler.schedulerType = algorithm == .loadBalance ? .digs : .default
        c.scheduler.algorithm = algorithm
        c.requestLimit.singleNodeMaxRequests = singleNodeMaxRequests
        c.exceptions.maxRetry = maxRetry
        c.exceptions.firstTokenTimeout = firstTokenTimeout
        c.exceptions.inferTimeout = inferTimeout
        for k in CoordinatorConfig.tlsPrefixes { c.tls[k]?.enabled = false }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        coordinator = try Coordinator(config: c, logger: logger, metrics: .isolated())
        try coordinator.start(threads: 2)
        try await setRoles()
    }

    deinit {
        let t0 = Date()
        coordinator.shutdown()
        print("T coordinator.shutdown \(Date().timeIntervalSince(t0))")
        // end the D's side of the /dresult streams first: a sim whose server shuts down under an open stream
        // keeps writing heartbeats into it (measured: heap corruption, then a crash in an unrelated loop)
        let done = DispatchSemaphore(value: 0)
        let sim = self.sim, n = prefills + decodes
        Task.detached {
            for k in 0..<n { await sim.withInstance(k) { $0.closeDResult(message: nil) } }
            done.signal()
        }
        done.wait()
        print("T closeDResult \(Date().timeIntervalSince(t0))")
        sim.shutdown()
        print("T sim.shutdown \(Date().timeIntervalSince(t0))")
    }

    func isPrefill(_ k: Int) -> Bool { k < prefills }

    func local(_ k: Int) -> String {
        let ip = sim.ports[k].host
        return #"{"server_ip":"\#(ip)","id":\#(k),"host_ip":"\#(ip)","device":[]}"#
    }

    func setRoles() async throws {
        let all = 0..<(prefills + decodes)
        for k in all {
            let peers = all.filter { isPrefill($0) != isPrefill(k) }.map(local).joined(separator: ",")
            let r = try await post(host: sim.ports[k].host, port: sim.ports[k].management,
                                   "/v1/role/\(isPrefill(k) ? "prefill" : "decode")", "{\"local\":\(local(k)),\"peers\":[\(peers)]}")
            precondition(r.status == 200, "role: \(r.status) \(r.text)")
        }
        for k in all {
            let ready = await eventuallyAsync(within: 10) { await self.sim.withInstance(k) { $0.role.status == .ready } }
            precondition(ready, "instance \(k) never became ready")
        }
    }

    /// A refresh entry; `role` "P", "D" (default: the sim's role), `peers` for a D (default: every P).
    func instanceJSON(_ k: Int, id: Int? = nil, role: String? = nil, port: Int? = nil, slots: Int = 200, groupID: Int = 0,
                      peers: [Int]? = nil) -> String {
        let p = sim.ports[k]
        let isP = role.map { $0 == "P" } ?? isPrefill(k)
        let peerList = isP ? [] : (peers ?? Array(0..<prefills))
        return """
        {"id":\(id ?? k),"ip":"\(p.host)","port":"\(port ?? p.data)","metric_port":"\(p.metrics)","inter_comm_port":"\(p.interComm)",\
        "model_name":"llama3-8b","static_info":{"group_id":\(groupID),"max_seq_len":4096,"max_output_len":1024,"total_slots_num":\(slots),\
        "total_block_num":1024,"block_size":128,"label":\(isP ? 2 : 3),"role":\(isP ? 80 : 68),"p_percentage":0,"virtual_id":\(k + 1)},\
        "dynamic_info":{"avail_slots_num":\(slots),"avail_block_num":1024,"peers":[\(peerList.map(String.init).joined(separator: ","))]}}
        """
    }

    @discardableResult
    func refresh(_ instances: [String], ids: [Int]) async throws -> HTTPClientResponse {
        let body = "{\"ids\":[\(ids.map(String.init).joined(separator: ","))],\"instances\":[\(instances.joined(separator: ","))]}"
        return try await post(port: coordinator.managementPort, "/v1/instances/refresh", body)
    }

    func refreshAll() async throws {
        let all = Array(0..<(prefills + decodes))
        let r = try await refresh(all.map { instanceJSON($0) }, ids: all)
        precondition(r.status == 200)
    }

    func post(host: String = "127.0.0.1", port: Int, _ path: String, _ body: String,
              headers: [(String, String)] = [("content-type", "application/json")]) async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(method: "POST", host: host, port: port, path: path, headers: headers,
                                                   body: Array(body.utf8), timeoutMilliseconds: 30_000))
    }

    func get(port: Int, _ path: String, host: String = "127.0.0.1") async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(host: host, port: port, path: path))
    }

    func chatBody(_ content: String = "hello", stream: Bool = false, maxTokens: Int = 8) -> String {
        "{\"model\":\"llama3-8b\",\"messages\":[{\"role\":\"user\",\"content\":\"\(content)\"}],\"max_tokens\":\(maxTokens),\"stream\":\(stream)}"
    }

    func chat(_ content: String = "hello", stream: Bool = false, maxTokens: Int = 8) async throws -> HTTPClientResponse {
        try await post(port: coordinator.dataPort, "/v1/chat/completions", chatBody(content, stream: stream, maxTokens: maxTokens))
    }

    func simMetric(_ k: Int, _ name: String) async throws -> Double {
        let r = try await get(port: sim.ports[k].control!, "/sim/state", host: sim.ports[k].host)
        let state = try JSONSerialization.jsonObject(with: Data(r.body)) as! [String: Any]
        let m = state["metrics"] as! [String: Any]
        return (m[name] as? NSNumber)?.doubleValue ?? 0
    }

    func putFault(_ k: Int, id: String, _ json: String) async throws {
        let r = try await client.execute(HTTPClientRequest(method: "PUT", host: sim.ports[k].host, port: sim.ports[k].control!,
                                                           path: "/sim/faults/\(id)", body: Array(json.utf8)))
        precondition(r.status == 200, "fault not accepted: \(r.text)")
    }

    func deleteFault(_ k: Int, id: String) async throws {
        _ = try await client.execute(HTTPClientRequest(method: "DELETE", host: sim.ports[k].host, port: sim.ports[k].control!,
                                                       path: "/sim/faults/\(id)"))
    }

    func tasks(_ ids: [Int]) async throws -> String {
        try await get(port: coordinator.managementPort, "/v1/instances/tasks?" + ids.map { "id=\($0)" }.joined(separator: "&")).text
    }

    func stopInfers() -> [(String, InstanceID, Int)] { coordinator.stopInferLog.withLock { $0 } }
}

func eventuallyAsync(within seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// The SSE `data:` frames of a stream body.
func sseFrames(_ text: String) -> [String] {
    text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
}

/// Streams a request on the harness client and records what has arrived so far.
final class StreamRecorder: @unchecked Sendable {
    let bytes = Mutex<[UInt8]>([])
    let ended = Mutex<HTTPClientError??>(nil)

    var text: String { String(decoding: bytes.withLock { $0 }, as: UTF8.self) }
    var isEnded: Bool { ended.withLock { $0 != nil } }

    init(_ client: HTTPClient, port: Int, path: String, body: String) {
        let loop = client.loop
        loop.execute { [self] in
            client.stream(HTTPClientRequest(method: "POST", host: "127.0.0.1", port: port, path: path,
                                            headers: [("content-type", "application/json")], body: Array(body.utf8),
                                            timeoutMilliseconds: 60_000),
                          on: loop, onHead: { _, _ in }, onBody: { b in self.bytes.withLock { $0 += b } },
                          onEnd: { e in self.ended.withLock { $0 = .some(e) } })
        }
    }
}

@Suite("Coordinator PD against mindie_sim", .serialized)
struct PDIntegrationTests {
    @Test("cases 5, 6: non-stream gets D's lastData as one JSON reply; stream is P's F then D's frames")
    func basicFlow() async throws {
        let h = try await PDHarness()
        try await h.refreshAll()
        #expect(try await h.get(port: h.coordinator.statusPort, "/v1/readiness").status == 200)
        let r = try await h.chat(maxTokens: 6)
        #expect(r.status == 200, "\(r.text)")
        #expect(r.headers["content-type"]?.hasPrefix("application/json") == true)
        #expect(r.headers["transfer-encoding"] == nil)
        #expect(r.text.contains("\"chat.completion\""))
        print("PD non-stream: \(r.text)")
        let s = try await h.chat(stream: true, maxTokens: 6)
        #expect(s.status == 200)
        #expect(s.headers["content-type"]?.hasPrefix("text/event-stream") == true)
        #expect(s.text.hasSuffix("data: [DONE]\n\n"))
        print("PD stream: \(s.text)")
        #expect(h.coordinator.inFlightCount == 0)
    }

    @Test("case 13: retry on /dresult → recompute under the same id with is-recompute; the first token is not shown twice")
    func recompute() async throws {
        let h = try await PDHarness()
        try await h.refreshAll()
        let plain = try await h.chat("same prompt", stream: true, maxTokens: 6)
        try await h.putFault(1, id: "retry", #"{"type":"dresult_retry","count":1}"#)
        let r = try await h.chat("same prompt", stream: true, maxTokens: 6)
        #expect(r.status == 200)
        print("plain: \(plain.text)")
        print("recomputed: \(r.text)")
        #expect(r.text.hasSuffix("data: [DONE]\n\n"))
    }
}

@Suite("PD harness probes", .serialized)
struct PDProbeTests {
    @Test func setupOnly() async throws {
        let h = try await PDHarness()
        _ = h
    }

    @Test func refreshOnly() async throws {
        let t0 = Date()
        let h = try await PDHarness()
        print("T harness \(Date().timeIntervalSince(t0))")
        try await h.refreshAll()
        print("T refresh \(Date().timeIntervalSince(t0))")
    }
}
