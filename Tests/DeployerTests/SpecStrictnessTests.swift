import Foundation
import Testing
import TestSupport
@testable import Control
import MSCore

/// Issue 14 item 5: what the spec parser and msctl used to let through silently.
@Suite struct SpecStrictnessTests {
    func refusal(_ body: String) -> DeployerError? {
        do {
            _ = try InferServerSpec.parse(body: Array(body.utf8), mindieTLS: false)
            return nil
        } catch {
            return error
        }
    }

    func withKey(_ type: String, _ key: String, _ value: Any) -> String {
        specJSON(type, name: "s", [key: value])
    }

    @Test("an unknown or misspelt key is refused, naming it and the closest known key", arguments: [
        ("mindie_single_node", "replica", "replicas"), ("mindie_single_node", "resource_requests.memroy", "memory"),
        ("mindie_pd_cluster", "pd_cluster.prefil_replicas", "prefill_replicas"), ("mindie_cross_node", "liveness_timout", "liveness_timeout"),
    ])
    func unknownKeys(type: String, key: String, closest: String) throws {
        let e = try #require(refusal(withKey(type, key, 1)))
        #expect(e.status == 400)
        #expect(e.message.contains("unknown key \"\(key)\"") && e.message.contains("did you mean \"\(closest)\""), "\(e.message)")
    }

    @Test("the reference's ignored 10RC2-era keys are still accepted")
    func legacyKeys() {
        #expect(refusal(withKey("mindie_single_node", "server_image", "x")) == nil)
        #expect(refusal(withKey("mindie_single_node", "namespace", "mindie")) == nil)
    }

    @Test("an integer field written as 2.0 or 2e0 is refused, naming the field", arguments: [
        ("replicas", "2.0"), ("replicas", "2e0"), ("resource_requests.memory", "65536.0"), ("pd_cluster.decode_replicas", "1.0"),
    ])
    func integerFields(key: String, literal: String) throws {
        let placeholder = 987_654_321
        let body = specJSON("mindie_pd_cluster", name: "s", [key: placeholder]).replacingOccurrences(of: "\(placeholder)", with: literal)
        let e = try #require(refusal(body))
        #expect(e.status == 400 && e.message.contains("\(key) must be an integer, got \(literal)"), "\(e.message)")
    }

    @Test("a fractional number inside a component config is not an integer field of the spec")
    func fractionsElsewhereAreFine() {
        #expect(refusal(specJSON("mindie_pd_cluster", name: "s", ["pd_cluster.coordinator_config": ["string_token_rate": 4.5]])) == nil)
    }

    @Test("msctl percent-encodes the name (-n 'a b' asks for a name, not another path) and lists with GET /v1/servers")
    func requestPaths() throws {
        let cfg = MsctlClient.Config(host: "127.0.0.1", port: 9789, timeoutSeconds: 5, tls: nil)
        #expect(try MsctlClient.request(.get(name: "a b"), config: cfg, environment: [:]).path == "/v1/servers/a%20b")
        #expect(try MsctlClient.request(.delete(name: "x/../y"), config: cfg, environment: [:]).path == "/v1/servers/x%2F..%2Fy")
        #expect(try MsctlClient.request(.get(name: "mindie-server"), config: cfg, environment: [:]).path == "/v1/servers/mindie-server")
        let list = try MsctlClient.request(.list, config: cfg, environment: [:])
        #expect(list.method == "GET" && list.path == "/v1/servers")
    }

    @Test("an entry the reference's ms_server wrote (no spec) is dropped with the reason and what to do")
    func referenceStatusEntry() throws {
        let dir = tempDir("refstatus")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("status.json")
        write(#"{"server_list":[{"namespace":"mindie","replicas":1,"server_name":"mindie-server","server_type":"mindie_cross_node","use_service":true}]}"#,
              to: path)
        let r = try StatusStore(path: path.path).load(mindieTLS: false, environment: [:])
        #expect(r.entries.isEmpty)
        #expect(r.dropped.count == 1 && r.dropped[0].contains("mindie-server") && r.dropped[0].contains("reference's ms_server")
                && r.dropped[0].contains("kubectl"), "\(r.dropped)")
    }
}
