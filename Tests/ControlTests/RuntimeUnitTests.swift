import Foundation
import MSCore
import Testing

@testable import Control

@Suite("controller runtime parts: recovery, release, output files, effect runner")
struct RuntimeUnitTests {
    /// A 2P2D state from the pure harness, every node Ready and linked.
    func liveState() throws -> Harness {
        var h = Harness(servers: 4)
        _ = h.settle(try h.pass())
        h.allReady()
        return h
    }

    func statuses(_ h: Harness, roles: [InstanceRole]) -> [InstanceKey: ServerStatus] {
        var out: [InstanceKey: ServerStatus] = [:]
        for (id, role) in roles.enumerated() {
            let n = h.state.nodes[id]!
            out[n.key] = ServerStatus(roleState: .ready, currentRole: role, activePeers: n.peers)
        }
        return out
    }

    @Test("totals come from the first poll reporting the assigned role, Switching included")
    func totalsFromSwitching() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        for id in [0, 1] { h.send(.serverStatus(id: id, .success(h.readyStatus(id, roleState: .switching)))) }
        #expect(h.state.nodes[0]!.totalSlots == 200 && h.state.nodes[0]!.totalBlocks == 1024)
        #expect(h.refresh.instances.map(\.staticInfo.totalSlotsNum) == [200, 200])
    }

    @Test("refresh ports go on the wire as strings; inter_comm_port empty when the table gave none")
    func refreshWire() throws {
        var h = Harness(servers: 2)
        h.table[0].interCommPort = "1030"
        _ = h.settle(try h.pass())
        h.allReady()
        let v = try JSON.parse(h.refresh.jsonData())
        guard case .array(let list)? = v["instances"], list.count == 2 else { Issue.record("no instances"); return }
        #expect(list[0]["port"] == .string("1025") && list[0]["metric_port"] == .string("1027"))
        #expect(list[0]["inter_comm_port"] == .string("1030") && list[1]["inter_comm_port"] == .string(""))
        let back = try JSONDecoder().decode(RefreshPayload.self, from: h.refresh.jsonData())
        #expect(back == h.refresh)
    }

    @Test("recovery keeps ids and roles, and adopts a live role that differs from the record (peers rebuilt)")
    func recoveryAdoptsLiveRoles() throws {
        let h = try liveState()
        let file = try ProcessStateFile(data: ProcessStateFile.encode(h.state))
        let table = h.state.nodes.keys.sorted().map { h.state.nodes[$0]!.instance }
        // Server 1 was switched to D while the controller was down.
        let live = statuses(h, roles: [.prefill, .decode, .decode, .decode])
        #expect(ControllerCore.serversHaveRoles(live))
        let s = ControllerCore.recover(file: file, table: table, statuses: live)
        #expect(s.nodes.keys.sorted() == [0, 1, 2, 3])
        #expect(s.nodes.keys.sorted().map { s.nodes[$0]!.role } == [.prefill, .decode, .decode, .decode])
        #expect(s.groups.first?.prefill == [0] && s.groups.first?.decode == [1, 2, 3])
        #expect(s.nodes[0]!.peers == [1, 2, 3] && s.nodes[2]!.peers == [0])
        #expect(s.registry.nextID == 4 && s.refreshEnabled)
    }

    @Test("recovery: a server that does not answer is unhealthy; none with a role means deciding afresh")
    func recoveryUnreachable() throws {
        let h = try liveState()
        let file = try ProcessStateFile(data: ProcessStateFile.encode(h.state))
        let table = h.state.nodes.keys.sorted().map { h.state.nodes[$0]!.instance }
        var live = statuses(h, roles: [.prefill, .prefill, .decode, .decode])
        live[h.state.nodes[3]!.key] = nil
        let s = ControllerCore.recover(file: file, table: table, statuses: live)
        #expect(s.nodes[3]!.isHealthy == false && s.nodes[3]!.role == .decode)
        #expect(!ControllerCore.serversHaveRoles([h.state.nodes[0]!.key: ServerStatus(roleState: .unknown, currentRole: .undefined)]))
    }

    @Test("saved identities come back as departed; the counter never goes down; used ids are not taken twice")
    func adoptDeparted() throws {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let insts = servers(3).map { s in
            try! RankTable(data: rankTableJSON(servers: [s]).data, options: .init()).instances[0]
        }
        var saved = InstanceIdentityRegistry()
        _ = saved.reconcile(insts, now: now, retention: 7200)
        saved.recordAssignment(insts[2].key, role: .decode, groupID: 0)
        var fresh = InstanceIdentityRegistry()
        fresh.restore(insts[0].key, id: 0, role: .prefill, groupID: 0, instance: insts[0])
        fresh.adoptDeparted(from: saved, now: now)
        #expect(fresh.nextID == 3)
        let diff = fresh.reconcile(insts, now: now + 10, retention: 7200)
        #expect(diff.unchanged == [0])
        #expect(diff.reappeared.map(\.id) == [1, 2] && diff.reappeared.last?.role == .decode)
        #expect(diff.new.isEmpty)
    }

    @Test("releasing an instance marks it expired, re-posts its peers without it and refreshes")
    func expire() throws {
        var h = try liveState()
        h.state.refreshEnabled = true
        let (s, effects) = ControllerCore.expire(h.state, id: 3, settings: h.settings)
        #expect(s.nodes[3] == nil)
        #expect(s.registry.expired.contains(h.state.nodes[3]!.key))
        #expect(effects.posts.map(\.id) == [0, 1] && effects.posts.allSatisfy { $0.peers == [2] })
        #expect(effects.contains { if case .refresh(let p) = $0 { !p.ids.contains(3) } else { false } })
        // Still in the table: ignored, not re-admitted.
        h.state = s
        let again = try h.pass()
        #expect(!again.contains { if case .getConfig(3, _) = $0 { true } else { false } })
        #expect(ControllerCore.expire(s, id: 42, settings: h.settings).1.isEmpty)
    }

    @Test("output files are replaced atomically with mode 0640; the cluster status lists peers by IP")
    func outputFiles() throws {
        let dir = NSTemporaryDirectory() + "ctlrt-files-\(UUID().uuidString)/sub"
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        let path = dir + "/status.json"
        try AtomicFile.write(Data("one".utf8), to: path)
        try AtomicFile.write(Data("two".utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two")
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attrs[.posixPermissions] as? Int) == 0o640)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["status.json"])
        let h = try liveState()
        var state = h.state
        state.coordinators["127.0.0.1"] = true
        let v = try JSON.parse(ClusterStatusFile.encode(state, coordinators: ["127.0.0.1"]))
        guard case .array(let servers)? = v["server"] else { Issue.record("no server array"); return }
        #expect(servers.count == 4)
        #expect(servers[0]["peers"] == .array([.string("10.1.0.3"), .string("10.1.0.4")]))
        #expect(servers[0]["static_info"]?["role"] == .int(80))
        #expect(v["coordinator"] == .array([.object(["ip": "127.0.0.1", "is_healthy": true])]))
    }

    @Test("role post acceptance: any 200 before the first refresh, then only a body with result ok")
    func rolePostAcceptance() async throws {
        let server = try HTTPServer(
            configuration: .init(threads: 1, listeners: [HTTPListener(host: "127.0.0.1", port: 0)])
        ) { req, res in
            res.respondJSON(status: 200, req.path.hasSuffix("prefill") ? #"{"result":"ok"}"# : "{}")
        }
        try server.start()
        defer {
            server.shutdown()
            server.waitUntilStopped()
        }
        let runner = HTTPEffectRunner(configuration: .init(timeoutSeconds: 2, retries: 0))
        let h = try liveState()
        let node = h.state.nodes[0]!
        let key = InstanceKey(ip: "127.0.0.1", mgmtPort: server.boundPorts[0])
        let payload = RolePostPayload(node: node, peers: [])
        func post(_ role: InstanceRole, initPhase: Bool) async -> [ControllerCore.Event] {
            await runner.run(
                .postRole(id: 0, key: key, role: role, payload: payload),
                context: EffectContext(coordinators: [], initPhase: initPhase))
        }
        #expect(await post(.decode, initPhase: true) == [.rolePosted(id: 0, succeeded: true)])
        #expect(await post(.decode, initPhase: false) == [.rolePosted(id: 0, succeeded: false)])
        #expect(await post(.prefill, initPhase: false) == [.rolePosted(id: 0, succeeded: true)])
        // Nothing listens: a probe fails with "no reply".
        let closed = InstanceKey(ip: "127.0.0.1", mgmtPort: 1)
        let events = await runner.run(.getStatus(id: 7, key: closed), context: EffectContext(coordinators: [], initPhase: false))
        #expect(events == [.serverStatus(id: 7, .failure(.noReply))])
    }

    @Test("a role switch's delayed poll waits on the runtime's clock, then runs; cancelling run() ends every task")
    func delayedEffectWaitsOnTheClock() async throws {
        let clock = ManualClock()
        let runner = RecordingRunner()
        var options = ControllerRuntime.Options(rankTablePath: NSTemporaryDirectory() + "no-such-table-\(UUID().uuidString).json")
        options.syncInterval = 1
        options.rankTableInterval = 1
        let runtime = ControllerRuntime(
            options: options, settings: .init(policy: .definite(pRate: 1, dRate: 1)), runner: runner, clock: clock,
            logger: quietLogger)
        let running = Task { await runtime.run() }
        let board = runtime.board
        // the loop is up once it sleeps on the clock
        #expect(await eventually { clock.sleepers == 1 && board.aliveTasks == 1 })
        await runtime.dispatch([.pollTasks(ids: [1], after: 5)])
        #expect(await eventually { clock.sleepers == 2 && board.aliveTasks == 2 })
        #expect(runner.ran.withLock { $0 }.isEmpty)
        clock.advance(4)  // the loop ticks; the poll is not due yet
        #expect(await eventually { clock.sleepers == 2 && board.aliveTasks == 2 })
        #expect(runner.ran.withLock { $0 }.isEmpty)
        clock.advance(1)
        #expect(await eventually { runner.ran.withLock { $0 } == [.pollTasks(ids: [1], after: 5)] })
        #expect(await eventually { board.aliveTasks == 1 })
        running.cancel()
        await running.value
        #expect(board.aliveTasks == 0 && clock.sleepers == 0)
    }
}

/// Records the effects it is asked to run; answers nothing.
final class RecordingRunner: ControllerEffectRunner {
    let ran = Locked<[ControllerCore.Effect]>([])
    func run(_ effect: ControllerCore.Effect, context: EffectContext) async -> [ControllerCore.Event] {
        ran.withLock { $0.append(effect) }
        return []
    }
    func coordinatorInfo(context: EffectContext) async -> CoordinatorInfo? { nil }
    func stopService(_ key: InstanceKey) async -> String? { nil }
}
