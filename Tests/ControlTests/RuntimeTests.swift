import Foundation
import MSCore
import Testing

@testable import Control

/// The runtime against fake instances and a fake coordinator over real HTTP (127.0.0.1, port 0).
@Suite("controller runtime over HTTP (fake instances and coordinator)", .serialized, .timeLimit(.minutes(2)))
struct RuntimeTests {
    @Test("4 instances at 1:1 get roles posted and are pushed as 2P2D with correct peers")
    func twoPTwoD() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        let inst = f.coordinator.latestInstances
        #expect(inst[0]?.role == 80 && inst[1]?.role == 80)
        #expect(inst[2]?.role == 68 && inst[3]?.role == 68)
        #expect(inst[0]?.peers == [2, 3] && inst[1]?.peers == [2, 3])
        #expect(inst[2]?.peers == [0, 1] && inst[3]?.peers == [0, 1])
        // The role posts: P with both D as peers, D with both P.
        #expect(f.instances[0].posts.first == .init(role: "prefill", localID: 0, peers: [2, 3]))
        #expect(f.instances[1].posts.first == .init(role: "prefill", localID: 1, peers: [2, 3]))
        #expect(f.instances[2].posts.first == .init(role: "decode", localID: 2, peers: [0, 1]))
        #expect(f.instances[3].posts.first == .init(role: "decode", localID: 3, peers: [0, 1]))
        // Refresh wire format (docs/wire/coordinator.md §3.1).
        let first = f.coordinator.latest?["instances"]?.arrayFirst
        #expect(first?["port"] == .string("20000") && first?["metric_port"] == .string("21000"))
        #expect(first?["inter_comm_port"] == .string(""))
        #expect(first?["static_info"]?["total_slots_num"] == .int(200) && first?["static_info"]?["total_block_num"] == .int(1024))
        #expect(first?["model_name"] == .string("llama2-7b") && first?["ip"] == .string("127.0.0.1"))
        #expect(first?["static_info"]?["block_size"] == .int(128) && first?["static_info"]?["label"] == .int(2))
        // Readiness and the output files (0640, JSON).
        let ready = try await f.request("GET", "/v1/readiness")
        #expect(ready.status == 200)
        #expect(await f.eventually { FileManager.default.fileExists(atPath: f.processStatePath) })
        let attrs = try FileManager.default.attributesOfItem(atPath: f.processStatePath)
        #expect((attrs[.posixPermissions] as? Int) == 0o640)
        let ps = try ProcessStateFile(data: Data(contentsOf: URL(fileURLWithPath: f.processStatePath)))
        #expect(ps.servers.map(\.role) == [.prefill, .prefill, .decode, .decode])
        // the status file is rewritten every sync period; the Coordinator's health in it follows its next probe
        let healthy = await f.eventually {
            let cs = try? JSON.parse(Data(contentsOf: URL(fileURLWithPath: f.clusterStatusPath)))
            return cs?["coordinator"]?.arrayFirst?["is_healthy"] == .bool(true)
        }
        #expect(healthy)
        await f.tearDown()
    }

    @Test("/metrics: leader, instances by role and state, posts, pushes, passes and decisions, every family with help")
    func metrics() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        let posts = Double(f.instances.map(\.posts.count).reduce(0, +))
        #expect(posts >= 4)
        var text = ""
        // the counters are bumped when an answer is taken in, a moment after the fake saw the call
        #expect(await f.eventually {
            text = (try? await f.request("GET", "/metrics"))?.text ?? ""
            return sample(text, #"mindie_controller_role_posts_total{result="ok"}"#) == posts
        })
        let r = try await f.request("GET", "/metrics")
        #expect(r.status == 200 && r.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(sample(text, "mindie_controller_leader") == 1 && sample(text, "mindie_controller_term") == 0)
        #expect(sample(text, #"mindie_controller_instances{role="prefill",state="published"}"#) == 2)
        #expect(sample(text, #"mindie_controller_instances{role="decode",state="published"}"#) == 2)
        #expect(sample(text, #"mindie_controller_instances{role="none",state="probing"}"#) == 0)
        #expect(sample(text, "mindie_controller_published_instances") == 4)
        #expect(sample(text, #"mindie_controller_role_posts_total{result="failed"}"#) == 0)
        #expect((sample(text, #"mindie_controller_refresh_pushes_total{result="ok"}"#) ?? 0) >= 1)
        #expect((sample(text, #"mindie_controller_discovery_passes_total{source="rank_table",result="ok"}"#) ?? 0) >= 1)
        #expect(sample(text, #"mindie_controller_discovery_passes_total{source="kubernetes",result="ok"}"#) == 0)
        #expect(sample(text, #"mindie_controller_role_decisions_total{kind="initial"}"#) == 1)
        #expect(sample(text, #"mindie_controller_probe_failures_total{probe="status",reason="no_reply"}"#) == 0)
        #expect(sample(text, "mindie_controller_effects_running") != nil && sample(text, "mindie_controller_effects_queued") != nil)
        let families = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(families.count == 11)
        for name in families { #expect(text.contains("# HELP \(name) "), "\(name) has no help") }
        // A stopped instance: its status probes fail with no reply.
        f.instances[3].stop()
        #expect(await f.waitForRefresh([0, 1, 2]))
        text = try await f.request("GET", "/metrics").text
        #expect((sample(text, #"mindie_controller_probe_failures_total{probe="status",reason="no_reply"}"#) ?? 0) >= 1)
        #expect(sample(text, #"mindie_controller_instances{role="decode",state="unhealthy"}"#) == 1)
        let wrong = try await f.request("POST", "/metrics")
        #expect(wrong.status == 405 && wrong.headers["allow"] == "GET")
        await f.tearDown()
    }

    @Test("an instance that stops answering leaves the refresh; restarted without a role it gets its id and role back")
    func stopsAnsweringAndReturns() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        let port = f.instances[3].port
        f.instances[3].stop()
        #expect(await f.waitForRefresh([0, 1, 2]))
        #expect(f.coordinator.latestInstances[0]?.peers == [2])
        // The same server comes back on the same port with no role (a restarted process).
        f.instances[3] = try FakeInstance(port: port)
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        #expect(f.instances[3].posts.last == .init(role: "decode", localID: 3, peers: [0, 1]))
        #expect(f.coordinator.latestInstances[3]?.role == 68)
        #expect(f.coordinator.latestInstances[0]?.peers == [2, 3])
        await f.tearDown()
    }

    @Test("an instance removed from the rank table leaves at once and gets its id and role back when re-added (DECISIONS 17)")
    func rankTableRemovalAndReturn() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        try f.writeRankTable([0, 2, 3])
        #expect(await f.waitForRefresh([0, 2, 3]))
        // The D servers were re-posted with the remaining P only.
        #expect(await f.eventually { f.instances[2].posts.last?.peers == [0] })
        try f.writeRankTable()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        #expect(f.coordinator.latestInstances[1]?.role == 80)
        #expect(f.instances[1].posts.last == .init(role: "prefill", localID: 1, peers: [2, 3]))
        #expect(await f.eventually { f.instances[2].posts.last?.peers == [0, 1] })
        await f.tearDown()
    }

    @Test("a restarted controller recovers ids and roles from the process state instead of re-deciding")
    func restartRecovery() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        #expect(await f.eventually { FileManager.default.fileExists(atPath: f.processStatePath) })
        await f.stopController()
        let postsBefore = f.instances.map(\.posts.count)
        // The servers keep running with their roles; a new refresh must come from the new controller.
        f.coordinator.refreshes.withLock { $0 = [] }
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        let inst = f.coordinator.latestInstances
        #expect(inst[0]?.role == 80 && inst[1]?.role == 80 && inst[2]?.role == 68 && inst[3]?.role == 68)
        #expect(f.instances.map(\.posts.count) == postsBefore)
        await f.tearDown()
    }

    @Test("an instance that left the table before a controller restart gets its id and role back afterwards")
    func departedAcrossRestart() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        try f.writeRankTable([0, 1, 2])
        #expect(await f.waitForRefresh([0, 1, 2]))
        await f.stopController()
        try f.writeRankTable()
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        #expect(f.coordinator.latestInstances[3]?.role == 68)
        #expect(f.instances[3].posts.last == .init(role: "decode", localID: 3, peers: [0, 1]))
        await f.tearDown()
    }

    @Test("terminate-service stops the instance, releases it and drops it from the refresh")
    func terminateService() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        let r = try await f.request("POST", "/v1/terminate-service", body: #"{"ip":"127.0.0.1","port":"20003"}"#, listener: 1)
        #expect(r.status == 200)
        #expect(f.instances[3].stops == 1)
        #expect(await f.waitForRefresh([0, 1, 2]))
        let unknown = try await f.request("POST", "/v1/terminate-service", body: #"{"ip":"127.0.0.1","port":"1999"}"#, listener: 1)
        #expect(unknown.status == 404)
        #expect(unknown.text.contains("no instance"))
        await f.tearDown()
    }

    @Test("a P→D switch goes offline, drains, asks query_tasks, re-posts and ends as 1P3D (§6.5)")
    func roleSwitch() async throws {
        let f = try ClusterFixture(instances: 4)
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1, 2, 3]))
        await f.service!.runtime.apply(.switchRole(id: 1, to: .decode))
        #expect(await f.eventually { f.coordinator.latestInstances[1]?.role == 68 && f.coordinator.latestInstances.count == 4 })
        let calls = f.coordinator.calls.withLock { $0 }
        #expect(calls.first == #"POST /v1/instances/offline {"ids":[1]}"#)
        #expect(calls.contains("GET /v1/instances/tasks?id=1 "))
        #expect(calls.contains(#"POST /v1/instances/query_tasks {"p_id":1,"d_id":2,"role_change_type":0}"#))
        #expect(calls.contains(#"POST /v1/instances/query_tasks {"p_id":1,"d_id":3,"role_change_type":0}"#))
        #expect(f.instances[1].posts.last == .init(role: "decode", localID: 1, peers: [0]))
        #expect(await f.eventually { f.coordinator.latestInstances[0]?.peers == [1, 2, 3] })
        #expect(f.coordinator.latestInstances[3]?.peers == [0])
        await f.tearDown()
    }

    @Test("with an injected clock: the periodic re-decision reads coordinator_info and switches 2P1D to 1P2D")
    func periodicDecisionWithManualClock() async throws {
        let f = try ClusterFixture(instances: 3)
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let list = f.instances.indices.map { i in
            TableServer(
                ip: "127.0.0.1", hostID: "127.0.0.1", mgmtPort: String(f.instances[i].port),
                predictPort: String(20000 + i), devices: 8)
        }
        try AtomicFile.write(rankTableJSON(servers: list).data, to: f.rankTablePath)
        let sim = RoleModelTests.vectors[0].simulator
        var settings = ControllerCore.Settings(policy: .automatic(sim, inputLength: 3000, outputLength: 200))
        settings.autoSwitching = true
        settings.simulator = sim
        var options = ControllerRuntime.Options(rankTablePath: f.rankTablePath)
        options.syncInterval = 1
        options.rankTableInterval = 1
        options.roleDecisionInterval = 3600
        let clock = ManualClock()
        let runtime = ControllerRuntime(
            options: options, settings: settings,
            runner: HTTPEffectRunner(configuration: .init(timeoutSeconds: 2, retries: 0, coordinatorPort: f.coordinator.port)),
            clock: clock, logger: quietLogger)
        await runtime.start()
        func drive(_ cond: () -> Bool) async -> Bool { await clock.drive(runtime.board, seconds: 20, cond) }
        func roles() -> [Int] { f.coordinator.latestInstances.keys.sorted().map { f.coordinator.latestInstances[$0]!.role } }
        #expect(await drive { roles() == [80, 80, 68] })
        f.coordinator.info.withLock {
            $0 = #"{"schedule_info":[{"id":0,"allocated_slots":9,"allocated_blocks":0},{"id":1,"allocated_slots":3,"allocated_blocks":0}],"request_length_info":{"input_len":1024,"output_len":1024}}"#
        }
        clock.advance(3600)
        #expect(await drive { roles() == [80, 68, 68] })
        let calls = f.coordinator.calls.withLock { $0 }
        #expect(Array(calls.prefix(2)) == ["GET /v1/coordinator_info ", #"POST /v1/instances/offline {"ids":[1]}"#])
        #expect(f.instances[1].posts.last == .init(role: "decode", localID: 1, peers: [0]))
        await runtime.stop()
        for i in f.instances { i.stop() }
        f.coordinator.stop()
    }

    @Test("single_node: every healthy instance is published with role U, no role is posted")
    func singleNode() async throws {
        let f = try ClusterFixture(instances: 2, mode: "single_node")
        try await f.startController()
        #expect(await f.waitForRefresh([0, 1]))
        #expect(f.coordinator.latestInstances[0]?.role == 85 && f.coordinator.latestInstances[1]?.role == 85)
        #expect(f.instances.allSatisfy { $0.posts.isEmpty })
        // The fakes report RoleUnknown / none without a role; the totals still come from their answers.
        #expect(await f.eventually {
            f.coordinator.latest?["instances"]?.arrayFirst?["static_info"]?["total_slots_num"] == .int(200)
        })
        f.instances[1].stop()
        #expect(await f.waitForRefresh([0]))
        await f.tearDown()
    }
}

extension JSON {
    var arrayFirst: JSON? {
        if case .array(let a) = self { return a.first }
        return nil
    }
}

/// The value of the sample `series` (name with its labels as rendered) in Prometheus text.
func sample(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}
