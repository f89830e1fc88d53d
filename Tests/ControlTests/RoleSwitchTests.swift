import Foundation
import Testing

@testable import Control
import MSCore

extension Harness {
    /// Answers the switch effects as a healthy coordinator would (drained at once, is_end at once).
    mutating func settleSwitch(_ effects: [ControllerCore.Effect], offlineOK: Bool = true) -> [ControllerCore.Effect] {
        var queue = effects
        var seen: [ControllerCore.Effect] = []
        while !queue.isEmpty {
            let e = queue.removeFirst()
            seen.append(e)
            switch e {
            case .offline: queue += send(.offlineAnswered(succeeded: offlineOK))
            case .pollTasks: queue += send(.taskCount(0))
            case .queryTasks(_, let d, _, _): queue += send(.queryTasksAnswered(decodeID: d, isEnd: true))
            case .postRole(let id, _, _, _): queue += send(.rolePosted(id: id, succeeded: true))
            default: break
            }
        }
        return seen
    }

    /// A live 2P2D cluster, all Ready.
    static func live2P2D() throws -> Harness {
        var h = Harness(servers: 4, policy: .definite(pRate: 2, dRate: 2))
        _ = h.settle(try h.pass())
        h.allReady()
        return h
    }
}

@Suite("role switching (§6.5)")
struct RoleSwitchTests {
    // docs/wire/controller.md §12 test 15.
    @Test("2P2D, node2 switched P→D: P, D, D, D; each D has peers [node1]; 4 available, 0 faulty")
    func prefillToDecode() throws {
        var h = try Harness.live2P2D()
        let seen = h.settleSwitch(h.send(.switchRole(id: 1, to: .decode)))
        #expect(seen.first == .offline(ids: [1]))
        let queries = seen.compactMap { if case .queryTasks(let p, let d, let c, _) = $0 { (p, d, c) } else { nil } }
        #expect(queries.map(\.1) == [2, 3] && queries.allSatisfy { $0.0 == 1 && $0.2 == .prefillToDecode })
        #expect(h.roles() == [.prefill, .decode, .decode, .decode])
        for d in [1, 2, 3] { #expect(h.state.nodes[d]!.peers == [0]) }
        #expect(h.state.nodes[0]!.peers == [1, 2, 3])
        #expect(h.state.nodes[1]!.label == .decodeOnly)
        #expect(Set(seen.posts.map(\.id)) == [0, 1, 2, 3])
        h.allReady()
        #expect(h.refresh.ids == [0, 1, 2, 3])
        #expect(h.state.nodes.values.filter { $0.phase == .faulty }.isEmpty)
        #expect(h.state.activeSwitch == nil)
    }

    // docs/wire/controller.md §12 test 16.
    @Test("2P2D, D→P applied: 3P1D, without query_tasks")
    func decodeToPrefill() throws {
        var h = try Harness.live2P2D()
        let seen = h.settleSwitch(h.send(.switchRole(id: 2, to: .prefill)))
        #expect(!seen.contains { if case .queryTasks = $0 { true } else { false } })
        #expect(h.roles() == [.prefill, .prefill, .prefill, .decode])
        #expect(h.state.nodes[3]!.peers == [0, 1, 2])
        h.allReady()
        #expect(h.refresh.ids == [0, 1, 2, 3])
    }

    @Test("if offline fails, it stays 2P2D and nothing is posted")
    func offlineFails() throws {
        var h = try Harness.live2P2D()
        let seen = h.settleSwitch(h.send(.switchRole(id: 2, to: .prefill)), offlineOK: false)
        #expect(seen.posts.isEmpty)
        #expect(h.roles() == [.prefill, .prefill, .decode, .decode])
        #expect(h.state.activeSwitch == nil)
    }

    @Test("tasks not drained within tasks_end_wait_seconds: online again, refresh, abort")
    func drainTimeout() throws {
        var h = try Harness.live2P2D()
        h.settings.tasksEndWaitSeconds = 300
        h.send(.switchRole(id: 1, to: .decode))
        #expect(h.send(.offlineAnswered(succeeded: true)) == [.pollTasks(ids: [1], after: 0)])
        for _ in 0..<299 {
            h.clock.advance(1)
            #expect(h.send(.taskCount(3)) == [.pollTasks(ids: [1], after: 1)])
        }
        h.clock.advance(1)
        let e = h.send(.taskCount(nil))
        #expect(e.first == .online(ids: [1]) && e.refreshes.count == 1)
        #expect(h.roles() == [.prefill, .prefill, .decode, .decode] && h.state.activeSwitch == nil)
    }

    @Test("a query_tasks failure puts the node online again and aborts; is_end false asks again")
    func queryFailure() throws {
        var h = try Harness.live2P2D()
        h.send(.switchRole(id: 0, to: .decode))
        h.send(.offlineAnswered(succeeded: true))
        let q = h.send(.taskCount(-1))
        #expect(q == [.queryTasks(prefillID: 0, decodeID: 2, change: .prefillToDecode, after: 0),
                      .queryTasks(prefillID: 0, decodeID: 3, change: .prefillToDecode, after: 0)])
        #expect(h.send(.queryTasksAnswered(decodeID: 2, isEnd: false))
            == [.queryTasks(prefillID: 0, decodeID: 2, change: .prefillToDecode, after: 1)])
        #expect(h.send(.queryTasksAnswered(decodeID: 2, isEnd: true)).isEmpty)
        let e = h.send(.queryTasksAnswered(decodeID: 3, isEnd: nil))
        #expect(e.first == .online(ids: [0]))
        #expect(h.roles() == [.prefill, .prefill, .decode, .decode])
    }

    @Test("unhealthy and already-matching nodes are skipped; switches run one at a time")
    func skipsAndQueue() throws {
        var h = try Harness.live2P2D()
        #expect(h.send(.switchRole(id: 2, to: .decode)).isEmpty)
        h.send(.serverStatus(id: 3, .failure(.noReply)))
        #expect(h.send(.switchRole(id: 3, to: .prefill)).isEmpty)
        #expect(h.send(.switchRole(id: 0, to: .decode)) == [.offline(ids: [0])])
        #expect(h.send(.switchRole(id: 2, to: .prefill)).isEmpty)
        #expect(h.state.pendingSwitches == [RoleSwitch.Request(id: 2, to: .prefill)])
        let seen = h.settleSwitch(h.send(.offlineAnswered(succeeded: true)))
        #expect(seen.contains(.offline(ids: [2])))
        #expect(h.roles() == [.decode, .prefill, .prefill, .decode])
    }

    @Test("periodic re-decision: N=3 2P1D at 3000/200 becomes 1P2D at 1024/1024 (reference TC03)")
    func periodic() throws {
        let fixture = RoleModelTests.vectors[0].simulator
        var h = Harness(servers: 3, policy: .automatic(fixture, inputLength: 3000, outputLength: 200))
        h.table = servers(3, devices: 8)
        h.settings.autoSwitching = true
        h.settings.simulator = fixture
        _ = h.settle(try h.pass())
        h.allReady()
        #expect(h.roles() == [.prefill, .prefill, .decode])
        let info = try CoordinatorInfo(body: JSON.object([
            "schedule_info": .array([.object(["id": 0, "allocated_slots": 9, "allocated_blocks": 0]),
                                     .object(["id": 1, "allocated_slots": 3, "allocated_blocks": 0])]),
            "request_length_info": .object(["input_len": 1024, "output_len": 1024]),
        ]).data)
        let seen = h.settleSwitch(h.send(.roleDecisionTimer(info)))
        #expect(seen.first == .offline(ids: [1]))  // fewer allocated slots goes first
        #expect(h.roles() == [.prefill, .decode, .decode])
        let zero = try CoordinatorInfo(body: JSON.object([
            "schedule_info": .array([]), "request_length_info": .object(["input_len": 0, "output_len": 5]),
        ]).data)
        #expect(h.send(.roleDecisionTimer(zero)).isEmpty)
        h.settings.autoSwitching = false
        #expect(h.send(.roleDecisionTimer(info)).isEmpty)
    }

    @Test("planner order: U first, then the preferred label, then fewer slots, fewer blocks, lower id")
    func plannerOrder() throws {
        let inst = try RankTable(data: rankTableJSON(servers: servers(5)).data, options: .init()).instances
        var nodes = (0..<5).map { ControllerNode(id: $0, instance: inst[$0]) }
        for i in 0..<5 { nodes[i].role = .decode; nodes[i].label = .decodeOnly }
        nodes[4].role = .undefined
        nodes[3].label = .preferDecode
        let alloc: [Int: CoordinatorInfo.Schedule] = [
            0: .init(id: 0, allocatedSlots: 5, allocatedBlocks: 9), 1: .init(id: 1, allocatedSlots: 5, allocatedBlocks: 1),
            2: .init(id: 2, allocatedSlots: 1, allocatedBlocks: 100),
        ]
        let plan = RoleSwitchPlanner.plan(members: nodes, target: .init(prefill: 5, decode: 0), allocations: alloc)
        #expect(plan.map(\.id) == [4, 3, 2, 1, 0] && plan.allSatisfy { $0.to == .prefill })
        #expect(RoleSwitchPlanner.plan(members: nodes, target: .init(prefill: 0, decode: 4), allocations: alloc).isEmpty)
    }
}
