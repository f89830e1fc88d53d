import Foundation
import MSCore
import Testing

@testable import Control

/// The initial role decision does not depend on the order in which the servers answer their first probe
/// (issue 13.6: a launcher cluster decided P, D, D, P when one instance missed the first probe).
@Suite("initial decision: roles in table order whatever the probe arrival order")
struct InitialDecisionTests {
    static let tableOrder: [InstanceRole] = [.prefill, .prefill, .decode, .decode]

    /// Answers the first pass's config probes in `order`; the ones in `late` fail (the server is still starting),
    /// succeed at the next pass one second later, answered in reverse order.
    static func decide(order: [Int], late: Set<Int>) throws -> (Harness, [ControllerCore.Effect]) {
        var h = Harness(servers: 4, policy: .definite(pRate: 2, dRate: 2))
        var seen = try h.pass()
        for id in order {
            seen += h.send(.serverConfig(id: id, late.contains(id) ? .failure(.noReply) : .success(Harness.config)))
        }
        h.clock.advance(1)
        h.send(.syncTick)
        var again = try h.pass()
        let probes = again.filter { if case .getConfig = $0 { true } else { false } }
        again.removeAll { if case .getConfig = $0 { true } else { false } }
        seen += again
        for case .getConfig(let id, _) in probes.reversed() {
            seen += h.settle(h.send(.serverConfig(id: id, .success(Harness.config))))
        }
        return (h, seen)
    }

    @Test(
        "every arrival order of the first probes, with or without one server missing the first probe, gives P, P, D, D",
        arguments: [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]], [[], [0], [1], [2], [3], [0, 3]] as [Set<Int>])
    func orderIndependent(order: [Int], late: Set<Int>) throws {
        let (h, seen) = try Self.decide(order: order, late: late)
        #expect(h.roles() == Self.tableOrder)
        #expect(h.state.groups == [InstanceGroup(id: 0, prefill: [0, 1], decode: [2, 3])])
        // one decision: each server gets exactly one role post, with its final role
        #expect(seen.posts.map(\.id).sorted() == [0, 1, 2, 3])
        #expect(seen.posts.allSatisfy { Self.tableOrder[$0.id] == $0.role })
    }

    @Test("nothing is posted while a server of the table is still starting within the window")
    func waitsForStartingServer() throws {
        var h = Harness(servers: 4, policy: .definite(pRate: 2, dRate: 2))
        let seen = h.settle(try h.pass(), configFails: [3])
        #expect(seen.posts.isEmpty && !h.state.initialAssignmentDone)
        h.clock.advance(h.settings.initialProbeWindow - 1)
        #expect(h.settle(h.send(.syncTick)).posts.isEmpty)
        #expect(h.settle(try h.pass(), configFails: [3]).posts.isEmpty)
    }

    @Test("a server still down when the window ends: the others are decided then; it joins later as scale-out")
    func windowEnds() throws {
        var h = Harness(servers: 4, policy: .definite(pRate: 2, dRate: 2))
        _ = h.settle(try h.pass(), configFails: [3])
        h.clock.advance(h.settings.initialProbeWindow)
        let seen = h.settle(h.send(.syncTick))
        #expect(seen.posts.map(\.id).sorted() == [0, 1, 2])
        #expect(h.state.initialAssignmentDone && h.state.nodes[3]!.role == .undefined)
    }

    @Test("the window is server_online_attempt_times × server_online_wait_seconds")
    func windowFromConfig() throws {
        let config = try loadConfig([("server_online_attempt_times", 4), ("server_online_wait_seconds", 3)])
        let model = try DigsModelConfig(data: try Paths.ours("model_config/llama2-70B.json"))
        let machine = try DigsMachineConfig(data: try Paths.ours("machine_config/800IA2.json"))
        #expect(ControllerCore.Settings(config: config, model: model, machine: machine).initialProbeWindow == 12)
    }

    @Test("single_node decides at once: no roles to order")
    func singleNodeAtOnce() throws {
        var h = Harness(servers: 3)
        h.settings.singleNode = true
        _ = h.settle(try h.pass(), configFails: [2])
        #expect(h.state.initialAssignmentDone)
    }
}
