import Foundation
import Testing

@testable import Control

/// `EffectAdmission`: which effects start, wait or are dropped — no sockets, no clock.
@Suite("effect admission: probes, posts and refreshes one at a time")
struct EffectAdmissionTests {
    static let key = InstanceKey(ip: "10.0.0.1", mgmtPort: 1026)

    /// A live 2P2D cluster of the pure harness: real nodes for role posts, real states for refreshes.
    static let live: Harness = {
        var h = Harness(servers: 4)
        _ = h.settle(try! h.pass())
        h.allReady()
        return h
    }()

    static func post(_ id: Int, _ role: InstanceRole, peers: [Int] = []) -> ControllerCore.Effect {
        let node = live.state.nodes[id % 4]!
        return .postRole(id: id, key: key, role: role, payload: RolePostPayload(node: node, peers: peers.map { live.state.nodes[$0]! }))
    }

    /// A refresh of the live cluster without the instances in `leaving`.
    static func refresh(without leaving: [Int]) -> ControllerCore.Effect {
        var s = live.state
        for id in leaving { s.nodes[id] = nil }
        return .refresh(ControllerCore.refreshPayload(s, settings: live.settings))
    }

    func started(_ steps: [EffectAdmission.Step]) -> [EffectAdmission.Job] {
        steps.compactMap { if case .start(let j) = $0 { j } else { nil } }
    }

    @Test("a probe while the same probe of the same instance runs is dropped; other kinds and instances start")
    func probes() {
        var a = EffectAdmission()
        let first = started(a.submit([.getStatus(id: 1, key: Self.key), .getConfig(id: 1, key: Self.key), .getStatus(id: 2, key: Self.key)]))
        #expect(first.map(\.lane) == [.status(1), .config(1), .status(2)])
        #expect(a.submit([.getStatus(id: 1, key: Self.key)]).isEmpty)
        #expect(a.running == 3 && a.queued == 0)
        #expect(a.completed(first[0]) == .init(deliver: true, start: []))
        #expect(started(a.submit([.getStatus(id: 1, key: Self.key)])).map(\.lane) == [.status(1)])
    }

    @Test("a newer post waits for the running one, replaces an older waiting one, and supersedes the running one's answer")
    func posts() {
        var a = EffectAdmission()
        let running = started(a.submit([Self.post(3, .decode, peers: [0])]))
        #expect(running.count == 1)
        #expect(a.submit([Self.post(3, .decode, peers: [0, 1])]).isEmpty)
        #expect(a.submit([Self.post(3, .prefill, peers: [2])]).isEmpty)
        #expect(started(a.submit([Self.post(4, .decode)])).count == 1)  // another instance: its own lane
        #expect(a.running == 2 && a.queued == 1)
        let done = a.completed(running[0])
        #expect(!done.deliver)
        #expect(done.start.map(\.effect) == [Self.post(3, .prefill, peers: [2])])
        #expect(a.completed(done.start[0]) == .init(deliver: true, start: []))
        #expect(a.running == 1 && a.queued == 0)
    }

    @Test("refreshes go one at a time, the newest waiting one next; every answer is delivered")
    func refreshes() {
        #expect(Self.refresh(without: [3]) != Self.refresh(without: [2, 3]))
        var a = EffectAdmission()
        let first = started(a.submit([Self.refresh(without: [])]))
        #expect(a.submit([Self.refresh(without: [3])]).isEmpty && a.submit([Self.refresh(without: [2, 3])]).isEmpty)
        let done = a.completed(first[0])
        #expect(done.deliver && done.start.map(\.effect) == [Self.refresh(without: [2, 3])])
        #expect(a.completed(done.start[0]) == .init(deliver: true, start: []))
        #expect(a.running == 0)
    }

    @Test("role-switch calls always start; the drain polls carry their delay; local effects are handed back in order")
    func freeAndLocal() {
        var a = EffectAdmission()
        let steps = a.submit([
            .offline(ids: [1]), .unhealthyEvent(id: 2, reason: 1), .pollTasks(ids: [1], after: 1),
            .queryTasks(prefillID: 1, decodeID: 2, change: .prefillToDecode, after: 1), .online(ids: [1]), .offline(ids: [1]),
        ])
        #expect(steps.count == 6)
        #expect(steps[1] == .local(.unhealthyEvent(id: 2, reason: 1)))
        let jobs = started(steps)
        #expect(jobs.map(\.delay) == [0, 1, 1, 0, 0] && jobs.allSatisfy { $0.lane == .free })
        #expect(a.running == 5)
        for j in jobs { #expect(a.completed(j) == .init(deliver: true, start: [])) }
        #expect(a.running == 0)
    }
}
