import Foundation
import Testing
import TestSupport
@testable import Control
import MSCore

/// ms_deployer (its real HTTP handler, mutual TLS) against the fake kube-apiserver (mutual TLS too), driven by
/// msctl's client code.
final class Harness: @unchecked Sendable {
    let pki: URL
    let dir: URL
    let fake: FakeKubeAPIServer
    var server: DeployerServer!
    var msctlConfig = ""
    let env: [String: String] = [:]

    init() throws {
        let pkiDir = try makePKI()
        pki = pkiDir
        dir = tempDir("e2e")
        func p(_ f: String) -> String { pkiDir.appendingPathComponent(f).path }
        fake = try FakeKubeAPIServer(tls: TLSConfiguration(certificatePath: p("server.pem"), privateKeyPath: p("server.key.pem"), caPath: p("ca.pem")))
        try start()
        msctlConfig = write("""
            {"http":{"dstIP":"127.0.0.1","dstPort":\(server.port),"ca_cert":"\(p("ca.pem"))","tls_cert":"\(p("client.pem"))",
             "tls_key":"\(p("client.key.pem"))","tls_crl":"","timeout":60},"log_level":"INFO"}
            """, to: dir.appendingPathComponent("msctl.json"))
        // msctl's largest timeout: a PD create (many API calls, configs checked by the binaries' parsers) once took
        // over 10 s on a machine loaded by parallel suites and builds
    }

    var deployerConfigDoc: JSON {
        func p(_ f: String) -> String { pki.appendingPathComponent(f).path }
        let text = """
            {"ip":"127.0.0.1","port":9789,"k8s_apiserver_ip":"127.0.0.1","k8s_apiserver_port":\(fake.port),
             "log_info":{"log_level":"INFO"},"ms_status_file":"\(dir.appendingPathComponent("status.json").path)",
             "server_tls_items":{"ca_cert":"\(p("ca.pem"))","tls_cert":"\(p("server.pem"))","tls_key":"\(p("server.key.pem"))","tls_passwd":"","tls_crl":""},
             "client_k8s_tls_enable":true,
             "client_k8s_tls_items":{"ca_cert":"\(p("ca.pem"))","tls_cert":"\(p("client.pem"))","tls_key":"\(p("client.key.pem"))","tls_passwd":"","tls_crl":""},
             "client_mindie_server_tls_enable":false}
            """
        return try! JSON.parse(Data(text.utf8))
    }

    /// (Re)starts ms_deployer from the config (and so from the status file).
    func start() throws {
        let config = try DeployerConfig.parse(deployerConfigDoc, environment: env)
        server = try DeployerServer(config: config, environment: env, configChecks: startChecks, logger: quietLogger, port: 0, reconcileIntervalMilliseconds: 3_600_000)
    }

    func restart() throws {
        server.shutdown()
        server.http.waitUntilStopped()
        try start()
        // msctl.json names the old port: rewrite it.
        let text = try String(contentsOfFile: msctlConfig, encoding: .utf8)
        let updated = text.replacingOccurrences(of: #""dstPort":\d+"#, with: "\"dstPort\":\(server.port)", options: .regularExpression)
        write(updated, to: URL(fileURLWithPath: msctlConfig))
    }

    func specFile(_ name: String, _ text: String) -> String { write(text, to: dir.appendingPathComponent(name)) }

    func msctl(_ c: MsctlClient.Command) async -> MsctlClient.Outcome {
        await MsctlClient.run(c, environment: env, configPath: msctlConfig)
    }

    func stop() {
        server.shutdown()
        fake.stop()
    }
}

func parsed(_ o: MsctlClient.Outcome) -> JSON { (try? JSON.parse(Data(o.stdout.utf8))) ?? .null }

@Suite(.serialized, .timeLimit(.minutes(2))) struct EndToEndTests {
    @Test func singleNodeLifecycle() async throws {
        let h = try Harness()
        defer { h.stop() }
        let ns = "mindie"
        let file = h.specFile("infer_server.json", specJSON(name: "mindie-server", ["mindie_server_config.management_port": deadPort()]))

        // create
        var o = await h.msctl(.create(file: file))
        #expect(o.exitCode == 0, "\(o)")
        #expect(o.stdout == "{\n    \"message\": \"Creating the server!\",\n    \"status\": \"0\"\n}\n")
        #expect(h.fake.names("deployments", ns) == ["mindie-server"])
        #expect(h.fake.names("services", ns) == ["mindie-server"])
        #expect(h.fake.names("pods", ns).count == 2)

        // duplicate → 409, exit 1
        o = await h.msctl(.create(file: file))
        #expect(o.exitCode == 1)
        #expect(parsed(o)["message"] == js("server with same name is already loaded"))

        // get: per-pod readiness
        o = await h.msctl(.get(name: "mindie-server"))
        #expect(o.exitCode == 0, "\(o)")
        let data = parsed(o)["data"]
        #expect(data?["instances_status"]?.arrayValue?.count == 2)
        #expect(data?["instances_status"]?.arrayValue?.allSatisfy { $0["readiness"] == jb(true) && $0["liveness"] == jb(true) } == true)
        #expect(data?["ready_replicas"] == ji(2))
        // nothing listens on the pods' management port: readiness comes from Kubernetes, and it says so
        #expect(data?["instances_status"]?.arrayValue?.first?["message"]?.stringValue?.hasPrefix("management port not reachable") == true)

        // update with spec changes → merge patch, rolling update of replicas and image
        let upd = h.specFile("update.json", #"{"server_name":"mindie-server","replicas":3,"image":"mindie:server-v2","liveness_timeout":20}"#)
        o = await h.msctl(.update(file: upd))
        #expect(o.exitCode == 0, "\(o)")
        #expect(parsed(o)["message"] == js("update server success."))
        let dep = h.fake.object("deployments", ns, "mindie-server")
        #expect(dep?.at("spec", "replicas") == ji(3))
        #expect(dep?.at("spec", "template", "spec", "containers")?.arrayValue?.first?["image"] == js("mindie:server-v2"))
        #expect(dep?.at("spec", "template", "spec", "containers")?.arrayValue?.first?.at("livenessProbe", "timeoutSeconds") == ji(20))
        #expect(h.fake.names("pods", ns).count == 3)
        let patch = h.fake.log.last { $0.method == "PATCH" }
        #expect(patch?.contentType == "application/merge-patch+json")

        // update without changes → the reference's rolling restart
        let restart = h.specFile("update_server.json", #"{"server_name":"mindie-server"}"#)
        o = await h.msctl(.update(file: restart))
        #expect(o.exitCode == 0, "\(o)")
        let last = h.fake.log.last { $0.method == "PATCH" }
        #expect(last?.query == "fieldManager=kubectl-rollout")
        #expect(last?.contentType == "application/strategic-merge-patch+json")
        #expect(h.fake.object("deployments", ns, "mindie-server")?.at("spec", "template", "metadata", "annotations", "kubectl.kubernetes.io/restartedAt") != nil)

        // unknown names
        o = await h.msctl(.update(file: h.specFile("u2.json", #"{"server_name":"nobody"}"#)))
        #expect(o.exitCode == 1)
        #expect(parsed(o)["message"] == js("server to be updated is not existing"))
        o = await h.msctl(.get(name: "nobody"))
        #expect(o.exitCode == 1)
        #expect(parsed(o)["message"] == js("Cannot find the resource /v1/servers/nobody"))

        // persisted (0640) and restored after a restart
        let statusPath = h.dir.appendingPathComponent("status.json").path
        let attrs = try FileManager.default.attributesOfItem(atPath: statusPath)
        #expect((attrs[.posixPermissions] as? Int) == 0o640)
        let status = try JSON.parse(Data(contentsOf: URL(fileURLWithPath: statusPath)))
        #expect(status["server_list"]?.arrayValue?.first?["replicas"] == ji(3))
        try h.restart()
        #expect(await h.server.service.verifyRestored() == [])
        o = await h.msctl(.get(name: "mindie-server"))
        #expect(o.exitCode == 0, "\(o)")
        #expect(parsed(o)["data"]?["replicas"] == ji(3))

        // delete removes everything
        o = await h.msctl(.delete(name: "mindie-server"))
        #expect(o.exitCode == 0, "\(o)")
        #expect(parsed(o)["message"] == js("succeed to clear resources"))
        #expect(h.fake.names("deployments", ns).isEmpty && h.fake.names("services", ns).isEmpty && h.fake.names("pods", ns).isEmpty)
        o = await h.msctl(.get(name: "mindie-server"))
        #expect(o.exitCode == 1)
        let after = try JSON.parse(Data(contentsOf: URL(fileURLWithPath: statusPath)))
        #expect(after["server_list"] == ja([]))
    }

    @Test("an update that changes server_type says so (400), whatever the new type would need, and changes nothing")
    func serverTypeChange() async throws {
        let h = try Harness()
        defer { h.stop() }
        #expect(await h.msctl(.create(file: h.specFile("a.json", specJSON(name: "alpha")))).exitCode == 0)
        let before = h.fake.object("deployments", "mindie", "alpha")
        let o = await h.msctl(.update(file: h.specFile("u.json", #"{"server_name":"alpha","server_type":"mindie_pd_cluster"}"#)))
        #expect(o.exitCode == 1)
        let message = parsed(o)["message"]?.stringValue ?? ""
        #expect(message.contains("server_type cannot be changed") && message.contains("mindie_single_node") && message.contains("delete"), "\(message)")
        #expect(h.fake.object("deployments", "mindie", "alpha") == before)
    }

    @Test func severalServersAndAPDCluster() async throws {
        let h = try Harness()
        defer { h.stop() }
        let ns = "mindie"
        #expect(await h.msctl(.create(file: h.specFile("a.json", specJSON(name: "alpha")))).exitCode == 0)
        #expect(await h.msctl(.create(file: h.specFile("c.json", specJSON("mindie_cross_node", name: "cross")))).exitCode == 0)
        // the table-writing path (the default Controller discovers its pods instead: DiscoveryManifestTests)
        let tableSpec = specJSON("mindie_pd_cluster", name: "pd", ["pd_cluster.controller_config": ["instance_discovery": ["source": "rank_table"]]])
        #expect(await h.msctl(.create(file: h.specFile("p.json", tableSpec))).exitCode == 0)
        #expect(h.fake.names("deployments", ns) == ["alpha", "cross-deployment-0", "pd-controller", "pd-coordinator", "pd-decode", "pd-prefill"])
        #expect(h.fake.names("serviceaccounts", ns) == ["pd-ms"])
        #expect(h.fake.names("roles", ns) == ["pd-ms"] && h.fake.names("rolebindings", ns) == ["pd-ms"])

        // the PD rank table follows the pods
        let service = h.server.service
        #expect(await service.reconcile() == ["pd"])
        var table = try JSON.parse(Data((h.fake.object("configmaps", ns, "pd-global-ranktable")?.at("data", "global_ranktable.json")?.stringValue ?? "").utf8))
        #expect(table["status"] == js("completed"))
        #expect(table["server_group_list"]?.arrayValue?[2]["server_count"] == js("3"))
        #expect(await service.reconcile() == [])  // nothing changed, nothing written
        let upd = h.specFile("pu.json", #"{"server_name":"pd","pd_cluster":{"decode_replicas":2}}"#)
        let o = await h.msctl(.update(file: upd))
        #expect(o.exitCode == 0, "\(o)")
        #expect(await service.reconcile() == ["pd"])
        table = try JSON.parse(Data((h.fake.object("configmaps", ns, "pd-global-ranktable")?.at("data", "global_ranktable.json")?.stringValue ?? "").utf8))
        #expect(table["server_group_list"]?.arrayValue?[2]["server_count"] == js("4"))
        let get = parsed(await h.msctl(.get(name: "pd")))
        #expect(get["data"]?["rank_table_status"] == js("completed"))
        #expect(get["data"]?["instances_status"]?.arrayValue?.count == 6)  // the Coordinator, the Controller, 4 servers
        #expect(get["data"]?["replicas"] == ji(6) && get["data"]?["ready_replicas"] == ji(6))

        // cross node: once the operator completes hccl.json the master pod is labelled
        let pod = h.fake.names("pods", ns).first { $0.hasPrefix("cross-") }!
        let ip = h.fake.object("pods", ns, pod)?.at("status", "podIP")?.stringValue ?? ""
        let cmName = "rings-config-cross-deployment-0"
        let cm = h.fake.object("configmaps", ns, cmName)!
        h.fake.set("configmaps", ns, cmName, cm.setting(["data", "hccl.json"],
                   to: js(#"{"status":"completed","server_list":[{"container_ip":"\#(ip)"},{"container_ip":"10.9.9.9"}]}"#)))
        await service.reconcile()
        #expect(h.fake.object("pods", ns, pod)?.at("metadata", "labels", "cross-node-app") == js("cross-master-node"))
        let cross = h.specFile("cu.json", #"{"server_name":"cross","init_delay":20}"#)
        #expect(parsed(await h.msctl(.update(file: cross)))["message"] == js("cross node mode does not support update yet"))

        // three servers persisted; deleting the PD cluster removes all of its objects
        #expect(await service.serverNames == ["alpha", "cross", "pd"])
        #expect(await h.msctl(.delete(name: "pd")).exitCode == 0)
        #expect(h.fake.names("configmaps", ns) == ["alpha-owner", "cross-owner", cmName])  // the other servers' roots stay
        #expect(h.fake.names("serviceaccounts", ns).isEmpty && h.fake.names("roles", ns).isEmpty && h.fake.names("rolebindings", ns).isEmpty)
        #expect(h.fake.names("deployments", ns) == ["alpha", "cross-deployment-0"])
        #expect(h.fake.names("services", ns) == ["alpha", "cross-service"])
    }

    @Test("orphans: objects nobody recorded are found by label — create refuses with the clean-up command, delete removes them")
    func orphansAreFoundByLabel() async throws {
        let h = try Harness()
        defer { h.stop() }
        let ns = "mindie"
        // 9 of the 12 PD objects, as a deployer killed mid-create before recording the server would leave them
        let objs = Manifests.build(try spec("mindie_pd_cluster", name: "pd"), namespace: ns)
        for o in objs.prefix(9) { h.fake.set(o.kind.resource, ns, o.name, o.body) }
        #expect(await h.server.service.serverNames.isEmpty)
        // every object carries both labels
        #expect(objs.allSatisfy { $0.body.at("metadata", "labels", Manifests.instanceLabel) == js("pd")
            && $0.body.at("metadata", "labels", Manifests.managedByLabel) == js("ms_deployer") })

        var o = await h.msctl(.create(file: h.specFile("p.json", specJSON("mindie_pd_cluster", name: "pd"))))
        #expect(o.exitCode == 1)
        let msg = parsed(o)["message"]?.stringValue ?? ""
        #expect(msg.contains("msctl delete infer_server -n pd") && msg.contains("ConfigMap/pd-global-ranktable"), "\(msg)")
        #expect(h.fake.names("deployments", ns).count == objs.prefix(9).filter { $0.kind == .deployment }.count)  // nothing created

        o = await h.msctl(.delete(name: "pd"))
        #expect(o.exitCode == 0, "\(o)")
        #expect(parsed(o)["data"]?["removed"]?.arrayValue?.count == 9)
        for r in ["deployments", "configmaps", "services", "serviceaccounts", "roles", "rolebindings"] { #expect(h.fake.names(r, ns).isEmpty) }
        #expect(await h.msctl(.delete(name: "pd")).exitCode == 1)  // nothing left: 404

        // now a clean create works; get reports drift, update recreates what was deleted behind its back
        #expect(await h.msctl(.create(file: h.specFile("p.json", specJSON("mindie_pd_cluster", name: "pd")))).exitCode == 0)
        // one root object owns all the others (deleting it lets Kubernetes collect the rest)
        let rootUID = try #require(h.fake.object("configmaps", ns, "pd-owner")?.at("metadata", "uid")?.stringValue)
        for obj in objs {
            let refs = h.fake.object(obj.kind.resource, ns, obj.name)?.at("metadata", "ownerReferences")
            #expect(refs?.arrayValue?.first?["uid"] == js(rootUID) && refs?.arrayValue?.first?["name"] == js("pd-owner"), "\(obj.ref)")
        }
        h.fake.state.withLock { s in
            s.objects["configmaps/\(ns)/pd-server-config"] = nil
            s.objects["services/\(ns)/pd-infer"] = nil
        }
        o = await h.msctl(.get(name: "pd"))
        #expect(parsed(o)["data"]?["missing_objects"] == ja([js("ConfigMap/pd-server-config"), js("Service/pd-infer")]), "\(o)")
        o = await h.msctl(.update(file: h.specFile("u.json", #"{"server_name":"pd"}"#)))
        #expect(o.exitCode == 0 && parsed(o)["data"]?["recreated"] == ja([js("ConfigMap/pd-server-config"), js("Service/pd-infer")]), "\(o)")
        #expect(h.fake.object("services", ns, "pd-infer") != nil && h.fake.object("configmaps", ns, "pd-server-config") != nil)
        #expect(parsed(await h.msctl(.get(name: "pd")))["data"]?["missing_objects"] == ja([]))
    }

    @Test("an update that turns pd_cluster.ha on and off adds and removes what it renders (the Coordinator's budget)")
    func updateTogglesHA() async throws {
        let h = try Harness()
        defer { h.stop() }
        let ns = "mindie"
        #expect(await h.msctl(.create(file: h.specFile("p.json", specJSON("mindie_pd_cluster", name: "pd")))).exitCode == 0)
        #expect(h.fake.names("poddisruptionbudgets", ns) == ["pd-coordinator", "pd-decode", "pd-prefill"])
        var o = await h.msctl(.update(file: h.specFile("on.json", #"{"server_name":"pd","pd_cluster":{"ha":{"etcd_address":"etcd:2379"}}}"#)))
        #expect(o.exitCode == 0, "\(o)")
        // a budget left behind would block every drain of the master Coordinator
        #expect(h.fake.names("poddisruptionbudgets", ns) == ["pd-decode", "pd-prefill"])
        #expect(h.fake.object("deployments", ns, "pd-controller")?.at("spec", "replicas") == ji(2))
        #expect(h.fake.object("deployments", ns, "pd-coordinator")?.at("spec", "replicas") == ji(2))
        #expect(parsed(await h.msctl(.get(name: "pd")))["data"]?["missing_objects"] == ja([]))
        o = await h.msctl(.update(file: h.specFile("off.json", #"{"server_name":"pd","pd_cluster":{"ha":null}}"#)))
        #expect(o.exitCode == 0, "\(o)")
        #expect(h.fake.names("poddisruptionbudgets", ns) == ["pd-coordinator", "pd-decode", "pd-prefill"])
        #expect(h.fake.object("deployments", ns, "pd-controller")?.at("spec", "replicas") == ji(1))
    }

    @Test("a create whose rollback fails stays recorded (intent was written first), so delete can finish the job after a restart")
    func failedRollbackIsRecorded() async throws {
        let h = try Harness()
        defer { h.stop() }
        let ns = "mindie"
        h.fake.state.withLock { $0.failCreate = ["services/mindie-server"]; $0.failDelete = ["deployments/mindie-server"] }
        let o = await h.msctl(.create(file: h.specFile("s.json", specJSON())))
        #expect(o.exitCode == 1 && (parsed(o)["message"]?.stringValue?.contains("msctl delete infer_server -n mindie-server") ?? false), "\(o)")
        #expect(h.fake.names("deployments", ns) == ["mindie-server"])
        try h.restart()
        #expect(await h.server.service.serverNames == ["mindie-server"])
        h.fake.state.withLock { $0.failCreate = []; $0.failDelete = [] }
        #expect(await h.msctl(.delete(name: "mindie-server")).exitCode == 0)
        #expect(h.fake.names("deployments", ns).isEmpty)
    }

    @Test func kubernetesFailuresAreReportedAndRolledBack() async throws {
        let h = try Harness()
        defer { h.stop() }
        let ns = "mindie"
        h.fake.state.withLock { $0.failCreate = ["services/mindie-server"] }
        var o = await h.msctl(.create(file: h.specFile("s.json", specJSON())))
        #expect(o.exitCode == 1)
        let msg = parsed(o)["message"]?.stringValue ?? ""
        #expect(msg.hasPrefix("deploy services failed: Service/mindie-server"), "\(msg)")
        #expect(h.fake.names("deployments", ns).isEmpty)  // rolled back
        #expect(await h.server.service.serverNames.isEmpty)

        h.fake.state.withLock { $0.failCreate = []; $0.forbidden = ["deployments"] }
        o = await h.msctl(.create(file: h.specFile("s.json", specJSON())))
        #expect(o.exitCode == 1)
        #expect(parsed(o)["message"]?.stringValue?.contains("forbidden (403)") == true)

        h.fake.state.withLock { $0.forbidden = [] }
        #expect(await h.msctl(.create(file: h.specFile("s.json", specJSON()))).exitCode == 0)
        h.fake.state.withLock { $0.failDelete = ["deployments/mindie-server"] }
        o = await h.msctl(.delete(name: "mindie-server"))
        #expect(o.exitCode == 1)
        #expect(parsed(o)["message"] == js("unload server failed! could not remove: Deployment/mindie-server"))
        #expect(parsed(o)["data"]?["not_removed"]?.arrayValue?.count == 1)
        #expect(h.fake.names("services", ns).isEmpty)  // what could go, went
        #expect(await h.server.service.serverNames == ["mindie-server"])
        h.fake.state.withLock { $0.failDelete = [] }
        #expect(await h.msctl(.delete(name: "mindie-server")).exitCode == 0)
    }

    @Test func concurrentRequestsForOneServerDoNotInterleave() async throws {
        let h = try Harness()
        defer { h.stop() }
        let service = h.server.service
        let body = Array(specJSON(name: "race").utf8)
        async let a = service.create(body: body)
        async let b = service.create(body: body)
        let statuses = await [a.status, b.status].sorted()
        #expect(statuses == [200, 409])
        async let d1 = service.delete(name: "race", target: "/v1/servers/race")
        async let d2 = service.delete(name: "race", target: "/v1/servers/race")
        let deleted = await [d1.status, d2.status].sorted()
        #expect(deleted == [200, 404] || deleted == [200, 409])
        #expect(h.fake.names("deployments", "mindie").isEmpty)
    }

    @Test func restAPIRefusalsOverMutualTLS() async throws {
        let h = try Harness()
        defer { h.stop() }
        func p(_ f: String) -> String { h.pki.appendingPathComponent(f).path }
        let client = HTTPClient(tls: try TLSClient(TLSConfiguration(certificatePath: p("client.pem"), privateKeyPath: p("client.key.pem"), caPath: p("ca.pem"))))
        func call(_ method: String, _ path: String, _ body: String = "") async throws -> (Int, JSON) {
            let r = try await client.execute(HTTPClientRequest(method: method, host: "127.0.0.1", port: h.server.port, path: path, body: Array(body.utf8)))
            return (r.status, (try? JSON.parse(Data(r.body))) ?? .null)
        }
        var (s, b) = try await call("PUT", "/v1/servers/x")
        #expect(s == 405 && b["message"] == js("Unknown Http-method") && b["status"] == js("1"))
        (s, b) = try await call("GET", "/v1/servers/../etc")
        #expect(s == 400 || s == 404)
        (s, b) = try await call("GET", "/v2/other")
        #expect(s == 404 && b["message"] == js("Cannot find the resource /v2/other"))
        (s, b) = try await call("DELETE", "/v1/servers")
        #expect(s == 404)
        (s, b) = try await call("POST", "/v1/servers", "x")
        #expect(s == 400 && b["message"] == js("load config is not a valid json!"))
        (s, b) = try await call("POST", "/v1/servers", #"{"server_name":"Bad_Name"}"#)
        #expect(s == 400 && b["message"]?.stringValue?.hasPrefix("server_name must be a DNS-1123 label") == true)
        (s, b) = try await call("POST", "/v1/servers/x", #"{"a":1}"#)
        #expect(s == 400 && b["message"] == js("update json does not include server name."))
        (s, b) = try await call("GET", "/v1/servers")
        #expect(s == 200 && b["data"] == ja([]))
        // a body over the 10 MiB limit gets a 413 reply over TLS (it used to be a bare close), and the server goes on
        (s, b) = try await call("POST", "/v1/servers", String(repeating: "x", count: (10 << 20) + 1))
        #expect(s == 413 && b["message"]?.stringValue?.contains("over the limit") == true && b["status"] == js("1"))
        (s, b) = try await call("GET", "/v1/servers")
        #expect(s == 200)
        // over what the listener reads (issue 14): h2o's own 413, naming the limit, instead of a reset mid-upload
        let huge = try await client.execute(HTTPClientRequest(method: "POST", host: "127.0.0.1", port: h.server.port, path: "/v1/servers",
                                                              body: [UInt8](repeating: 0x78, count: 22 << 20)))
        #expect(huge.status == 413 && huge.text.contains("over the limit of \(DeployerAPI.listenerBodyBytes) bytes"), "\(huge.status) \(huge.text)")
        (s, b) = try await call("GET", "/v1/servers")
        #expect(s == 200)
        // without a client certificate the TLS handshake is refused
        let anonymous = HTTPClient(tls: try TLSClient(TLSConfiguration(caPath: p("ca.pem"))))
        await #expect(throws: HTTPClientError.self) {
            _ = try await anonymous.execute(HTTPClientRequest(host: "127.0.0.1", port: h.server.port, path: "/v1/servers"))
        }
    }

    @Test func routing() {
        #expect(DeployerAPI.route(method: "POST", path: "/v1/servers") == .create)
        #expect(DeployerAPI.route(method: "POST", path: "/v1/servers/anything") == .update)
        #expect(DeployerAPI.route(method: "GET", path: "/v1/servers/a") == .get("a"))
        #expect(DeployerAPI.route(method: "DELETE", path: "/v1/servers/a") == .delete("a"))
        #expect(DeployerAPI.route(method: "GET", path: "/v1/servers/a/../b") == .refuse(DeployerReply(400, "Illegal request-target")))
        #expect(DeployerAPI.route(method: "POST", path: "/v1/serversX") == .refuse(DeployerReply(404, "Cannot find the resource /v1/serversX")))
    }
}

@Suite(.timeLimit(.minutes(1))) struct KubeconfigDeployerTests {
    /// ms_deployer with `kubeconfig` (plain HTTP server + bearer token) instead of the apiserver keys; server TLS off.
    @Test func deploysThroughAKubeconfigWithAToken() async throws {
        let fake = try FakeKubeAPIServer(token: "t0ken")
        defer { fake.stop() }
        let dir = tempDir("kubecfg")
        let kubeconfig = write("""
            apiVersion: v1
            kind: Config
            current-context: lab
            contexts:
            - name: lab
              context: {cluster: lab, user: bot}
            """.replacingOccurrences(of: "context: {cluster: lab, user: bot}", with: "context:\n    cluster: lab\n    user: bot") + """

            clusters:
            - name: lab
              cluster:
                server: http://127.0.0.1:\(fake.port)
            users:
            - name: bot
              user:
                token: t0ken
            """, to: dir.appendingPathComponent("kubeconfig"))
        let doc = try JSON.parse(Data("""
            {"ip":"127.0.0.1","port":9789,"kubeconfig":"\(kubeconfig)","ms_status_file":"\(dir.path)/status.json",
             "server_tls_enable":false,"client_mindie_server_tls_enable":false,"namespace":"lab"}
            """.utf8))
        let config = try DeployerConfig.parse(doc)
        let server = try DeployerServer(config: config, environment: [:], configChecks: startChecks, logger: quietLogger, port: 0, reconcileIntervalMilliseconds: 3_600_000)
        defer { server.shutdown() }
        let client = HTTPClient()
        let r = try await client.execute(HTTPClientRequest(method: "POST", host: "127.0.0.1", port: server.port, path: "/v1/servers",
                                                           body: Array(specJSON(name: "lab-server").utf8)))
        #expect(r.status == 200, "\(r.text)")
        #expect(fake.names("deployments", "lab") == ["lab-server"])
        #expect(fake.names("services", "lab") == ["lab-server"])
    }
}

@Suite struct UpdateDiffTests {
    @Test func mergeDiffNullsRemovedKeysAndReplacesLists() {
        let old = jo(["a": ji(1), "b": jo(["c": ji(2), "d": ji(3)]), "l": ja([ji(1), ji(2)])])
        let new = jo(["a": ji(1), "b": jo(["c": ji(5)]), "l": ja([ji(1)]), "e": js("x")])
        let d = DeployerService.mergeDiff(old, new)
        #expect(d == jo(["b": jo(["c": ji(5), "d": .null]), "l": ja([ji(1)]), "e": js("x")]))
        #expect(old.merging(d) == new)
    }

    @Test func turningFaultReschedulingOffRemovesTheLabel() throws {
        let before = Manifests.build(try spec())[0].body
        let after = Manifests.build(try spec("mindie_single_node", ["npu_fault_reschedule": false]))[0].body
        let d = DeployerService.mergeDiff(before, after)
        #expect(d.at("spec", "template", "metadata", "labels", "fault-scheduling") == .null)
        #expect(before.merging(d) == after)
    }
}

import Synchronization

@Suite(.timeLimit(.minutes(1))) struct ManagementProbeTests {
    /// `get` asks each pod's management port (as the reference does) and reports `/info` as model_info.
    @Test func getAsksTheServersManagementPort() async throws {
        let box = ReadyBox()
        let mgmt = try HTTPServer(configuration: HTTPServerConfiguration(threads: 1, listeners: [HTTPListener(host: "0.0.0.0", port: 0)],
                                                                          gracefulTimeoutMilliseconds: 200), handler: { req, res in
            switch req.path {
            case "/v2/health/ready": res.respond(status: box.flag.load(ordering: .relaxed) ? 200 : 503, body: "")
            case "/v2/health/live": res.respond(status: 200, body: "")
            case "/info": res.respondJSON(status: 200, #"{"max_seq_len":4096,"model":"llama2-7b"}"#)
            default: res.respond(status: 404, body: "")
            }
        })
        try mgmt.start()
        defer { mgmt.shutdown() }
        let h = try Harness()
        defer { h.stop() }
        let file = h.specFile("s.json", specJSON(name: "probed", ["mindie_server_config.management_port": mgmt.boundPorts[0]]))
        #expect(await h.msctl(.create(file: file)).exitCode == 0)
        var data = parsed(await h.msctl(.get(name: "probed")))["data"]
        #expect(data?["model_info"] == jo(["max_seq_len": ji(4096), "model": js("llama2-7b")]))
        let pods = data?["instances_status"]?.arrayValue ?? []
        #expect(pods.count == 2 && pods.allSatisfy { $0["readiness"] == jb(true) && $0["message"] == nil }, "\(pods)")
        box.flag.store(false, ordering: .relaxed)
        data = parsed(await h.msctl(.get(name: "probed")))["data"]
        #expect(data?["instances_status"]?.arrayValue?.allSatisfy {
            $0["readiness"] == jb(false) && $0["message"] == js("this mindie_server is not ready.")
        } == true)
        #expect(data?["ready_replicas"] == ji(0))
    }
}

final class ReadyBox: Sendable {
    let flag = Atomic<Bool>(true)
}
