import Foundation
import Testing

@testable import Control
import MSCore

/// A manual clock for the pure core.
struct TestClock {
    var now = Date(timeIntervalSince1970: 1_700_000_000)
    mutating func advance(_ seconds: TimeInterval) { now += seconds }
}

/// Drives `ControllerCore.transition` and plays the servers' part.
struct Harness {
    var state = ControllerCore.State()
    var settings: ControllerCore.Settings
    var clock = TestClock()
    var table: [TableServer]

    init(servers n: Int, policy: ControllerCore.RolePolicy = .definite(pRate: 1, dRate: 1)) {
        settings = .init(policy: policy)
        table = servers(n)
    }

    static let config = ServerConfigInfo(modelName: "llama2-70B", maxSeqLen: 4096, maxOutputLen: 1024, cacheBlockSize: 128)

    @discardableResult
    mutating func send(_ e: ControllerCore.Event) -> [ControllerCore.Effect] {
        let (s, effects) = ControllerCore.transition(state, e, now: clock.now, settings: settings)
        state = s
        return effects
    }

    /// A table pass with the current servers.
    mutating func pass() throws -> [ControllerCore.Effect] {
        let t = try RankTable(data: rankTableJSON(servers: table).data, options: .init())
        return send(.rankTable(instances: t.instances, coordinators: t.coordinatorIPs))
    }

    /// Answers every effect the way healthy servers would, until nothing is left; returns all effects seen.
    mutating func settle(_ effects: [ControllerCore.Effect], configFails: Set<Int> = [], postFails: Set<Int> = [])
        -> [ControllerCore.Effect]
    {
        var queue = effects
        var seen: [ControllerCore.Effect] = []
        while !queue.isEmpty {
            let e = queue.removeFirst()
            seen.append(e)
            switch e {
            case .getConfig(let id, _):
                queue += send(.serverConfig(id: id, configFails.contains(id) ? .failure(.noReply) : .success(Self.config)))
            case .postRole(let id, _, _, _):
                queue += send(.rolePosted(id: id, succeeded: !postFails.contains(id)))
            default:
                break
            }
        }
        return seen
    }

    /// A status reply of a server that took its role and linked with its assigned peers.
    func readyStatus(_ id: Int, roleState: RoleState = .ready, linked: Bool = true) -> ServerStatus {
        let n = state.nodes[id]!
        return ServerStatus(
            roleState: roleState, currentRole: roleState == .unknown ? .undefined : n.role,
            resources: ServerResources(availSlotsNum: 200, availBlockNum: 1024),
            activePeers: linked ? n.peers : [])
    }

    /// Every live node reports Ready with links.
    mutating func allReady() {
        for id in state.nodes.keys.sorted() { send(.serverStatus(id: id, .success(readyStatus(id)))) }
    }

    var refresh: RefreshPayload { state.refreshPayload(settings: settings) }

    func roles() -> [InstanceRole] { state.nodes.keys.sorted().map { state.nodes[$0]!.role } }
}

extension [ControllerCore.Effect] {
    var posts: [(id: Int, role: InstanceRole, peers: [Int])] {
        compactMap {
            if case .postRole(let id, _, let role, let payload) = $0 { return (id, role, payload.peers.map(\.id)) }
            return nil
        }
    }
    var refreshes: [RefreshPayload] {
        compactMap { if case .refresh(let r) = $0 { return r } else { return nil } }
    }
}

@Suite("lifecycle: the pure transition function (§5–§7)")
struct LifecycleTests {
    @Test("discovery probes every new instance; nothing is posted before all probes answered")
    func discovery() throws {
        var h = Harness(servers: 3)
        let effects = try h.pass()
        #expect(effects.filter { if case .getConfig = $0 { true } else { false } }.count == 3)
        let first = h.send(.serverConfig(id: 0, .success(Harness.config)))
        #expect(first.posts.isEmpty && !h.state.initialAssignmentDone)
        h.send(.serverConfig(id: 1, .success(Harness.config)))
        let last = h.send(.serverConfig(id: 2, .success(Harness.config)))
        #expect(last.posts.map(\.id) == [0, 1, 2])
        #expect(last.posts.map(\.role) == [.prefill, .prefill, .decode])
        #expect(h.state.initialAssignmentDone && !h.state.refreshEnabled)
    }

    // docs/wire/controller.md §12 test 8.
    @Test("4 servers in auto mode (shipped config): the refresh holds 1P+3D and every D has peers [P]")
    func autoInit1P3D() throws {
        let config = try loadConfig()
        let model = try DigsModelConfig(data: try Paths.ours("model_config/llama2-70B.json"))
        let machine = try DigsMachineConfig(data: try Paths.ours("machine_config/800IA2.json"))
        var h = Harness(servers: 4)
        h.settings = ControllerCore.Settings(config: config, model: model, machine: machine)
        let seen = h.settle(try h.pass())
        #expect(seen.posts.map(\.role) == [.prefill, .decode, .decode, .decode])
        #expect(seen.refreshes.count == 1 && h.state.refreshEnabled)
        #expect(seen.refreshes[0].instances.isEmpty)  // nobody Ready yet
        h.allReady()
        let r = h.refresh
        #expect(r.ids == [0, 1, 2, 3])
        #expect(r.instances.map(\.staticInfo.role) == [80, 68, 68, 68])
        for i in r.instances where i.staticInfo.role == 68 { #expect(i.dynamicInfo.peers == [0]) }
        #expect(r.instances[0].dynamicInfo.peers == [1, 2, 3])
        #expect(r.instances[0].staticInfo.totalSlotsNum == 200 && r.instances[0].staticInfo.totalBlockNum == 1024)
        #expect(r.instances[0].staticInfo.blockSize == 128 && r.instances[0].modelName == "llama2-70B")
    }

    // docs/wire/controller.md §12 test 9 and test 25 (first half).
    @Test("rate 2:2 with both D stuck in RoleUnknown: the coordinator receives no instances, D are re-posted")
    func stuckDecodes() throws {
        var h = Harness(servers: 4, policy: .definite(pRate: 2, dRate: 2))
        _ = h.settle(try h.pass())
        #expect(h.roles() == [.prefill, .prefill, .decode, .decode])
        for id in [0, 1] { h.send(.serverStatus(id: id, .success(h.readyStatus(id)))) }
        var reposted: [Int] = []
        for id in [2, 3] {
            let e = h.send(.serverStatus(id: id, .success(h.readyStatus(id, roleState: .unknown, linked: false))))
            reposted += e.posts.map(\.id)
        }
        #expect(h.refresh.instances.isEmpty && h.refresh.ids.isEmpty)
        #expect(reposted == [2, 3])
        #expect(h.state.nodes[2]!.needsRepost)
    }

    // docs/wire/controller.md §12 test 10 and test 25 (second half).
    @Test("rate 2:2 with the D RoleSwitching but linked: 4 published, each D with its P peers")
    func switchingButLinked() throws {
        var h = Harness(servers: 4, policy: .definite(pRate: 2, dRate: 2))
        _ = h.settle(try h.pass())
        for id in [0, 1] { h.send(.serverStatus(id: id, .success(h.readyStatus(id)))) }
        for id in [2, 3] {
            let e = h.send(.serverStatus(id: id, .success(h.readyStatus(id, roleState: .switching))))
            #expect(e.posts.isEmpty)
        }
        let r = h.refresh
        #expect(r.ids == [0, 1, 2, 3])
        #expect(r.instances[2].dynamicInfo.peers == [0, 1] && r.instances[3].dynamicInfo.peers == [0, 1])
    }

    // docs/wire/controller.md §12 test 22.
    @Test("a P whose D is unavailable: instances is empty")
    func unavailablePeer() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        #expect(h.refresh.ids == [0, 1])
        h.state.nodes[1]!.inferenceType = .unavailable
        #expect(h.refresh.instances.isEmpty)
    }

    @Test("links must be mutual: a P listing an active D that does not list it back is not published")
    func mutualLinks() throws {
        var h = Harness(servers: 3, policy: .definite(pRate: 2, dRate: 1))
        _ = h.settle(try h.pass())
        #expect(h.roles() == [.prefill, .prefill, .decode])
        h.send(.serverStatus(id: 0, .success(h.readyStatus(0))))
        h.send(.serverStatus(id: 1, .success(h.readyStatus(1))))
        var d = h.readyStatus(2)
        d.activePeers = [1]
        h.send(.serverStatus(id: 2, .success(d)))
        #expect(h.refresh.ids == [1, 2])
        #expect(h.refresh.instances[1].dynamicInfo.peers == [1])
    }

    // docs/wire/controller.md §12 test 11.
    @Test("live 1P1D, D removed from the table: the refresh is empty and P is re-posted with empty peers")
    func removeDecode() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        #expect(h.refresh.ids == [0, 1])
        h.table.removeLast()
        h.clock.advance(5)
        let e = try h.pass()
        #expect(e.posts.count == 1 && e.posts[0].id == 0 && e.posts[0].peers.isEmpty)
        #expect(e.refreshes.count == 1 && e.refreshes[0].instances.isEmpty)
        #expect(h.state.nodes[1] == nil && h.state.groups[0].decode.isEmpty)
    }

    // docs/wire/controller.md §12 test 12.
    @Test("live 1P1D with P removed then re-added: 1P1D is published again")
    func readdPrefill() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        let p = h.table.removeFirst()
        h.clock.advance(5)
        _ = h.settle(try h.pass())
        h.send(.serverStatus(id: 1, .success(h.readyStatus(1, linked: false))))
        #expect(h.refresh.instances.isEmpty)
        h.table.insert(p, at: 0)
        h.clock.advance(30)
        let seen = h.settle(try h.pass())
        #expect(Set(seen.posts.map(\.id)) == [0, 1])
        h.allReady()
        #expect(h.refresh.ids == [0, 1])
        #expect(h.refresh.instances.map(\.staticInfo.role) == [80, 68])
    }

    // docs/wire/controller.md §12 test 13, changed by DECISIONS 19 (the reference terminates the newcomer).
    @Test("live 1P1D with D removed then re-added: 1P1D again, same id")
    func readdDecode() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        let d = h.table.removeLast()
        h.clock.advance(5)
        _ = h.settle(try h.pass())
        h.table.append(d)
        h.clock.advance(60)
        let seen = h.settle(try h.pass())
        #expect(!seen.contains { if case .getConfig(let id, _) = $0 { id != 1 } else { false } })
        #expect(h.state.nodes[1]!.role == .decode)
        #expect(seen.posts.first { $0.id == 0 }?.peers == [1])
        h.allReady()
        #expect(h.refresh.ids == [0, 1])
    }

    @Test("a D that returns after the retention is a new instance that still fills the missing D role")
    func readdDecodeAfterRetention() throws {
        var h = Harness(servers: 2)
        h.settings.retentionSeconds = 100
        _ = h.settle(try h.pass())
        h.allReady()
        let d = h.table.removeLast()
        h.clock.advance(5)
        _ = h.settle(try h.pass())
        h.clock.advance(200)
        _ = h.settle(try h.pass())
        h.table.append(d)
        h.clock.advance(5)
        _ = h.settle(try h.pass())
        #expect(h.state.nodes[2]?.role == .decode && h.state.nodes[1] == nil)
        h.allReady()
        #expect(h.refresh.ids == [0, 2])
    }

    // docs/wire/controller.md §12 test 14.
    @Test("scale-in while the survivor is unreachable: the survivor is unhealthy and unpublished")
    func unreachableSurvivor() throws {
        var h = Harness(servers: 3)
        _ = h.settle(try h.pass())
        h.allReady()
        #expect(h.refresh.ids == [0, 1, 2])
        h.table.removeLast()
        _ = h.settle(try h.pass())
        let e = h.send(.serverStatus(id: 0, .failure(.noReply)))
        #expect(e == [.unhealthyEvent(id: 0, reason: 1)])
        #expect(!h.state.nodes[0]!.isHealthy && h.state.nodes[0]!.roleState == .unknown)
        #expect(!h.refresh.ids.contains(0))
        // A second failure raises no second event.
        #expect(h.send(.serverStatus(id: 0, .failure(.badResponse("500")))).isEmpty)
    }

    // docs/wire/controller.md §12 test 20 (the state update part; parsing is in ServerReportTests).
    @Test("a RoleReady/prefill status updates the node; a failure gives unhealthy + RoleUnknown; recovery re-publishes")
    func statusUpdates() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        #expect(h.state.nodes[0]!.roleState == .ready && h.state.nodes[0]!.currentRole == .prefill)
        #expect(h.state.nodes[0]!.resources.availBlockNum == 1024)
        h.send(.serverStatus(id: 1, .failure(.badResponse("HTTP 503"))))
        #expect(h.refresh.instances.isEmpty)
        let e = h.send(.serverStatus(id: 1, .success(h.readyStatus(1))))
        #expect(e.posts.isEmpty)
        #expect(h.refresh.ids == [0, 1])
    }

    @Test("a failed role post makes the node unhealthy; the next healthy poll re-posts it")
    func failedPost() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass(), postFails: [1])
        #expect(!h.state.nodes[1]!.isHealthy && !h.state.nodes[1]!.isInitialized)
        let e = h.send(.serverStatus(id: 1, .success(ServerStatus(roleState: .unknown, currentRole: .undefined))))
        #expect(e.posts.map(\.id) == [1])
        _ = h.settle(e)
        h.allReady()
        #expect(h.refresh.ids == [0, 1])
    }

    @Test("unreachable past the initial probe window: the node is faulty, the rest are decided; a later pass re-probes and admits it")
    func faultyAtInit() throws {
        var h = Harness(servers: 3)
        _ = h.settle(try h.pass(), configFails: [2])
        #expect(h.state.nodes[2]!.phase == .faulty && !h.state.initialAssignmentDone)
        h.clock.advance(h.settings.initialProbeWindow)
        _ = h.settle(try h.pass(), configFails: [2])
        #expect(h.state.nodes[2]!.phase == .faulty)
        #expect(h.roles() == [.prefill, .decode, .undefined])
        h.allReady()
        let seen = h.settle(try h.pass())
        #expect(h.state.nodes[2]!.phase == .candidate && h.state.nodes[2]!.role != .undefined)
        #expect(seen.posts.contains { $0.id == 2 })
    }

    @Test("refresh: only after the initial posts are answered; then every sync tick; coordinator health is kept")
    func refreshes() throws {
        var h = Harness(servers: 2)
        var e = try h.pass()
        #expect(h.send(.syncTick).refreshes.isEmpty)
        e = h.settle(e)
        #expect(e.refreshes.count == 1)
        let tick = h.send(.syncTick)
        #expect(tick.refreshes.count == 1)
        #expect(tick.filter { if case .getStatus = $0 { true } else { false } }.count == 2)
        #expect(h.state.coordinators == ["127.0.0.1": false])
        h.send(.coordinatorRefreshed(ip: "127.0.0.1", succeeded: true))
        _ = try h.pass()
        #expect(h.state.coordinators == ["127.0.0.1": true])
        h.send(.coordinatorRefreshed(ip: "127.0.0.1", succeeded: false))
        #expect(h.state.coordinators == ["127.0.0.1": false])
    }

    @Test("the refresh JSON has the §3.2 field names")
    func refreshJSON() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        let json = try JSON.parse(h.refresh.jsonData())
        #expect(json["ids"] == .array([0, 1]))
        guard case .array(let list)? = json["instances"], let first = list.first else { Issue.record("no instances"); return }
        #expect(Set(first.objectValue!.keys) == ["id", "ip", "port", "metric_port", "inter_comm_port", "model_name", "static_info", "dynamic_info"])
        #expect(Set(first["static_info"]!.objectValue!.keys) == [
            "group_id", "max_seq_len", "max_output_len", "total_slots_num", "total_block_num", "block_size", "label",
            "role", "p_percentage", "virtual_id",
        ])
        #expect(first["dynamic_info"]?["peers"] == .array([1]))
        // Ports as strings (docs/wire/coordinator.md §3.1); no inter_comm_port in the table gives an empty one.
        #expect(first["port"] == "1025" && first["metric_port"] == "1027" && first["inter_comm_port"] == "")
    }

    // docs/wire/controller.md §12 test 23 (v1).
    @Test("a v1 role post carries local and peer host_ip and id; A3 adds super_pod_id and super_device_id")
    func rolePostPayload() throws {
        var h = Harness(servers: 2)
        let seen = h.settle(try h.pass())
        guard case .postRole(_, let key, let role, let payload)? = seen.first(where: { if case .postRole = $0 { true } else { false } })
        else { Issue.record("no post"); return }
        #expect(key == InstanceKey(ip: "10.1.0.1", mgmtPort: 1026) && role == .prefill)
        let json = try JSON.parse(payload.jsonData())
        #expect(json["local"]?["host_ip"] == "10.0.0.1" && json["local"]?["id"] == 0)
        #expect(json["local"]?["server_ip"] == "10.1.0.1" && json["local"]?["num_instances_per_pod"] == 1)
        #expect(json["local"]?["is_single_container"] == false)
        #expect(json["local"]?["device"] == .array([.object([
            "device_id": "0", "device_ip": "10.1.0.1", "device_logical_id": "0", "rank_id": "0"])]))
        guard case .array(let peers)? = json["peers"] else { Issue.record("no peers"); return }
        #expect(peers.count == 1 && peers[0]["id"] == 1 && peers[0]["host_ip"] == "10.0.0.1")
        #expect(json["local"]?["super_pod_id"] == nil)

        var node = h.state.nodes[0]!
        node.instance.servers[0].superPodID = "3"
        node.instance.servers[0].devices[0].superDeviceID = 77
        let a3 = try JSON.parse(RolePostPayload(node: node, peers: [], singleContainer: true).jsonData())
        #expect(a3["local"]?["super_pod_id"] == "3")
        #expect(a3["local"]?["num_instances_per_pod"] == 16 && a3["local"]?["is_single_container"] == true)
        if case .array(let devs)? = a3["local"]?["device"] { #expect(devs[0]["super_device_id"] == "77") }
    }

    @Test("single_node mode: no roles, published iff healthy")
    func singleNode() throws {
        var h = Harness(servers: 2)
        h.settings.singleNode = true
        let seen = h.settle(try h.pass())
        #expect(seen.posts.isEmpty && h.state.refreshEnabled)
        // Published once a status answer gave the totals.
        #expect(h.refresh.ids.isEmpty)
        h.allReady()
        #expect(h.refresh.ids == [0, 1] && h.refresh.instances.allSatisfy { $0.staticInfo.role == 85 })
        #expect(h.refresh.instances.allSatisfy { $0.staticInfo.totalSlotsNum == 200 })
        h.send(.serverStatus(id: 1, .failure(.noReply)))
        #expect(h.refresh.ids == [0])
    }

    @Test("heterogeneous mode: 32G → P, 64G → D")
    func heterogeneous() throws {
        var h = Harness(servers: 2, policy: .heterogeneous)
        h.table[0].hardwareType = "800I A2(64G)"
        h.table[1].hardwareType = "800I A2(32G)"
        _ = h.settle(try h.pass())
        #expect(h.roles() == [.decode, .prefill])
    }

    @Test("a device change at the same ip:mgmt_port re-probes the node and re-admits it with its id and role")
    func deviceChange() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        h.table[1].devices = 2
        let seen = h.settle(try h.pass())
        #expect(seen.contains(.getConfig(id: 1, key: InstanceKey(ip: "10.1.0.2", mgmtPort: 1026))))
        #expect(h.state.nodes[1]!.role == .decode && h.state.nodes[1]!.instance.devices.count == 2)
        #expect(Set(seen.posts.map(\.id)) == [0, 1])
        h.allReady()
        #expect(h.refresh.ids == [0, 1])
    }

    @Test("a group without D (e.g. 1 instance) waits for more instances before deciding")
    func waitsForTwo() throws {
        var h = Harness(servers: 1)
        let seen = h.settle(try h.pass())
        #expect(seen.posts.isEmpty && !h.state.initialAssignmentDone)
        h.table = servers(2)
        let more = h.settle(try h.pass())
        #expect(more.posts.map(\.role) == [.prefill, .decode])
    }

    @Test("scale-out with a definite ratio follows the ratio; the registry keeps roles for persistence")
    func scaleOut() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        h.table = servers(4)
        let seen = h.settle(try h.pass())
        #expect(h.roles() == [.prefill, .decode, .prefill, .decode])
        #expect(Set(seen.posts.map(\.id)) == [0, 1, 2, 3])
        #expect(h.state.groups == [InstanceGroup(id: 0, prefill: [0, 2], decode: [1, 3])])
        h.allReady()
        #expect(h.refresh.ids == [0, 1, 2, 3])
        #expect(h.refresh.instances[1].dynamicInfo.peers == [0, 2])
        #expect(h.state.registry.entry(id: 3)?.role == .decode)
        let persisted = seen.compactMap { if case .persistIdentity(let r) = $0 { r } else { nil } }.last
        #expect(persisted?.nextID == 4)
    }
}
