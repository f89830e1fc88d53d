import Foundation
import MSCore
import Testing

@testable import Control

extension Harness {
    /// Answers effects as the cluster would with the servers in `dead` down: their role posts fail; the
    /// coordinator drains at once.
    mutating func settleCluster(_ effects: [ControllerCore.Effect], dead: Set<Int>) -> [ControllerCore.Effect] {
        var queue = effects
        var seen: [ControllerCore.Effect] = []
        while !queue.isEmpty {
            let e = queue.removeFirst()
            seen.append(e)
            switch e {
            case .offline: queue += send(.offlineAnswered(succeeded: true))
            case .pollTasks: queue += send(.taskCount(0))
            case .queryTasks(_, let d, _, _): queue += send(.queryTasksAnswered(decodeID: d, isEnd: true))
            case .postRole(let id, _, _, _): queue += send(.rolePosted(id: id, succeeded: !dead.contains(id)))
            case .getConfig(let id, _):
                queue += send(.serverConfig(id: id, dead.contains(id) ? .failure(.noReply) : .success(Harness.config)))
            default: break
            }
        }
        return seen
    }

    /// One sync period of `seconds`: every listed server answers its status poll (the dead ones fail), then the
    /// sync tick; returns what the tick did, settled.
    mutating func period(_ seconds: TimeInterval = 1, dead: Set<Int>) -> [ControllerCore.Effect] {
        clock.advance(seconds)
        var seen: [ControllerCore.Effect] = []
        for id in state.nodes.keys.sorted() {
            let r: Result<ServerStatus, ProbeFailure> = dead.contains(id) ? .failure(.noReply) : .success(readyStatus(id))
            seen += settleCluster(send(.serverStatus(id: id, r)), dead: dead)
        }
        return seen + settleCluster(send(.syncTick), dead: dead)
    }

    func publishedRoles() -> [InstanceRole] { refresh.instances.map { state.nodes[$0.id]!.role } }
}

/// Beyond the reference (docs/decisions.md): a P that stays dead past the grace period is replaced by a D.
@Suite("re-balancing: a D replaces a P that stays dead")
struct RebalanceTests {
    @Test("2P2D, a P dead past the grace: a D switches to P (offline, drain, re-post), 2P1D published")
    func replacesDeadPrefill() throws {
        var h = try Harness.live2P2D()
        #expect(h.settings.prefillLossGrace == 60)
        var seen = h.period(dead: [0])
        #expect(h.publishedRoles() == [.prefill, .decode, .decode])
        // within the grace: nothing switches
        for _ in 0..<59 { seen += h.period(dead: [0]) }
        #expect(!seen.contains { if case .offline = $0 { true } else { false } })
        // past it: one D goes offline, drains and comes back as P
        seen = h.period(dead: [0])
        #expect(seen.first { if case .offline = $0 { true } else { false } } == .offline(ids: [2]))
        #expect(h.roles() == [.decode, .prefill, .prefill, .decode])
        #expect(h.state.groups == [InstanceGroup(id: 0, prefill: [1, 2], decode: [0, 3])])
        #expect(h.state.nodes[3]!.peers == [1, 2] && h.state.nodes[2]!.peers == [0, 3])
        _ = h.period(dead: [0])
        #expect(h.refresh.ids == [1, 2, 3] && h.publishedRoles() == [.prefill, .prefill, .decode])
        #expect(h.state.activeSwitch == nil && h.state.pendingSwitches.isEmpty)
        // nothing more happens while it stays dead
        seen = []
        for _ in 0..<120 { seen += h.period(dead: [0]) }
        #expect(!seen.contains { if case .offline = $0 { true } else { false } })
    }

    @Test("the replaced P restarts without a role: it is posted as D and the cluster is 2P2D again")
    func deadPrefillReturnsAsDecode() throws {
        var h = try Harness.live2P2D()
        for _ in 0..<61 { _ = h.period(dead: [0]) }
        #expect(h.roles() == [.decode, .prefill, .prefill, .decode])
        // back, fresh: RoleUnknown and no role
        let back = ServerStatus(
            roleState: .unknown, currentRole: .undefined, resources: ServerResources(availSlotsNum: 200, availBlockNum: 1024),
            activePeers: [])
        let seen = h.settleCluster(h.send(.serverStatus(id: 0, .success(back))), dead: [])
        #expect(seen.posts.map(\.id) == [0] && seen.posts[0].role == .decode && seen.posts[0].peers == [1, 2])
        _ = h.period(dead: [])
        #expect(h.refresh.ids == [0, 1, 2, 3])
        #expect(h.publishedRoles() == [.decode, .prefill, .prefill, .decode])
    }

    @Test("a P back within the grace: nothing switches")
    func backWithinGrace() throws {
        var h = try Harness.live2P2D()
        var seen: [ControllerCore.Effect] = []
        for _ in 0..<30 { seen += h.period(dead: [1]) }
        for _ in 0..<90 { seen += h.period(dead: []) }
        #expect(!seen.contains { if case .offline = $0 { true } else { false } })
        #expect(h.roles() == [.prefill, .prefill, .decode, .decode] && h.refresh.ids == [0, 1, 2, 3])
    }

    @Test("1P1D with its P dead: no switch, it would leave no D")
    func keepsOneDecode() throws {
        var h = Harness(servers: 2)
        _ = h.settle(try h.pass())
        h.allReady()
        var seen: [ControllerCore.Effect] = []
        for _ in 0..<200 { seen += h.period(dead: [0]) }
        #expect(!seen.contains { if case .offline = $0 { true } else { false } })
        #expect(h.roles() == [.prefill, .decode])
    }

    @Test("a P gone from the rank table past the grace is replaced; back within the retention it is admitted as D")
    func removedPrefill() throws {
        var h = try Harness.live2P2D()
        let gone = h.table.removeFirst()
        _ = h.settleCluster(try h.pass(), dead: [])
        for _ in 0..<61 { _ = h.period(dead: []) }
        #expect(h.state.groups == [InstanceGroup(id: 0, prefill: [1, 2], decode: [3])])
        #expect(h.state.registry.entry(id: 0)?.role == .decode)
        h.table.insert(gone, at: 0)
        _ = h.settleCluster(try h.pass(), dead: [])
        _ = h.period(dead: [])
        #expect(h.roles() == [.decode, .prefill, .prefill, .decode])
        #expect(h.refresh.ids == [0, 1, 2, 3])
    }

    @Test("an aborted replacement (offline refused) is tried again one grace period later")
    func retriedAfterAbort() throws {
        var h = try Harness.live2P2D()
        for _ in 0..<60 { _ = h.period(dead: [0]) }
        h.clock.advance(1)
        for id in [1, 2, 3] { h.send(.serverStatus(id: id, .success(h.readyStatus(id)))) }
        let tick = h.send(.syncTick)
        #expect(tick.contains(.offline(ids: [2])))
        #expect(h.send(.offlineAnswered(succeeded: false)).contains(.refresh(h.refresh)))
        #expect(h.roles() == [.prefill, .prefill, .decode, .decode] && h.state.activeSwitch == nil)
        var seen: [ControllerCore.Effect] = []
        for _ in 0..<59 { seen += h.period(dead: [0]) }
        #expect(!seen.contains { if case .offline = $0 { true } else { false } })
        seen = h.period(dead: [0])
        #expect(seen.contains(.offline(ids: [2])) && h.roles() == [.decode, .prefill, .prefill, .decode])
    }

    @Test("prefill_loss_rebalance_seconds: default 60, 0 switches re-balancing off, range 0...65535")
    func configKey() throws {
        let model = try DigsModelConfig(data: try Paths.ours("model_config/llama2-70B.json"))
        let machine = try DigsMachineConfig(data: try Paths.ours("machine_config/800IA2.json"))
        #expect(ControllerCore.Settings(config: try loadConfig(), model: model, machine: machine).prefillLossGrace == 60)
        let off = try loadConfig([("prefill_loss_rebalance_seconds", 0)])
        #expect(ControllerCore.Settings(config: off, model: model, machine: machine).prefillLossGrace == 0)
        #expect(try configError([("prefill_loss_rebalance_seconds", 65536)]) != nil)
        var h = try Harness.live2P2D()
        h.settings.prefillLossGrace = 0
        var seen: [ControllerCore.Effect] = []
        for _ in 0..<200 { seen += h.period(dead: [0]) }
        #expect(!seen.contains { if case .offline = $0 { true } else { false } })
    }
}
