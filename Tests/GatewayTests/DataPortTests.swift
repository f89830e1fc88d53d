import Foundation
import Logging
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore

/// A Coordinator in front of fake instances (plain CH2O servers that record what reaches them and answer
/// `/metrics` on the same port), for the data port's non-inference endpoints and pass-through routes.
final class DataPortHarness: @unchecked Sendable {
    struct Seen: Sendable {
        var method: String
        var path: String
        var body: String
        var reqID: String?
        var traceparent: String?
    }

    let coordinator: Coordinator
    let client: HTTPClient
    let backends: [(HTTPServer, Int)]
    let seen = Box<[(instance: Int, request: Seen)]>([])

    init(instances: Int = 2, modelNames: [String]? = nil, pd: Bool = false, configure: (inout CoordinatorConfig) -> Void = { _ in }) throws {
        var c = CoordinatorConfig()
        c.http.predictPort = 0
        c.http.managePort = 0
        c.http.statusPort = 0
        c.http.externalPort = 0
        c.scheduler.deployMode = pd ? .pdSeparate : .singleNode
        c.scheduler.schedulerType = .default
        c.scheduler.algorithm = .roundRobin
        for k in CoordinatorConfig.tlsPrefixes { c.tls[k]?.enabled = false }
        configure(&c)
        let config = c
        let seen = self.seen
        (coordinator, client, backends) = try StableThread.run {
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let coordinator = try Coordinator(config: config, logger: logger, metrics: .isolated())
            try coordinator.start(threads: 2)
            var backends: [(HTTPServer, Int)] = []
            for k in 0..<instances {
                backends.append(try startServer { req, res in
                    if req.path == "/metrics" {
                        return res.respond(status: 200, body: "# HELP request_received_total Count of received requests.\n"
                            + "# TYPE request_received_total counter\nrequest_received_total{model_name=\"m\"} 7\n")
                    }
                    // a D's /dresult link: held open (no frame ever comes)
                    if req.path == "/dresult" { return res.startStream(status: 200, headers: [("content-type", "text/event-stream")]) }
                    seen.update { $0.append((k, Seen(method: req.method, path: req.path, body: String(decoding: req.body, as: UTF8.self),
                                                     reqID: req.headers["req-id"], traceparent: req.headers["traceparent"]))) }
                    res.respond(status: 299, headers: [("content-type", "application/json"), ("x-backend", "\(k)")],
                                body: "{\"backend\":\(k),\"path\":\"\(req.path)\"}")
                })
            }
            return (coordinator, HTTPClient(), backends)
        }
        self.modelNames = modelNames ?? Array(repeating: "llama3-8b", count: instances)
        self.pd = pd
    }

    let modelNames: [String]
    let pd: Bool

    deinit {
        coordinator.shutdown()
        for (s, _) in backends { s.shutdown() }
    }

    func refresh(offline: Set<Int> = []) async throws {
        let instances = backends.indices.map { k in
            let port = backends[k].1
            // PD: instance 0 is the P, the others D's
            let role = !pd ? 85 : (k == 0 ? 80 : 68)
            return """
            {"id":\(k),"ip":"127.0.0.1","port":"\(port)","metric_port":"\(port)","inter_comm_port":"\(port)",\
            "model_name":"\(modelNames[k])","static_info":{"group_id":0,"max_seq_len":4096,"max_output_len":1024,"total_slots_num":200,\
            "total_block_num":1024,"block_size":128,"label":2,"role":\(role),"p_percentage":0,"virtual_id":\(k)},\
            "dynamic_info":{"avail_slots_num":200,"avail_block_num":1024,"peers":[]}}
            """
        }
        let ids = backends.indices.map(String.init).joined(separator: ",")
        let r = try await post(port: coordinator.managementPort, "/v1/instances/refresh",
                               "{\"ids\":[\(ids)],\"instances\":[\(instances.joined(separator: ","))]}")
        precondition(r.status == 200, "refresh refused: \(r.status) \(r.text)")
        if !offline.isEmpty {
            let r = try await post(port: coordinator.managementPort, "/v1/instances/offline",
                                   "{\"ids\":[\(offline.map(String.init).joined(separator: ","))]}")
            precondition(r.status == 200)
        }
    }

    func post(port: Int? = nil, _ path: String, _ body: String, method: String = "POST",
              headers: [(String, String)] = []) async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(method: method, host: "127.0.0.1", port: port ?? coordinator.dataPort, path: path,
                                                   headers: [("content-type", "application/json")] + headers, body: Array(body.utf8),
                                                   timeoutMilliseconds: 30_000))
    }

    func get(port: Int? = nil, _ path: String) async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(host: "127.0.0.1", port: port ?? coordinator.dataPort, path: path))
    }

    func json(_ r: HTTPClientResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any], "not a JSON object: \(r.text)")
    }
}

@Suite("Data port: models, health, info, metrics and pass-through routes", .serialized)
struct DataPortTests {
    @Test("GET /v1/models lists each registered model once, in OpenAI's format, without asking an instance")
    func modelsList() async throws {
        let h = try DataPortHarness(instances: 3, modelNames: ["llama3-8b", "qwen/Qwen2-7B", "llama3-8b"])
        let empty = try await h.get("/v1/models")
        #expect(empty.status == 200)
        #expect(empty.headers["content-type"] == "application/json")
        #expect(try h.json(empty)["data"] as? [Any] != nil && (try h.json(empty)["data"] as! [Any]).isEmpty)

        try await h.refresh()
        let r = try await h.get("/v1/models")
        #expect(r.status == 200)
        let j = try h.json(r)
        #expect(j["object"] as? String == "list")
        let data = try #require(j["data"] as? [[String: Any]])
        #expect(data.map { $0["id"] as? String } == ["llama3-8b", "qwen/Qwen2-7B"])
        for m in data {
            #expect(m["object"] as? String == "model")
            #expect(m["owned_by"] as? String == "mindie-ms")
            #expect((m["created"] as? Int ?? 0) > 1_700_000_000)
        }
        #expect(h.seen.get().isEmpty, "no request reached an instance")

        let one = try await h.get("/v1/models/llama3-8b")
        #expect(one.status == 200)
        #expect(try h.json(one)["id"] as? String == "llama3-8b")
        // ids with a slash, raw or percent-encoded
        #expect(try h.json(try await h.get("/v1/models/qwen/Qwen2-7B"))["id"] as? String == "qwen/Qwen2-7B")
        #expect(try h.json(try await h.get("/v1/models/qwen%2FQwen2-7B"))["id"] as? String == "qwen/Qwen2-7B")
        let missing = try await h.get("/v1/models/gpt-4")
        #expect(missing.status == 404)
        #expect(missing.text == #"{"error":{"message":"The model `gpt-4` does not exist","type":"invalid_request_error","code":404}}"#)

        let post = try await h.post("/v1/models", "{}")
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET")
        #expect(post.text.contains("\"type\":\"invalid_request_error\""))
        #expect(h.seen.get().isEmpty)
    }

    @Test("offline instances' models are not listed")
    func offlineModels() async throws {
        let h = try DataPortHarness(instances: 2, modelNames: ["a", "b"])
        try await h.refresh(offline: [1])
        let data = try #require(try h.json(try await h.get("/v1/models"))["data"] as? [[String: Any]])
        #expect(data.map { $0["id"] as? String } == ["a"])
        #expect(try await h.get("/v1/models/b").status == 404)
    }

    @Test("GET /health is 503 until the Coordinator can serve, then 200; /info answers TGI's fields")
    func healthAndInfo() async throws {
        let h = try DataPortHarness(instances: 2)
        let before = try await h.get("/health")
        #expect(before.status == 503)
        #expect(before.text == #"{"error":"MindIE-MS Coordinator is not ready","code":503}"#)
        #expect(try await h.get("/info").status == 503)
        try await h.refresh()
        let after = try await h.get("/health")
        #expect(after.status == 200)
        #expect(after.body.isEmpty)
        let info = try await h.get("/info")
        #expect(info.status == 200)
        let j = try h.json(info)
        #expect(j["model_id"] as? String == "llama3-8b")
        #expect(j["max_concurrent_requests"] as? Int == 400)
        #expect(j["models"] as? [String] == ["llama3-8b"])
        #expect(j["version"] as? String != nil)
        #expect(try await h.post("/health", "").status == 405)
        #expect(h.seen.get().isEmpty)
    }

    @Test("PD: /health needs a P and a D")
    func healthPD() async throws {
        let h = try DataPortHarness(instances: 1, pd: true)
        try await h.refresh()
        #expect(try await h.get("/health").status == 503)
        #expect(try await h.get("/v1/models").status == 200)
    }

    @Test("GET /metrics on the data port serves the external port's text; the config can turn it off")
    func metricsOnDataPort() async throws {
        let h = try DataPortHarness(instances: 1)
        try await h.refresh()
        let data = try await h.get("/metrics")
        #expect(data.status == 200)
        #expect(data.headers["content-type"]?.hasPrefix("text/plain") == true)
        #expect(data.text.contains("request_received_total{model_name=\"m\"} 0\n"))
        let external = try await h.get(port: h.coordinator.externalPort, "/metrics")
        #expect(external.text.contains("request_received_total{model_name=\"m\"} 0\n"))
        #expect(try await h.post("/metrics", "").status == 405)

        let off = try DataPortHarness(instances: 1) { $0.api.metricsOnDataPort = false }
        try await off.refresh()
        #expect(try await off.get("/metrics").status == 404)
        #expect(try await off.get(port: off.coordinator.externalPort, "/metrics").status == 200)
    }

    @Test("pass-through routes reach an instance unchanged and its answer is relayed", arguments: [
        "/v1/embeddings", "/v1/responses", "/tokenize", "/detokenize",
    ])
    func passthrough(path: String) async throws {
        let h = try DataPortHarness(instances: 2)
        try await h.refresh()
        let body = #"{"model":"llama3-8b","input":"hello","stream":false}"#
        let r = try await h.post(path, body)
        #expect(r.status == 299)
        #expect(r.headers["x-backend"] != nil)
        #expect(r.text.contains("\"path\":\"\(path)\""))
        let seen = h.seen.get()
        #expect(seen.count == 1)
        #expect(seen.first?.request.path == path)
        #expect(seen.first?.request.method == "POST")
        #expect(seen.first?.request.body == body)
        #expect(seen.first?.request.reqID?.isEmpty == false)
        // the backend validates: a body that is not JSON still reaches it
        #expect(try await h.post(path, "not json").status == 299)
        #expect(try await h.post(path, "", method: "GET").status == 405)
    }

    @Test("pass-through routes are scheduled like the others (round robin over both instances)")
    func passthroughScheduled() async throws {
        let h = try DataPortHarness(instances: 2)
        try await h.refresh()
        for _ in 0..<4 { #expect(try await h.post("/v1/embeddings", "{}").status == 299) }
        #expect(Set(h.seen.get().map(\.instance)) == [0, 1])
    }

    @Test("PD: pass-through routes go whole to one instance")
    func passthroughPD() async throws {
        let h = try DataPortHarness(instances: 2, pd: true)
        try await h.refresh()
        let r = try await h.post("/v1/embeddings", #"{"input":"x"}"#)
        #expect(r.status == 299)
        #expect(h.seen.get().map(\.request.path) == ["/v1/embeddings"])
    }

    @Test("passthrough_routes replaces the set: a new engine route is served, a removed one is 404")
    func configuredPassthrough() async throws {
        let h = try DataPortHarness(instances: 1) { $0.api.passthroughRoutes = ["/v1/rerank"] }
        try await h.refresh()
        #expect(try await h.post("/v1/rerank", "{}").status == 299)
        let gone = try await h.post("/v1/embeddings", "{}")
        #expect(gone.status == 404)
        #expect(gone.text.contains("unknown path"))
        #expect(h.seen.get().map(\.request.path) == ["/v1/rerank"])
    }

    @Test("W3C traceparent: generated when the client sent none (parent = the req-id), passed on unchanged otherwise")
    func traceparent() async throws {
        let h = try DataPortHarness(instances: 1)
        try await h.refresh()
        #expect(try await h.post("/v1/embeddings", "{}").status == 299)
        #expect(try await h.post("/v1/chat/completions", #"{"messages":[]}"#).status == 299)
        let mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        #expect(try await h.post("/v1/completions", #"{"prompt":"x"}"#, headers: [("traceparent", mine)]).status == 299)
        let seen = h.seen.get().map(\.request)
        #expect(seen.count == 3)
        for s in seen.prefix(2) {
            let tp = try #require(s.traceparent)
            let parts = tp.split(separator: "-")
            #expect(parts.count == 4 && parts[0] == "00" && parts[3] == "01", "\(tp)")
            #expect(parts[1].count == 32 && parts[1].allSatisfy(\.isHexDigit) && parts[1] != String(repeating: "0", count: 32))
            #expect(UInt64(parts[2], radix: 16).map(String.init) == s.reqID, "\(tp) \(s.reqID ?? "")")
        }
        #expect(seen[0].traceparent?.split(separator: "-")[1] != seen[1].traceparent?.split(separator: "-")[1])
        #expect(seen[2].traceparent == mine)
        #expect(TraceContext.traceparent(traceID: (0, 0), parentID: 0) == "00-00000000000000000000000000000001-0000000000000001-01")
    }

    @Test("before any instance registers, pass-through routes get the 503 of every route")
    func passthroughNotReady() async throws {
        let h = try DataPortHarness(instances: 1)
        let r = try await h.post("/v1/embeddings", "{}")
        #expect(r.status == 503)
        #expect(r.text == #"{"error":{"message":"MindIE-MS Coordinator is not ready","type":"server_error","code":503}}"#)
    }
}

@Suite("Data port routing (pure)")
struct DataPortRoutingTests {
    @Test("local endpoints match GET paths; /metrics only when enabled")
    func local() {
        #expect(LocalEndpoint.match(path: "/v1/models", metrics: true) == .models)
        #expect(LocalEndpoint.match(path: "/v1/models/a/b", metrics: true) == .model("a/b"))
        #expect(LocalEndpoint.match(path: "/v1/models/a%2Fb", metrics: true) == .model("a/b"))
        #expect(LocalEndpoint.match(path: "/v1/models/a%zz", metrics: true) == .model("a%zz"))
        #expect(LocalEndpoint.match(path: "/health", metrics: true) == .health)
        #expect(LocalEndpoint.match(path: "/info", metrics: true) == .info)
        #expect(LocalEndpoint.match(path: "/metrics", metrics: true) == .metrics)
        #expect(LocalEndpoint.match(path: "/metrics", metrics: false) == nil)
        #expect(LocalEndpoint.match(path: "/v1/chat/completions", metrics: true) == nil)
    }

    @Test("pass-through paths route as configured; built-in routes win; query strings ignored")
    func passthroughMatch() {
        let set: Set = ["/v1/embeddings", "/tokenize"]
        #expect(RouteTable.match(method: "POST", target: "/v1/embeddings?x=1", passthrough: set) == .route(.passthrough(path: "/v1/embeddings")))
        #expect(RouteTable.match(method: "GET", target: "/tokenize", passthrough: set) == .methodNotAllowed)
        #expect(RouteTable.match(method: "POST", target: "/detokenize", passthrough: set) == .notFound)
        #expect(RouteTable.match(method: "POST", target: "/v1/embeddings") == .notFound)
        #expect(RouteTable.match(method: "POST", target: "/v1/completions", passthrough: ["/v1/completions"]) == .route(.openAICompletions))
        #expect(Route.passthrough(path: "/tokenize").dialect == .openAI)
    }

    @Test("pass-through bodies are never refused; stream and model are read from JSON objects")
    func passthroughParse() throws {
        let p = RequestParser(passthroughRoutes: ["/v1/responses"])
        let r = try p.parse(method: "POST", target: "/v1/responses", body: Array(#"{"model":"m","stream":true,"max_output_tokens":9}"#.utf8))
        #expect(r.route == .passthrough(path: "/v1/responses"))
        #expect(r.dialect == .openAI && r.stream && r.model == "m" && r.maxTokens == 9)
        for body in ["", "not json", "[1]", "{\"stream\":\"yes\"}", String(repeating: "[", count: 50)] {
            let q = try p.parse(method: "POST", target: "/v1/responses", body: Array(body.utf8))
            #expect(q.stream == false)
        }
    }

    @Test("model catalog: distinct names in registration order; offline and nameless instances left out")
    func catalog() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .mixed, modelName: "b"), InstanceInfo(id: 1, role: .mixed, modelName: "a"),
            InstanceInfo(id: 2, role: .mixed, modelName: "b"), InstanceInfo(id: 3, role: .mixed, offline: true, modelName: "c"),
            InstanceInfo(id: 4, role: .mixed, modelName: ""),
        ])
        #expect(ModelCatalog.names(snap) == ["b", "a"])
        #expect(ModelCatalog.list(["a\"x"], created: 5)
            == #"{"object":"list","data":[{"id":"a\"x","object":"model","created":5,"owned_by":"mindie-ms","root":"a\"x"}]}"#)
    }
}

@Suite("api_config")
struct APIConfigTests {
    private static let conf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("conf/ms_coordinator.json")

    private func parse(api: String?) throws(ConfigError) -> CoordinatorConfig {
        var text = (try? String(contentsOf: Self.conf, encoding: .utf8)) ?? ""
        if let api { text = text.replacingOccurrences(of: "\"string_token_rate\": 4.02", with: "\"string_token_rate\": 4.02, \"api_config\": \(api)") }
        return try CoordinatorConfig.parse(Array(text.utf8))
    }

    @Test("optional: absent means the four vLLM routes and /metrics on the data port")
    func defaults() throws {
        let c = try parse(api: nil)
        #expect(c.api.passthroughRoutes == ["/v1/responses", "/v1/embeddings", "/tokenize", "/detokenize"])
        #expect(c.api.metricsOnDataPort)
        let d = try parse(api: #"{"passthrough_routes":["/v1/rerank","/v1/score","/v1/rerank"],"metrics_on_data_port":false}"#)
        #expect(d.api.passthroughRoutes == ["/v1/rerank", "/v1/score"])
        #expect(!d.api.metricsOnDataPort)
        #expect(try parse(api: #"{"passthrough_routes":[]}"#).api.passthroughRoutes == [])
    }

    @Test("bad values name the key and what is allowed", arguments: [
        #"{"passthrough_routes":"/v1/embeddings"}"#, #"{"passthrough_routes":["v1/embeddings"]}"#,
        #"{"passthrough_routes":["/v1/chat/completions"]}"#, #"{"passthrough_routes":["/v1/models"]}"#,
        #"{"passthrough_routes":["/health"]}"#, #"{"passthrough_routes":["/a?b"]}"#, #"{"passthrough_routes":["/a b"]}"#,
        #"{"passthrough_routes":[1]}"#, #"{"passthrough_routes":["/"]}"#, #"{"metrics_on_data_port":"yes"}"#,
    ])
    func refusals(api: String) {
        do {
            _ = try parse(api: api)
            Issue.record("accepted \(api)")
        } catch {
            #expect(error.key.hasPrefix("api_config."), "\(error)")
            #expect(error.description.contains("allowed"))
        }
    }
}
