import Foundation
import MSCore
import Testing

@testable import Control

/// `instance_discovery.source = kubernetes`: the pod list as a table (pure), the config key, and the Controller
/// against a fake API server over HTTPS.
@Suite("pod discovery: pods as the instance table")
struct PodDiscoveryUnitTests {
    static func pod(
        _ name: String, role: String?, ip: String?, phase: String = "Running", deleting: Bool = false,
        annotations: [String: String] = [:], npus: String? = nil
    ) -> JSON {
        var labels: JSON.Object = ["app": .string("demo")]
        if let role { labels["mindie-ms/role"] = .string(role) }
        var meta: JSON.Object = [
            "name": .string(name), "labels": .object(labels), "annotations": .object(JSON.Object(annotations.mapValues { .string($0) })),
        ]
        if deleting { meta["deletionTimestamp"] = .string("2026-01-01T00:00:00Z") }
        var status: JSON.Object = ["phase": .string(phase), "hostIP": .string("192.168.0.9")]
        if let ip { status["podIP"] = .string(ip) }
        var container: JSON.Object = ["name": .string("c")]
        if let npus { container["resources"] = .object(["limits": .object(["huawei.com/Ascend910": .string(npus)])]) }
        return .object([
            "metadata": .object(meta), "spec": .object(["containers": .array([.object(container)])]), "status": .object(status),
        ])
    }

    static func list(_ pods: [JSON]) -> JSON { .object(["kind": .string("PodList"), "items": .array(pods)]) }

    @Test("Running pods with an IP and a known role are the table; pending, IP-less, terminating and unlabelled pods are not")
    func filters() throws {
        let pods = [
            Self.pod("demo-decode-b", role: "decode", ip: "10.0.0.4"),
            Self.pod("demo-prefill-z", role: "prefill", ip: "10.0.0.2"),
            Self.pod("demo-decode-a", role: "decode", ip: "10.0.0.3"),
            Self.pod("demo-prefill-new", role: "prefill", ip: nil, phase: "Pending"),
            Self.pod("demo-prefill-noip", role: "prefill", ip: nil),
            Self.pod("demo-decode-old", role: "decode", ip: "10.0.0.9", deleting: true),
            Self.pod("demo-decode-failed", role: "decode", ip: "10.0.0.8", phase: "Failed"),
            Self.pod("demo-other", role: nil, ip: "10.0.0.7"),
            Self.pod("demo-controller", role: "controller", ip: "10.0.0.6"),
            Self.pod("demo-coordinator-b", role: "coordinator", ip: "10.0.0.12"),
            Self.pod("demo-coordinator-a", role: "coordinator", ip: "10.0.0.11"),
        ]
        let (c, skipped) = try PodDiscovery.cluster(
            fromPodList: Self.list(pods), config: .init(), options: .init(deployMode: .pdSeparate))
        // P before D (the deployer's table order), then by pod name; coordinators by pod name.
        #expect(c.instances.map(\.ip) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"])
        #expect(c.coordinators == ["10.0.0.11", "10.0.0.12"])
        #expect(skipped.isEmpty)
        let first = c.instances[0]
        #expect(first.hostID == "192.168.0.9")
        #expect(first.ports == InstancePorts(predict: 1025, mgmt: 1026, metric: 1027, interComm: nil))
        #expect(first.devices == [RankTable.Device(deviceID: 0, deviceIP: "10.0.0.2", deviceLogicalID: 0, rankID: 0)])
    }

    @Test("port annotations override the config's ports; the NPU request sets the device count; single_node has no devices")
    func annotationsAndDevices() throws {
        let pods = [
            Self.pod(
                "p", role: "prefill", ip: "10.0.0.2",
                annotations: ["mindie-ms/mgmt-port": "2026", "mindie-ms/predict-port": "2025", "mindie-ms/inter-comm-port": "2028"],
                npus: "4")
        ]
        let (c, _) = try PodDiscovery.cluster(fromPodList: Self.list(pods), config: .init(), options: .init())
        #expect(c.instances[0].ports == InstancePorts(predict: 2025, mgmt: 2026, metric: 1027, interComm: 2028))
        #expect(c.instances[0].devices.map(\.deviceID) == [0, 1, 2, 3])
        #expect(c.instances[0].key == InstanceKey(ip: "10.0.0.2", mgmtPort: 2026))
        let (single, _) = try PodDiscovery.cluster(
            fromPodList: Self.list(pods), config: .init(), options: .init(deployMode: .singleNode))
        #expect(single.instances[0].devices.isEmpty)
    }

    @Test("a pod with a bad port annotation or a duplicate ip:mgmt_port is left out with a reason; the others stay")
    func badPodsAreSkipped() throws {
        let pods = [
            Self.pod("a", role: "prefill", ip: "10.0.0.2", annotations: ["mindie-ms/mgmt-port": "80"]),
            Self.pod("b", role: "prefill", ip: "10.0.0.3"),
            Self.pod("c", role: "decode", ip: "10.0.0.3"),
            Self.pod("d", role: "decode", ip: "not-an-ip"),
        ]
        let (c, skipped) = try PodDiscovery.cluster(fromPodList: Self.list(pods), config: .init(), options: .init())
        #expect(c.instances.map(\.ip) == ["10.0.0.3"])
        #expect(skipped.map(\.pod) == ["a", "d", "c"])
        #expect(skipped[0].reason.contains("mindie-ms/mgmt-port") && skipped[0].reason.contains("[1024, 65535]"))
        #expect(skipped[2].reason.contains("10.0.0.3:1026"))
        #expect(throws: RankTableError.self) {
            try PodDiscovery.cluster(fromPodList: .object(["kind": .string("Status")]), config: .init(), options: .init())
        }
    }

    @Test("instance_discovery: defaults, every key, and errors naming the key")
    func configKey() throws {
        let d = try loadConfig().instanceDiscovery
        #expect(d == ControllerConfig.InstanceDiscovery())
        #expect(d.source == .rankTable && d.roleLabel == "mindie-ms/role" && d.instanceRoles == ["prefill", "decode"])
        let c = try loadConfig([
            (
                "instance_discovery",
                .object([
                    "source": .string("kubernetes"), "label_selector": .string("app=x"), "role_label": .string("tier"),
                    "instance_roles": .array([.string("p"), .string("d")]), "coordinator_roles": .array([.string("front")]),
                    "namespace": .string("serving"), "timeout_seconds": .int(7),
                ])
            )
        ]).instanceDiscovery
        #expect(c.source == .kubernetes && c.labelSelector == "app=x" && c.roleLabel == "tier")
        #expect(c.instanceRoles == ["p", "d"] && c.coordinatorRoles == ["front"] && c.namespace == "serving" && c.timeoutSeconds == 7)
        let bad = try configError([("instance_discovery", .object(["source": .string("etcd")]))])
        #expect(bad?.key == "instance_discovery.source")
        #expect(bad?.description.contains("kubernetes") == true)
        #expect(try configError([("instance_discovery", .object(["instance_roles": .array([])]))])?.key == "instance_discovery.instance_roles")
        #expect(try configError([("instance_discovery", .object(["timeout_seconds": .int(0)]))])?.key == "instance_discovery.timeout_seconds")
    }

    @Test("kubernetes discovery without KUBERNETES_SERVICE_HOST or the ServiceAccount files refuses to start, naming what is missing")
    func startErrors() throws {
        let config = try loadConfig([("instance_discovery", .object(["source": .string("kubernetes")]))])
        #expect {
            _ = try KubernetesPodSource(config: config, environment: [:])
        } throws: { ($0 as? ControllerStartError)?.description.contains("KUBERNETES_SERVICE_HOST") == true }
        let dir = NSTemporaryDirectory() + "sa-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = ["KUBERNETES_SERVICE_HOST": "127.0.0.1", "MINDIE_MS_SERVICEACCOUNT_DIR": dir]
        #expect {
            _ = try KubernetesPodSource(config: config, environment: env)
        } throws: { ($0 as? ControllerStartError)?.description.contains("\(dir)/ca.crt") == true }
    }
}

/// A Controller discovering fake MindIE Servers (one loopback address each) through a fake API server over HTTPS.
final class PodClusterFixture: @unchecked Sendable {
    let dir: String
    let pki: URL
    let api: FakePodAPI
    let coordinator: FakeCoordinator
    /// Fake servers by pod name.
    var servers: [String: FakeInstance] = [:]
    var service: ControllerService?
    var running: Task<Void, Never>?
    /// The running Controller's clock (a new one for each start; `eventually` moves it).
    var clock = ManualClock()
    static let token = "pod-discovery-token"

    init() throws {
        dir = NSTemporaryDirectory() + "ctlpods-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/sa", withIntermediateDirectories: true)
        pki = try makeTestPKI()
        try FileManager.default.copyItem(atPath: pki.appendingPathComponent("ca.pem").path, toPath: dir + "/sa/ca.crt")
        try Data((Self.token + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/sa/token"))
        try Data("mindie".utf8).write(to: URL(fileURLWithPath: dir + "/sa/namespace"))
        api = try FakePodAPI(pki: pki, token: Self.token)
        coordinator = try FakeCoordinator()
        api.put("demo-coordinator-0", role: "coordinator", ip: "127.0.0.1")
        // a pod of another cluster in the same namespace: the selector keeps it out
        api.put("other-prefill-0", role: "prefill", ip: "127.0.9.9", app: "other")
    }

    /// Starts a fake server on `ip` (ephemeral port) and registers its pod as Running.
    func addPod(_ name: String, role: String, ip: String) throws {
        let s = try FakeInstance(host: ip)
        servers[name] = s
        api.put(name, role: role, ip: ip, mgmtPort: s.port)
    }

    /// The pod's server dies and its pod object goes (kubelet reports it, the ReplicaSet deletes it).
    func killPod(_ name: String) {
        servers.removeValue(forKey: name)?.stop()
        api.delete(name)
    }

    func config() throws -> ControllerConfig {
        try loadConfig([
            ("deploy_mode", .string("pd_separate")),
            ("default_p_rate", 1), ("default_d_rate", 1),
            ("cluster_synchronization_seconds", 1), ("rank_table_detecting_seconds", 1),
            ("http_timeout_seconds", 1), ("http_retries", 0),
            ("mindie_ms_coordinator_port", .int(Int64(coordinator.port))),
            ("global_rank_table_file_path", .string(dir + "/no-such-table.json")),
            ("process_manager.file_path", .string(dir + "/controller_process_status.json")),
            ("cluster_status.file_path", .string(dir + "/cluster_status_output.json")),
            ("digs_model_config_path", .string(Paths.conf.appendingPathComponent("model_config/llama2-70B.json").path)),
            ("digs_machine_config_path", .string(Paths.conf.appendingPathComponent("machine_config/800IA2.json").path)),
            ("instance_discovery", .object(["source": .string("kubernetes"), "label_selector": .string("app=demo")])),
        ])
    }

    var environment: [String: String] {
        [
            "MINDIE_CHECK_INPUTFILES_PERMISSION": "0", "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": String(api.port), "MINDIE_MS_SERVICEACCOUNT_DIR": dir + "/sa",
        ]
    }

    func startController() async throws {
        clock = ManualClock()
        let s = try ControllerService(
            config: try config(), environment: environment, logger: quietLogger, clock: clock, portOverrides: (0, 0),
            metrics: .isolated())
        try s.listen()
        running = Task { await s.run() }
        service = s
    }

    func stopController() async {
        running?.cancel()
        await running?.value
        running = nil
        service = nil
    }

    /// Waits until `condition` holds, moving the Controller's clock whenever all its work waits on the clock.
    func eventually(_ seconds: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
        guard let board = service?.runtime.board else { return try await condition() }
        return try await clock.drive(board, seconds: seconds, condition)
    }

    /// id → (role, peers) of the last refresh.
    var published: [Int: (role: Int, peers: [Int])] { coordinator.latestInstances }

    /// The refresh's ids with their instance IPs.
    var publishedIPs: [Int: String] {
        guard case .array(let list)? = coordinator.latest?["instances"] else { return [:] }
        var out: [Int: String] = [:]
        for i in list { if case .int(let id)? = i["id"], case .string(let ip)? = i["ip"] { out[Int(id)] = ip } }
        return out
    }

    func tearDown() async {
        await stopController()
        for s in servers.values { s.stop() }
        api.stop()
        coordinator.stop()
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.removeItem(at: pki)
    }
}

@Suite("pod discovery: the Controller against a fake API server", .serialized, .timeLimit(.minutes(3)))
struct PodDiscoveryRuntimeTests {
    @Test("pods appear, get IPs, are published 1P1D; a D pod dies and is replaced (new name, new IP): scale-in, then scale-out")
    func appearDieReplace() async throws {
        let f = try PodClusterFixture()
        // Scheduled but not yet running: no IP, not in the table.
        f.api.put("demo-prefill-a", role: "prefill", ip: nil)
        f.api.put("demo-decode-a", role: "decode", ip: nil)
        try await f.startController()
        #expect(await f.eventually { f.api.log.filter { $0 == "/api/v1/namespaces/mindie/pods?labelSelector=app%3Ddemo" }.count >= 3 })
        #expect(f.coordinator.refreshes.withLock { $0.isEmpty })
        #expect(f.servers.isEmpty)
        try f.addPod("demo-prefill-a", role: "prefill", ip: "127.0.3.1")
        try f.addPod("demo-decode-a", role: "decode", ip: "127.0.3.2")
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1] })
        #expect(f.published[0]?.role == 80 && f.published[1]?.role == 68)
        #expect(f.publishedIPs == [0: "127.0.3.1", 1: "127.0.3.2"])
        #expect(f.servers["demo-prefill-a"]!.posts.first == .init(role: "prefill", localID: 0, peers: [1]))

        // The D pod dies: out of the refresh at once, P re-posted without peers.
        f.killPod("demo-decode-a")
        #expect(await f.eventually { f.published.isEmpty && f.coordinator.latest != nil })
        #expect(await f.eventually { f.servers["demo-prefill-a"]!.posts.last?.peers == [] })
        // Rescheduled: a new pod, new name, new IP. A new identity (id 2) that becomes the D.
        try f.addPod("demo-decode-b", role: "decode", ip: "127.0.3.3")
        #expect(await f.eventually { f.published.keys.sorted() == [0, 2] })
        #expect(f.published[2]?.role == 68 && f.published[0]?.peers == [2])
        #expect(f.publishedIPs[2] == "127.0.3.3")
        #expect(f.servers["demo-decode-b"]!.posts.last == .init(role: "decode", localID: 2, peers: [0]))

        // A terminating pod (deletionTimestamp set, still has its IP) leaves the table before it is gone.
        f.api.terminate("demo-prefill-a")
        #expect(await f.eventually { f.published.isEmpty })
        await f.tearDown()
    }

    @Test("the API server fails (410 Gone, 500, down): the instance set is kept; when it answers again changes are followed")
    func apiServerBreaksAndResumes() async throws {
        let f = try PodClusterFixture()
        try f.addPod("demo-prefill-a", role: "prefill", ip: "127.0.4.1")
        try f.addPod("demo-decode-a", role: "decode", ip: "127.0.4.2")
        try await f.startController()
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1] })
        for status in [410, 500] {
            f.api.fail(status)
            let before = f.api.log.count
            #expect(await f.eventually { f.api.log.count >= before + 3 })  // several failed passes
            #expect(f.published.keys.sorted() == [0, 1])
            f.api.fail(nil)
        }
        // Down: connections refused for several passes; the refresh keeps both.
        f.api.stop()
        let refreshesBefore = f.coordinator.refreshes.withLock { $0.count }
        #expect(await f.eventually { f.coordinator.refreshes.withLock { $0.count } >= refreshesBefore + 3 })
        #expect(f.published.keys.sorted() == [0, 1])
        // While it was down the D was replaced; the restarted API server shows the new pod.
        f.killPod("demo-decode-a")
        try f.addPod("demo-decode-b", role: "decode", ip: "127.0.4.3")
        try f.api.start()
        #expect(await f.eventually { f.published.keys.sorted() == [0, 2] })
        #expect(f.publishedIPs[2] == "127.0.4.3" && f.published[2]?.role == 68)
        await f.tearDown()
    }

    @Test("a restarted Controller gives every pod the id and role it had (pods keep their IPs), posting nothing new")
    func sameIDsAfterControllerRestart() async throws {
        let f = try PodClusterFixture()
        try f.addPod("demo-prefill-a", role: "prefill", ip: "127.0.5.1")
        try f.addPod("demo-prefill-b", role: "prefill", ip: "127.0.5.2")
        try f.addPod("demo-decode-a", role: "decode", ip: "127.0.5.3")
        try f.addPod("demo-decode-b", role: "decode", ip: "127.0.5.4")
        try await f.startController()
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1, 2, 3] })
        let before = f.publishedIPs
        #expect(before == [0: "127.0.5.1", 1: "127.0.5.2", 2: "127.0.5.3", 3: "127.0.5.4"])
        #expect(await f.eventually { FileManager.default.fileExists(atPath: f.dir + "/controller_process_status.json") })
        await f.stopController()
        let posts = f.servers.mapValues(\.posts.count)
        f.coordinator.refreshes.withLock { $0 = [] }
        try await f.startController()
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1, 2, 3] })
        #expect(f.publishedIPs == before)
        #expect(f.published.keys.sorted().map { f.published[$0]!.role } == [80, 80, 68, 68])
        #expect(f.servers.mapValues(\.posts.count) == posts)
        // A D replaced after the restart is a new id; the remaining ids stay.
        f.killPod("demo-decode-b")
        try f.addPod("demo-decode-c", role: "decode", ip: "127.0.5.5")
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1, 2, 4] })
        #expect(f.publishedIPs[4] == "127.0.5.5" && f.published[4]?.role == 68)
        await f.tearDown()
    }

    @Test("the API server is down when the Controller restarts: it waits for the list and recovers, re-deciding nothing")
    func restartWhileAPIServerIsDown() async throws {
        let f = try PodClusterFixture()
        try f.addPod("demo-prefill-a", role: "prefill", ip: "127.0.7.1")
        try f.addPod("demo-decode-a", role: "decode", ip: "127.0.7.2")
        try f.addPod("demo-decode-b", role: "decode", ip: "127.0.7.3")
        try await f.startController()
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1, 2] })
        let roles = f.published.keys.sorted().map { f.published[$0]!.role }
        #expect(roles == [80, 80, 68])  // 1:1 over 3 instances (§6.2)
        #expect(await f.eventually { FileManager.default.fileExists(atPath: f.dir + "/controller_process_status.json") })
        await f.stopController()
        let posts = f.servers.mapValues(\.posts.count)
        f.api.stop()
        f.coordinator.refreshes.withLock { $0 = [] }
        try await f.startController()
        #expect(await f.eventually(3) { !f.coordinator.refreshes.withLock { $0.isEmpty } } == false)
        try f.api.start()
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1, 2] })
        #expect(f.published.keys.sorted().map { f.published[$0]!.role } == roles)
        #expect(f.servers.mapValues(\.posts.count) == posts)
        await f.tearDown()
    }

    @Test("a wrong token gets 401 from the API server: nothing is published and the Controller keeps trying")
    func unauthorized() async throws {
        let f = try PodClusterFixture()
        try f.addPod("demo-prefill-a", role: "prefill", ip: "127.0.6.1")
        try f.addPod("demo-decode-a", role: "decode", ip: "127.0.6.2")
        try Data("wrong\n".utf8).write(to: URL(fileURLWithPath: f.dir + "/sa/token"))
        try await f.startController()
        #expect(await f.eventually { f.api.log.count >= 2 })
        #expect(f.published.isEmpty)
        // kubelet rotates the token file: the next pass reads it and works.
        try Data((PodClusterFixture.token + "\n").utf8).write(to: URL(fileURLWithPath: f.dir + "/sa/token"))
        #expect(await f.eventually { f.published.keys.sorted() == [0, 1] })
        await f.tearDown()
    }
}
