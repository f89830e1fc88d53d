import Foundation
import Logging
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore
import Simulator

/// A Coordinator on 127.0.0.1 (ports picked) in front of in-process `mindie_sim` instances.
final class Harness: @unchecked Sendable {
    let sim: SimulatorServer
    let coordinator: Coordinator
    let client: HTTPClient

    init(instances: Int, algorithm: CoordinatorConfig.Algorithm = .roundRobin, maxRequests: Int = 10000,
         maxRetry: Int = 5, firstTokenTimeout: Int = 600, inferTimeout: Int = 600, speedup: Double = 50,
         configureSim: (inout InstanceConfiguration, Int) -> Void = { _, _ in },
         configure: (inout CoordinatorConfig) -> Void = { _ in }) throws {
        var c = CoordinatorConfig()
        c.http.predictPort = 0
        c.http.managePort = 0
        c.http.statusPort = 0
        c.http.externalPort = 0
        c.scheduler.deployMode = .singleNode
        c.scheduler.schedulerType = .default
        c.scheduler.algorithm = algorithm
        c.scheduler.prefixBlockSize = 64
        c.requestLimit.maxRequests = maxRequests
        c.exceptions.maxRetry = maxRetry
        c.exceptions.firstTokenTimeout = firstTokenTimeout
        c.exceptions.inferTimeout = inferTimeout
        for k in CoordinatorConfig.tlsPrefixes { c.tls[k]?.enabled = false }
        configure(&c)
        let config = c
        var simConfigs: [InstanceConfiguration] = []
        for k in 0..<instances {
            // as SimulatorServer.loopback
            var ic = InstanceConfiguration()
            ic.ipAddress = "127.0.0.\(1 + k)"
            ic.managementIpAddress = ic.ipAddress
            ic.port = 0; ic.managementPort = 0; ic.metricsPort = 0; ic.interCommPort = 0; ic.controlPort = 0
            ic.modelName = "llama3-8b"
            ic.engine = EngineConfiguration(profile: .tiny, speedup: speedup, seed: 1 &+ UInt64(k))
            configureSim(&ic, k)
            simConfigs.append(ic)
        }
        let configs = simConfigs
        // loops are created on a thread that outlives them (see StableThread)
        (sim, coordinator, client) = try StableThread.run {
            let sim = try SimulatorServer(configuration: .init(instances: configs))
            try sim.start()
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let coordinator = try Coordinator(config: config, logger: logger, metrics: .isolated())
            try coordinator.start(threads: 2)
            return (sim, coordinator, HTTPClient())
        }
    }

    deinit {
        coordinator.shutdown()
        sim.shutdown()
    }

    func instanceJSON(_ k: Int, id: Int? = nil, port: Int? = nil, ip: String? = nil) -> String {
        let p = sim.ports[k]
        return """
        {"id":\(id ?? k),"ip":"\(ip ?? p.host)","port":"\(port ?? p.data)","metric_port":"\(p.metrics)","inter_comm_port":"\(p.interComm)",\
        "model_name":"llama3-8b","static_info":{"group_id":0,"max_seq_len":4096,"max_output_len":1024,"total_slots_num":200,\
        "total_block_num":1024,"block_size":128,"label":2,"role":85,"p_percentage":0,"virtual_id":\(k)},\
        "dynamic_info":{"avail_slots_num":200,"avail_block_num":1024,"peers":[]}}
        """
    }

    @discardableResult
    func refresh(_ instances: [String], ids: [Int]? = nil) async throws -> HTTPClientResponse {
        let idList = ids ?? Array(0..<instances.count)
        let body = "{\"ids\":[\(idList.map(String.init).joined(separator: ","))],\"instances\":[\(instances.joined(separator: ","))]}"
        return try await post(port: coordinator.managementPort, "/v1/instances/refresh", body)
    }

    func refreshAll() async throws {
        try await refresh((0..<sim.ports.count).map { instanceJSON($0) })
    }

    func post(host: String = "127.0.0.1", port: Int, _ path: String, _ body: String, headers: [(String, String)] = [("content-type", "application/json")]) async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(method: "POST", host: host, port: port, path: path, headers: headers,
                                                   body: Array(body.utf8), timeoutMilliseconds: 30_000))
    }

    func get(port: Int, _ path: String, host: String = "127.0.0.1") async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(host: host, port: port, path: path))
    }

    func chat(_ content: String = "hello", stream: Bool = false, maxTokens: Int = 8, extra: String = "") async throws -> HTTPClientResponse {
        try await post(port: coordinator.dataPort, "/v1/chat/completions",
                       "{\"model\":\"llama3-8b\",\"messages\":[{\"role\":\"user\",\"content\":\"\(content)\"}],\"max_tokens\":\(maxTokens),\"stream\":\(stream)\(extra)}")
    }

    /// The simulator's own counters for instance k.
    func simState(_ k: Int) async throws -> [String: Any] {
        let r = try await get(port: sim.ports[k].control!, "/sim/state", host: sim.ports[k].host)
        return try JSONSerialization.jsonObject(with: Data(r.body)) as! [String: Any]
    }

    func simMetric(_ k: Int, _ name: String) async throws -> Double {
        let m = try await simState(k)["metrics"] as! [String: Any]
        return (m[name] as? NSNumber)?.doubleValue ?? 0
    }

    func putFault(_ k: Int, id: String, _ json: String) async throws {
        let r = try await client.execute(HTTPClientRequest(method: "PUT", host: sim.ports[k].host, port: sim.ports[k].control!,
                                                           path: "/sim/faults/\(id)", body: Array(json.utf8)))
        precondition(r.status == 200, "fault not accepted: \(r.text)")
    }
}

@Suite("Coordinator single-node against mindie_sim", .serialized)
struct CoordinatorIntegrationTests {
    @Test("case 1: no instances → 503 not ready, in the caller's dialect")
    func notReadyWithoutInstances() async throws {
        let h = try Harness(instances: 1)
        let r = try await h.chat()
        #expect(r.status == 503)
        #expect(r.text == #"{"error":{"message":"MindIE-MS Coordinator is not ready","type":"server_error","code":503}}"#)
        let tgi = try await h.post(port: h.coordinator.dataPort, "/generate", #"{"inputs":"hi"}"#)
        #expect(tgi.status == 503)
        #expect(tgi.text.contains("\"error_type\""))
        #expect(try await h.get(port: h.coordinator.statusPort, "/v1/readiness").status == 503)
        #expect(try await h.get(port: h.coordinator.statusPort, "/v1/health").status == 200)
        #expect(try await h.get(port: h.coordinator.managementPort, "/v1/coordinator_info").status == 503)
    }

    @Test("chat, completions, TGI, vLLM, Triton and MindIE requests are relayed; SSE bytes unchanged")
    func relaysEveryDialect() async throws {
        let h = try Harness(instances: 1)
        try await h.refreshAll()
        let chat = try await h.chat()
        #expect(chat.status == 200)
        #expect(chat.text.contains("\"chat.completion\""))
        let stream = try await h.chat(stream: true)
        #expect(stream.status == 200)
        #expect(stream.headers["content-type"]?.hasPrefix("text/event-stream") == true)
        // every frame as the simulator framed it, ending with [DONE]
        #expect(stream.text.hasSuffix("data: [DONE]\n\n"))
        let direct = try await h.post(host: h.sim.ports[0].host, port: h.sim.ports[0].data, "/v1/chat/completions",
                                      #"{"model":"llama3-8b","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"stream":true}"#)
        #expect(direct.text.components(separatedBy: "\n\n").count == stream.text.components(separatedBy: "\n\n").count)
        for (path, body) in [("/v1/completions", #"{"model":"llama3-8b","prompt":"hi","max_tokens":4}"#),
                             ("/generate", #"{"inputs":"hi","parameters":{"max_new_tokens":4}}"#),
                             ("/generate", #"{"prompt":"hi","max_tokens":4}"#),
                             ("/", #"{"inputs":"hi","parameters":{"max_new_tokens":4}}"#),
                             ("/v2/models/llama3-8b/generate", #"{"text_input":"hi","parameters":{"max_new_tokens":4}}"#),
                             ("/infer", #"{"inputs":"hi","stream":false,"max_new_tokens":4}"#),
                             ("/v1/tokenizer", #"{"inputs":"hello world"}"#)] {
            let r = try await h.post(port: h.coordinator.dataPort, path, body)
            #expect(r.status == 200, "\(path): \(r.status) \(r.text)")
        }
    }

    @Test("cases 19, 20, 22, 23: malformed requests get a 4xx naming the problem")
    func refusals() async throws {
        let h = try Harness(instances: 1)
        try await h.refreshAll()
        let noPrompt = try await h.post(port: h.coordinator.dataPort, "/v1/chat/completions", #"{"model":"m"}"#)
        #expect(noPrompt.status == 400)
        #expect(noPrompt.text.contains("Missing both 'prompt' or 'messages'"))
        #expect(try await h.post(port: h.coordinator.dataPort, "/generate", #"{"prompt":123}"#).status == 400)
        #expect(try await h.post(port: h.coordinator.dataPort, "/infer", #"{"inputs":"a","input_id":[1]}"#).status == 400)
        #expect(try await h.post(port: h.coordinator.dataPort, "/nowhere", "{}").status == 404)
        #expect(try await h.get(port: h.coordinator.dataPort, "/v1/chat/completions").status == 405)
        #expect(try await h.post(port: h.coordinator.dataPort, "/v1/chat/completions", "not json").status == 400)
        #expect(try await h.get(port: h.coordinator.managementPort, "/v1/instances/offline").status == 405)
    }

    @Test("cases 24, 27, 28, 30: refresh validation, model readiness, tasks, coordinator_info")
    func managementAPI() async throws {
        let h = try Harness(instances: 2)
        #expect(try await h.post(port: h.coordinator.managementPort, "/v1/instances/refresh", #"{"instances":[]}"#).status == 400)
        #expect(try await h.post(port: h.coordinator.managementPort, "/v1/instances/refresh", "nope").status == 400)
        let r = try await h.refresh([h.instanceJSON(0), h.instanceJSON(1, ip: "0.0.0.0"), h.instanceJSON(1, id: 2, port: 70000)], ids: [0, 1, 2])
        #expect(r.status == 200)
        let tasks = try await h.get(port: h.coordinator.managementPort, "/v1/instances/tasks?id=0&id=1&id=2&id=99")
        #expect(tasks.text == #"{"tasks":[0,-1,-1,-1]}"#)
        #expect(try await h.get(port: h.coordinator.statusPort, "/v2/models/llama3-8b/ready").status == 200)
        #expect(try await h.get(port: h.coordinator.statusPort, "/v2/models/other/ready").status == 503)
        #expect(try await h.get(port: h.coordinator.statusPort, "/v1/readiness").status == 200)
        let info = try await h.get(port: h.coordinator.managementPort, "/v1/coordinator_info")
        #expect(info.status == 200)
        #expect(info.text.contains("\"schedule_info\":[{\"id\":0"))
        #expect(info.text.contains("\"request_length_info\""))
        let qt = try await h.post(port: h.coordinator.managementPort, "/v1/instances/query_tasks", #"{"p_id":0,"d_id":1,"role_change_type":0}"#)
        #expect(qt.text == #"{"is_end":true}"#)
        #expect(try await h.post(port: h.coordinator.managementPort, "/v1/instances/query_tasks", "{}").status == 400)
    }

    @Test("case 31: round robin over 3 instances, observed at the simulators")
    func roundRobinSpreadsEvenly() async throws {
        let h = try Harness(instances: 3)
        try await h.refreshAll()
        for i in 0..<6 { #expect(try await h.chat("request \(i)", maxTokens: 2).status == 200) }
        var counts: [Double] = []
        for k in 0..<3 { counts.append(try await h.simMetric(k, "request_received_total")) }
        #expect(counts == [2, 2, 2])
    }

    @Test("case 3: in-flight at max_requests → 429")
    func tooManyRequests() async throws {
        let h = try Harness(instances: 1, maxRequests: 1, speedup: 1)
        try await h.refreshAll()
        let slow = Task { try await h.chat(maxTokens: 400) }
        #expect(await eventually(within: 10) { h.coordinator.inFlightCount == 1 })
        let r = try await h.chat()
        #expect(r.status == 429)
        #expect(r.text.contains("Too many requests"))
        slow.cancel()
        _ = try? await slow.value
    }

    @Test("an instance that is down before the request is answered: served by another, client sees 200")
    func retriesOnAnotherInstance() async throws {
        let h = try Harness(instances: 2)
        // instance 0 points at a dead port; round robin's first pick is index 1 mod 2 = 0 after a full circle
        try await h.refresh([h.instanceJSON(0, port: deadPort()), h.instanceJSON(1)])
        for i in 0..<4 {
            let r = try await h.chat("retry \(i)", maxTokens: 2)
            #expect(r.status == 200)
        }
        #expect(try await h.simMetric(1, "request_received_total") == 4)
    }

    @Test("a 503 from an instance is retried on another before the first byte (DECISIONS 10)")
    func retriesA503() async throws {
        let h = try Harness(instances: 2)
        try await h.refreshAll()
        try await h.putFault(0, id: "busy", #"{"type":"http_error","params":{"status":"503"}}"#)
        try await h.putFault(1, id: "busy", #"{"type":"http_error","params":{"status":"503"}}"#)
        // both refuse: the client gets the last 503 after max_retry+1 attempts
        let r = try await h.chat()
        #expect(r.status == 503)
        _ = try await h.client.execute(HTTPClientRequest(method: "DELETE", host: h.sim.ports[1].host, port: h.sim.ports[1].control!, path: "/sim/faults/busy"))
        for _ in 0..<3 { #expect(try await h.chat(maxTokens: 2).status == 200) }
    }

    @Test("an instance that dies mid-stream: the client gets an in-stream error, not a clean end (DECISIONS 9)")
    func midStreamDeathIsAnError() async throws {
        let h = try Harness(instances: 1)
        try await h.refreshAll()
        try await h.putFault(0, id: "die", #"{"type":"die_mid_stream","params":{"after_tokens":"2","how":"close"}}"#)
        let r = try await h.chat(stream: true, maxTokens: 20)
        #expect(r.status == 200)
        #expect(!r.text.hasSuffix("data: [DONE]\n\n"))
        #expect(r.text.hasSuffix(#"data: {"error":{"message":"Read messages from instance failed","type":"server_error","code":500}}"# + "\n\n"))
    }

    @Test("a client that leaves during a long prefill: the simulator sees its connection closed")
    func clientDisconnectCancelsUpstream() async throws {
        let h = try Harness(instances: 1, speedup: 1)
        try await h.refreshAll()
        try await h.putFault(0, id: "slow", #"{"type":"slow_reply","params":{"ms":"30000"}}"#)
        let c = try RawConnection(port: h.coordinator.dataPort)
        let body = #"{"model":"llama3-8b","messages":[{"role":"user","content":"long prefill"}],"max_tokens":4}"#
        c.send("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(await eventually(within: 10) { h.coordinator.inFlightCount == 1 })
        let closedAt = Date()
        c.close()
        #expect(await eventually(within: 5) { h.coordinator.inFlightCount == 0 })
        print("coordinator released the request \(Int(Date().timeIntervalSince(closedAt) * 1000)) ms after the client left")
    }

    @Test("first-token timeout → 408 and stopInfer reaches the instance")
    func firstTokenTimeout() async throws {
        let h = try Harness(instances: 1, firstTokenTimeout: 1, speedup: 1)
        try await h.refreshAll()
        try await h.putFault(0, id: "slow", #"{"type":"slow_reply","params":{"ms":"5000"}}"#)
        let r = try await h.chat()
        #expect(r.status == 408)
        #expect(r.text.contains("Request first token timeout"))
    }

    @Test("a refresh that removes an instance ends its in-flight requests with a reply once drain_timeout is over (DECISIONS 11)")
    func removedInstanceFailsItsRequests() async throws {
        let h = try Harness(instances: 2, speedup: 1, configure: { $0.exceptions.drainTimeout = 1 })
        try await h.refreshAll()
        try await h.putFault(0, id: "slow", #"{"type":"slow_reply","params":{"ms":"30000"}}"#)
        try await h.putFault(1, id: "slow", #"{"type":"slow_reply","params":{"ms":"30000"}}"#)
        let pending = Task { try await h.chat() }
        #expect(await eventually(within: 10) { h.coordinator.inFlightCount == 1 })
        try await h.refresh([], ids: [])
        let r = try await pending.value
        #expect(r.status == 500)
        #expect(r.text.contains("Instance removed"))
    }

    @Test("prefix_affinity and cache_affinity beat round_robin on the simulators' prefix-cache hits")
    func cacheAwareRoutingRaisesHitRate() async throws {
        func hitRate(_ algorithm: CoordinatorConfig.Algorithm) async throws -> Double {
            let h = try Harness(instances: 4, algorithm: algorithm, speedup: 200)
            try await h.refreshAll()
            // 7 conversations (not a multiple of the 4 instances, so round robin does not pin them by accident), each
            // with its own document, growing over 4 turns: only an instance that served the conversation holds its prefix
            for turn in 0..<4 {
                for conv in 0..<7 {
                    let document = (0..<15).map { "conversation \(conv) fact \($0) is \(conv * 1000 + $0)." }.joined(separator: " ")
                    var msgs = [#"{"role":"system","content":"\#(document)"}"#]
                    for t in 0..<turn {
                        msgs.append(#"{"role":"user","content":"question \#(t) of conversation \#(conv)"}"#)
                        msgs.append(#"{"role":"assistant","content":"answer \#(t) for \#(conv)"}"#)
                    }
                    msgs.append(#"{"role":"user","content":"question \#(turn) of conversation \#(conv)"}"#)
                    let body = #"{"model":"llama3-8b","max_tokens":2,"messages":[\#(msgs.joined(separator: ","))]}"#
                    let r = try await h.post(port: h.coordinator.dataPort, "/v1/chat/completions", body)
                    #expect(r.status == 200, "\(r.text)")
                }
            }
            var hits = 0.0, all = 0.0
            for k in 0..<4 {
                hits += try await h.simMetric(k, "npu_radix_match_hit_num")
                all += try await h.simMetric(k, "all_radix_match_num")
            }
            return all > 0 ? hits / all : 0
        }
        let rr = try await hitRate(.roundRobin)
        let prefix = try await hitRate(.prefixAffinity)
        let cache = try await hitRate(.cacheAffinity)
        print("prefix-cache hit rate: round_robin \(rr), cache_affinity \(cache), prefix_affinity \(prefix)")
        #expect(prefix > rr + 0.1)
        #expect(cache > rr + 0.1)
    }

    @Test("/metrics aggregates the instances and adds the Coordinator's own; an unreachable instance is up=0")
    func metricsAggregation() async throws {
        let h = try Harness(instances: 2)
        try await h.refreshAll()
        _ = try await h.chat(maxTokens: 2)
        let m = try await h.get(port: h.coordinator.externalPort, "/metrics")
        #expect(m.status == 200)
        #expect(m.text.contains("request_received_total{model_name=\"llama3-8b\"} 1\n"))
        #expect(m.text.contains("mindie_coordinator_instance_up{instance=\"0\"} 1"))
        #expect(m.text.contains("mindie_coordinator_requests_total"))
        let h2 = try Harness(instances: 1)
        try await h2.refresh([h2.instanceJSON(0), h2.instanceJSON(0, id: 1, port: deadPort()).replacingOccurrences(of: "\"metric_port\":\"\(h2.sim.ports[0].metrics)\"", with: "\"metric_port\":\"\(deadPort())\"")], ids: [0, 1])
        let m2 = try await h2.get(port: h2.coordinator.externalPort, "/metrics")
        #expect(m2.status == 200)
        #expect(m2.text.contains("mindie_coordinator_instance_up{instance=\"1\"} 0"))
        #expect(m2.text.contains("mindie_coordinator_instance_up{instance=\"0\"} 1"))
    }
}
