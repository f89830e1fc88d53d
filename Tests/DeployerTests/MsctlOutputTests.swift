import Foundation
import Synchronization
import Testing
import TestSupport
@testable import Control
import MSCore

/// `msctl get`/`list` for people (tables, `-o json|yaml`) and `create|update --wait` (issue 16).
@Suite struct MsctlOutputTests {
    let now = MsctlClient.parseTimestamp("2026-01-01T01:05:00Z")!

    let getReply = #"""
        {"data":{"server_name":"mindie-server","server_type":"mindie_single_node","namespace":"mindie","replicas":2,"ready_replicas":1,
         "status":"Progressing","reason":"pod a: container c: ContainerCreating","created":"2026-01-01T00:00:00Z","missing_objects":[],
         "instances_status":[{"pod_name":"mindie-server-x-0","phase":"Running","readiness":true,"liveness":true},
                             {"pod_name":"mindie-server-x-1","phase":"Pending","readiness":false,"liveness":false,"message":"This server is not Running now."}],
         "model_info":null},"message":"success","status":"0"}
        """#

    @Test func getPrintsATableLikeKubectl() {
        let out = MsctlClient.format(Array(getReply.utf8), as: .table, list: false, now: now)
        #expect(out == """
            NAME            TYPE          READY   STATUS        AGE
            mindie-server   single_node   1/2     Progressing   65m
            Reason: pod a: container c: ContainerCreating

            POD                 ROLE   PHASE     READY   LIVE    MESSAGE
            mindie-server-x-0   -      Running   true    true
            mindie-server-x-1   -      Pending   false   false   This server is not Running now.

            """, "\(out)")
    }

    @Test func listPrintsOneRowPerServer() {
        let reply = #"""
            {"data":[{"server_name":"a","server_type":"mindie_pd_cluster","namespace":"mindie","replicas":5,"ready_replicas":5,"status":"Ready","created":"2026-01-01T01:04:15Z"},
                     {"server_name":"bb","server_type":"mindie_single_node","namespace":"lab","replicas":2,"ready_replicas":0,"status":"Failed"}],
             "message":"success","status":"0"}
            """#
        #expect(MsctlClient.format(Array(reply.utf8), as: .table, list: true, now: now) == """
            NAME   TYPE          NAMESPACE   READY   STATUS   AGE
            a      pd_cluster    mindie      5/5     Ready    45s
            bb     single_node   lab         0/2     Failed   <unknown>

            """)
        #expect(MsctlClient.format(Array(#"{"data":[],"message":"success","status":"0"}"#.utf8), as: .table, list: true) == "No infer servers.\n")
    }

    @Test func jsonIsTheAPIReplyAsBeforeAndYAMLIsTheSameTree() throws {
        let body = Array(getReply.utf8)
        #expect(MsctlClient.format(body, as: .json, list: false) == MsctlClient.format(body))
        let yaml = MsctlClient.format(body, as: .yaml, list: false)
        #expect(yaml.hasPrefix("data:\n") && yaml.contains("  ready_replicas: 1\n") && yaml.contains("status: \"0\"\n"), "\(yaml)")
        // a refusal is printed as it came, whatever -o says
        let refusal = Array(#"{"message":"Cannot find the resource /v1/servers/x","status":"1"}"#.utf8)
        #expect(MsctlClient.format(refusal, as: .table, list: false) == MsctlClient.format(refusal))
    }

    static let ages: [(Double, String)] = [(5, "5s"), (119, "119s"), (200, "3m20s"), (600, "10m"), (12_000, "3h20m"), (72_000, "20h"),
                                           (190_800, "2d5h"), (2_592_000, "30d"), (69_120_000, "2y"), (-3, "0s")]

    @Test func agesAreKubectls() {
        for (seconds, text) in Self.ages { #expect(MsctlClient.humanAge(seconds) == text, "\(seconds)") }
    }

    /// `-o` parsing and the default table through the built binary (usage errors exit 2 and name the value).
    @Test func outputOptionOfTheBinary() async throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("msctl").path
        let msctl = try #require(FileManager.default.isExecutableFile(atPath: bin) ? bin : nil, "msctl binary not built (\(bin))")
        let dir = tempDir("msctl-o")
        let env = ["HOME": dir.path, "PATH": "/usr/bin:/bin"]
        var r = try await runOffPool(msctl, ["get", "infer_server", "-n", "a", "-o", "xml"], environment: env)
        #expect(r.status == 2 && r.stderr.contains("xml") && r.stderr.contains("table"), "\(r.stderr)")
        r = try await runOffPool(msctl, ["list", "infer_server", "-o", "wide"], environment: env)
        #expect(r.status == 2 && r.stderr.contains("wide"), "\(r.stderr)")
        r = try await runOffPool(msctl, ["create", "infer_server", "-f", "x.json", "--timeout", "5"], environment: env)
        #expect(r.status == 2 && r.stderr.contains("--timeout needs --wait"), "\(r.stderr)")

        // a real ms_deployer stand-in: the default output is the table, -o json the API's reply
        let h = try Harness()
        defer { h.stop() }
        #expect(await h.msctl(.create(file: h.specFile("s.json", specJSON(name: "tabled", ["mindie_server_config.management_port": deadPort()])))).exitCode == 0)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(".mindie_ms"), withIntermediateDirectories: true)
        write(try String(contentsOfFile: h.msctlConfig, encoding: .utf8), to: dir.appendingPathComponent(".mindie_ms/msctl.json"))
        r = try await runOffPool(msctl, ["get", "infer_server", "-n", "tabled"], environment: env)
        #expect(r.status == 0 && r.stdout.hasPrefix("NAME     TYPE          READY   STATUS   AGE\ntabled   single_node   2/2     Ready    "), "\(r.stdout)\(r.stderr)")
        r = try await runOffPool(msctl, ["get", "infer_server", "-n", "tabled", "-o", "json"], environment: env)
        let doc = try JSON.parse(Data(r.stdout.utf8))
        #expect(r.status == 0 && doc["data"]?["status"] == js("Ready") && doc["data"]?["ready_replicas"] == ji(2))
        r = try await runOffPool(msctl, ["list", "infer_server"], environment: env)
        #expect(r.status == 0 && r.stdout.hasPrefix("NAME     TYPE          NAMESPACE   READY   STATUS   AGE\ntabled   single_node   mindie      2/2     Ready"), "\(r.stdout)")
    }
}

final class Lines: Sendable {
    let lines = Mutex<[String]>([])
    func add(_ l: String) { lines.withLock { $0.append(l) } }
    var all: [String] { lines.withLock { $0 } }
}

/// `create --wait` against ms_deployer (its real HTTP handler over mutual TLS) and the fake kube-apiserver, whose
/// pods stay in a container waiting reason until the test starts them.
@Suite(.serialized, .timeLimit(.minutes(2))) struct MsctlWaitTests {
    let fast = MsctlClient.WaitOptions(timeoutSeconds: 60, intervalMilliseconds: 50)

    @Test func createWaitsUntilEveryPodIsReady() async throws {
        let h = try Harness()
        defer { h.stop() }
        h.fake.state.withLock { $0.podsWaiting["slow"] = "ContainerCreating" }
        let file = h.specFile("s.json", specJSON(name: "slow", ["mindie_server_config.management_port": deadPort()]))
        let lines = Lines()
        async let outcome = MsctlClient.runAndWait(.create(file: file), wait: fast, environment: h.env, configPath: h.msctlConfig) { lines.add($0) }
        // the progress line shows the waiting reason before anything is ready
        #expect(await eventually(within: 30) { lines.all.contains { $0.hasPrefix("slow: 0/2 ready (Progressing: pod slow-") && $0.contains("ContainerCreating") } },
                "\(lines.all)")
        h.fake.startPods(of: "slow", "mindie")
        let o = await outcome
        #expect(o.exitCode == 0, "\(o) \(lines.all)")
        #expect(lines.all.first == "slow: Creating the server!")
        #expect(lines.all.last == "slow: 2/2 ready")
        // a line per change, not per poll
        #expect(lines.all.count == 3, "\(lines.all)")
    }

    @Test func aPodThatCannotStartFailsTheWaitWithItsReason() async throws {
        let h = try Harness()
        defer { h.stop() }
        h.fake.state.withLock { $0.podsWaiting["broken"] = "ImagePullBackOff" }
        let file = h.specFile("s.json", specJSON(name: "broken", ["mindie_server_config.management_port": deadPort(), "image": "mindie:nope"]))
        let o = await MsctlClient.runAndWait(.create(file: file), wait: fast, environment: h.env, configPath: h.msctlConfig) { _ in }
        #expect(o.exitCode == 1)
        #expect(o.stderr.hasPrefix("msctl: broken failed: pod broken-") && o.stderr.contains("ImagePullBackOff: fake kubelet: ImagePullBackOff") && o.stderr.contains("(0/2 ready)"), "\(o)")
        // get says the same
        let data = parsed(await h.msctl(.get(name: "broken")))["data"]
        #expect(data?["status"] == js("Failed") && data?["reason"]?.stringValue?.contains("ImagePullBackOff") == true)
    }

    @Test func aServerThatStaysPendingTimesOutWithTheLastState() async throws {
        let h = try Harness()
        defer { h.stop() }
        #expect(await h.msctl(.create(file: h.specFile("s.json", specJSON(name: "later", ["mindie_server_config.management_port": deadPort()])))).exitCode == 0)
        // an update whose new pods never start
        h.fake.state.withLock { $0.podsWaiting["later"] = "ContainerCreating" }
        let upd = h.specFile("u.json", #"{"server_name":"later","image":"mindie:v2"}"#)
        let o = await MsctlClient.runAndWait(.update(file: upd), wait: MsctlClient.WaitOptions(timeoutSeconds: 1, intervalMilliseconds: 50),
                                             environment: h.env, configPath: h.msctlConfig) { _ in }
        #expect(o.exitCode == 1)
        #expect(o.stderr.hasPrefix("msctl: later not ready after 1 s: 0/2 ready (Progressing: pod later-") && o.stderr.contains("ContainerCreating"), "\(o)")
        // a create refused by the Deployer is reported as without --wait
        let again = await MsctlClient.runAndWait(.create(file: h.specFile("s.json", specJSON(name: "later"))), wait: fast,
                                                 environment: h.env, configPath: h.msctlConfig) { _ in }
        #expect(again.exitCode == 1 && parsed(again)["message"] == js("server with same name is already loaded"))
    }
}
