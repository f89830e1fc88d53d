import Foundation
import MSCore
import Testing

@testable import Control

@Suite("definite ratio and grouping (§6.2, §6.5, DECISIONS 18)")
struct RoleDecisionTests {
    // docs/wire/controller.md §6.2 examples; docs/wire/controller.md §12 test 6.
    @Test("definite ratio matches the §6.2 examples exactly", arguments: [
        (1, 1, 2, 1, 1), (1, 1, 3, 2, 1), (1, 1, 6, 3, 3), (1, 1, 17, 9, 8),
        (3, 2, 5, 3, 2), (1, 15, 6, 1, 5), (1, 15, 17, 2, 15),
    ])
    func definite(pRate: Int, dRate: Int, n: Int, p: Int, d: Int) throws {
        #expect(try RoleRatio.definite(instanceCount: n, pRate: pRate, dRate: dRate) == RoleCounts(prefill: p, decode: d))
    }

    @Test("definite ratio: the first p instances in table order are P, the next d are D")
    func firstPThenD() throws {
        let c = try RoleRatio.definite(instanceCount: 5, pRate: 3, dRate: 2)
        let roles = InstanceGrouping.assignRoles([10, 11, 12, 13, 14], counts: c)
        #expect(roles.map(\.role) == [.prefill, .prefill, .prefill, .decode, .decode])
        #expect(roles.map(\.id) == [10, 11, 12, 13, 14])
        #expect(InstanceGrouping.assignRoles([1, 2, 3], counts: .init(prefill: 1, decode: 1)).map(\.role)
            == [.prefill, .decode, .undefined])
    }

    @Test("definite ratio rejects invalid rates", arguments: [(0, 1), (1, 0), (768, 1), (400, 400)])
    func invalidRates(p: Int, d: Int) {
        #expect(throws: RoleDecisionError.invalidRates(p: p, d: d)) {
            try RoleRatio.definite(instanceCount: 4, pRate: p, dRate: d)
        }
    }

    static func decided(_ p: Int, _ d: Int) -> [(id: Int, role: InstanceRole)] {
        InstanceGrouping.assignRoles(Array(0..<(p + d)), counts: .init(prefill: p, decode: d))
    }

    // docs/wire/controller.md §12 test 5.
    @Test("3P3D, 6P3D, 15P1D: one group holds all", arguments: [(3, 3), (6, 3), (15, 1)])
    func oneGroup(p: Int, d: Int) throws {
        let groups = try InstanceGrouping.group(Self.decided(p, d))
        #expect(groups.count == 1)
        #expect(groups[0].id == 0)
        #expect(groups[0].prefill == Array(0..<p) && groups[0].decode == Array(p..<(p + d)))
        #expect(groups[0].peers(of: 0) == Array(p..<(p + d)))
        #expect(groups[0].peers(of: p) == Array(0..<p))
    }

    @Test("P only or D only fails")
    func missingRole() {
        #expect(throws: RoleDecisionError.missingRole(prefill: 4, decode: 0)) {
            try InstanceGrouping.group(Self.decided(4, 0))
        }
        #expect(throws: RoleDecisionError.missingRole(prefill: 0, decode: 0)) { try InstanceGrouping.group([]) }
        let dOnly: [(id: Int, role: InstanceRole)] = [(0, .decode), (1, .decode)]
        #expect(throws: RoleDecisionError.self) { try InstanceGrouping.group(dOnly) }
    }

    // The reference fails above 16 instances; DECISIONS 18 removes the cap.
    @Test("17 instances (reference: failure) are split into 2 groups, each with P and D")
    func seventeen() throws {
        let c = try RoleRatio.definite(instanceCount: 17, pRate: 1, dRate: 1)
        let groups = try InstanceGrouping.group(InstanceGrouping.assignRoles(Array(0..<17), counts: c))
        #expect(groups.count == 2)
        #expect(groups.map(\.prefill) == [[0, 1, 2, 3, 4], [5, 6, 7, 8]])
        #expect(groups.map(\.decode) == [[9, 10, 11, 12], [13, 14, 15, 16]])
        #expect(Set(groups.flatMap(\.members)) == Set(0..<17))
    }

    @Test("96 instances from one rank table: ids 0...95, 48P48D in 6 groups of 8P8D, peers within the group")
    func ninetySix() throws {
        let config = try loadConfig([("default_p_rate", 1), ("default_d_rate", 1)])
        let table = try RankTable(data: rankTableJSON(servers: servers(96, devices: 8)).data, options: .init(config: config))
        var registry = InstanceIdentityRegistry()
        let diff = registry.reconcile(table.instances, now: Date(timeIntervalSince1970: 0), retention: 7200)
        #expect(diff.new.map(\.id) == Array(0..<96))
        let counts = try RoleRatio.definite(instanceCount: 96, pRate: config.defaultPRate, dRate: config.defaultDRate)
        #expect(counts == RoleCounts(prefill: 48, decode: 48))
        let groups = try InstanceGrouping.group(InstanceGrouping.assignRoles(diff.new.map(\.id), counts: counts))
        #expect(groups.count == 6)
        #expect(groups.map(\.id) == Array(0..<6))
        for g in groups {
            #expect(g.prefill.count == 8 && g.decode.count == 8)
            for p in g.prefill { #expect(g.peers(of: p) == g.decode) }
            for d in g.decode { #expect(g.peers(of: d) == g.prefill) }
        }
        #expect(groups.flatMap(\.members).sorted() == Array(0..<96))
    }

    @Test("96 instances in auto mode (row 1 abilities): every group keeps P and D")
    func ninetySixAuto() throws {
        let sim = RoleModelTests.vectors[0].simulator
        let a = sim.abilities(inputLength: 3000, outputLength: 200)
        let counts = try RoleRatio.automatic(instanceCount: 96, abilities: a, inputLength: 3000, outputLength: 200)
        #expect(counts.total == 96 && counts.prefill > counts.decode)
        let groups = try InstanceGrouping.group(InstanceGrouping.assignRoles(Array(0..<96), counts: counts))
        #expect(groups.count == 6)
        #expect(groups.allSatisfy { !$0.prefill.isEmpty && !$0.decode.isEmpty })
        let sizes = groups.map(\.members.count)
        #expect(sizes.max()! - sizes.min()! <= 2 && sizes.reduce(0, +) == 96)
    }

    @Test("few decodes limit the number of groups: 95P1D stays one group")
    func unbalanced() throws {
        let groups = try InstanceGrouping.group(Self.decided(95, 1))
        #expect(groups.count == 1 && groups[0].members.count == 96)
    }

    @Test("heterogeneous roles from hardware_type, case-insensitive")
    func heterogeneous() {
        #expect(RoleRatio.heterogeneousRole(hardwareType: "800I A2(32G)") == .prefill)
        #expect(RoleRatio.heterogeneousRole(hardwareType: "800i a2(64g)") == .decode)
        #expect(RoleRatio.heterogeneousRole(hardwareType: "800T A2") == nil)
    }

    @Test("multi-node roles from deploy_server")
    func multiNode() {
        #expect(RoleRatio.multiNodeRole(deployServer: "2", prefillDistributed: false, decodeDistributed: false) == .prefill)
        #expect(RoleRatio.multiNodeRole(deployServer: "1", prefillDistributed: true, decodeDistributed: true) == .decode)
        #expect(RoleRatio.multiNodeRole(deployServer: nil, prefillDistributed: false, decodeDistributed: false) == .undefined)
        #expect(RoleRatio.multiNodeRole(deployServer: "1", prefillDistributed: true, decodeDistributed: false) == .prefill)
        #expect(RoleRatio.multiNodeRole(deployServer: "0", prefillDistributed: true, decodeDistributed: false) == .decode)
        #expect(RoleRatio.multiNodeRole(deployServer: "0", prefillDistributed: false, decodeDistributed: true) == .prefill)
    }

    @Test("role ASCII codes")
    func codes() {
        #expect(InstanceRole.allCases.map(\.asciiCode) == [80, 68, 70, 85])
        for r in InstanceRole.allCases { #expect(InstanceRole(asciiCode: r.asciiCode) == r) }
        #expect(InstanceRole(asciiCode: 0) == nil)
        #expect(InstanceRole.undefined.postPathComponent == nil && InstanceRole.decode.postPathComponent == "decode")
    }
}
