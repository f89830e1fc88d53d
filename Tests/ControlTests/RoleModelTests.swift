import Foundation
import Testing

@testable import Control
import MSCore

/// Every vector of docs/controller-role-model.md §8, plus the reference expectations it reproduces.
@Suite("automatic ratio: analytic role model")
struct RoleModelTests {
    static func model(_ name: String) -> DigsModelConfig {
        try! DigsModelConfig(data: try! Paths.ours("model_config/\(name).json"), file: name)
    }
    static func machine(_ name: String) -> DigsMachineConfig {
        try! DigsMachineConfig(data: try! Paths.ours("machine_config/\(name).json"), file: name)
    }

    /// One row of §8.
    struct Vector: Sendable, CustomTestStringConvertible {
        var row: Int
        var model: String
        var machine: String
        var t: Int
        var q: Int
        var sIn: Int
        var sOut: Int
        var bp: Int
        var tp: Double
        var bd: Int
        var td: Double
        var pA: Double
        var dA: Double
        var tA: Double
        var fills: [(n: Int, p: Int, d: Int)]
        var rate: (p: Int, d: Int)
        var testDescription: String { "row \(row)" }

        var simulator: LlamaSimulator {
            LlamaSimulator(model: RoleModelTests.model(model), machine: RoleModelTests.machine(machine),
                           parameters: .init(prefillSLO: 1000, decodeSLO: 50, tensorParallel: t, pipelineParallel: q))
        }
    }

    // The DT fixture is llama2-70B with 800TA2 values.
    static let vectors: [Vector] = [
        Vector(row: 1, model: "llama2-70B", machine: "800TA2", t: 8, q: 1, sIn: 3000, sOut: 200,
               bp: 3, tp: 953.785, bd: 73, td: 49.866, pA: 3.145362, dA: 7.319556, tA: 21.4338,
               fills: [(2, 1, 1), (3, 2, 1), (4, 3, 1), (5, 3, 2), (6, 4, 2), (7, 5, 2), (8, 5, 3), (17, 12, 5)], rate: (7, 3)),
        Vector(row: 2, model: "llama2-70B", machine: "800TA2", t: 8, q: 1, sIn: 400, sOut: 1000,
               bp: 25, tp: 999.316, bd: 123, td: 49.796, pA: 25.017108, dA: 2.470074, tA: 160.7535,
               fills: [(3, 1, 2), (5, 1, 4), (17, 2, 15)], rate: (1, 10)),
        Vector(row: 3, model: "llama2-70B", machine: "800TA2", t: 8, q: 1, sIn: 1024, sOut: 1024,
               bp: 9, tp: 935.640, bd: 99, td: 49.916, pA: 9.619085, dA: 1.936846, tA: 62.7943,
               fills: [(3, 1, 2), (5, 1, 4), (6, 1, 5), (8, 2, 6)], rate: (1, 5)),
        Vector(row: 4, model: "llama2-70B", machine: "800TA2", t: 8, q: 1, sIn: 2048, sOut: 512,
               bp: 4, tp: 853.001, bd: 85, td: 49.749, pA: 4.689328, dA: 3.337090, tA: 31.3972,
               fills: [(4, 2, 2), (17, 7, 10)], rate: (5, 7)),
        Vector(row: 5, model: "llama2-70B", machine: "800IA2", t: 8, q: 1, sIn: 3000, sOut: 200,
               bp: 2, tp: 775.995, bd: 3, td: 49.544, pA: 2.577337, dA: 0.302762, tA: 21.4338,
               fills: [(4, 1, 3), (8, 1, 7)], rate: (1, 9)),
        Vector(row: 6, model: "llama2-70B", machine: "800IA2", t: 1, q: 1, sIn: 3000, sOut: 200,
               bp: 1, tp: 3028.671, bd: 1, td: 381.885, pA: 0.330178, dA: 0.013093, tA: 9.0300,
               fills: [(4, 1, 3), (17, 1, 16)], rate: (1, 15)),
        Vector(row: 7, model: "llama2-70B", machine: "800IA2", t: 16, q: 1, sIn: 3000, sOut: 200,
               bp: 4, tp: 827.848, bd: 79, td: 49.747, pA: 4.831803, dA: 7.940176, tA: 23.7656,
               fills: [(4, 2, 2), (17, 10, 7)], rate: (5, 3)),
        Vector(row: 8, model: "llama2-7B", machine: "800IA2", t: 4, q: 2, sIn: 1024, sOut: 256,
               bp: 70, tp: 999.744, bd: 135, td: 49.834, pA: 70.017956, dA: 10.582103, tA: 98.8142,
               fills: [(6, 1, 5), (17, 3, 14)], rate: (2, 13)),
        Vector(row: 9, model: "deepseek-v2-16B", machine: "800TA2", t: 8, q: 1, sIn: 3000, sOut: 200,
               bp: 75, tp: 998.312, bd: 284, td: 49.883, pA: 75.126839, dA: 28.466852, tA: 53.0897,
               fills: [(8, 2, 6), (17, 5, 12)], rate: (3, 8)),
    ]

    @Test("§8 vectors: batches, step times, abilities, transfer", arguments: vectors)
    func vector(v: Vector) {
        let a = v.simulator.abilities(inputLength: v.sIn, outputLength: v.sOut)
        #expect(a.prefillBatch == v.bp)
        #expect(abs(a.prefillTime - v.tp) < 5e-4, "T_p \(a.prefillTime)")
        #expect(a.decodeBatch == v.bd)
        #expect(abs(a.decodeTime - v.td) < 5e-4, "T_d \(a.decodeTime)")
        #expect(abs(a.prefill - v.pA) < 5e-6, "pA \(a.prefill)")
        #expect(abs(a.decode - v.dA) < 5e-6, "dA \(a.decode)")
        #expect(abs(a.transfer - v.tA) < 5e-4, "tA \(a.transfer)")
    }

    @Test("§8 vectors: P:D per N and the reported rate", arguments: vectors)
    func fills(v: Vector) throws {
        let a = v.simulator.abilities(inputLength: v.sIn, outputLength: v.sOut)
        for f in v.fills {
            let c = try RoleRatio.automatic(instanceCount: f.n, abilities: a, inputLength: v.sIn, outputLength: v.sOut)
            #expect(c == RoleCounts(prefill: f.p, decode: f.d), "N=\(f.n)")
        }
        let r = RoleRatio.reportedRate(prefillAbility: a.prefill, decodeAbility: a.decode)
        #expect(r.p == v.rate.p && r.d == v.rate.d)
    }

    @Test("row 1 intermediate values")
    func row1Intermediates() {
        let s = Self.vectors[0].simulator
        #expect(abs(s.compute(tokens: 3000, context: 3000) - 272.505353) < 1e-6)
        #expect(abs(s.fetch(inputLength: 3000, outputLength: 200, decodeBatch: nil) - 23.523967) < 1e-6)
        #expect(abs(s.communication(batch: 1, sigma: 3000) - (37.368463 + 0.64)) < 1e-6)
        #expect(abs(s.communication(batch: 0, sigma: 3000) - 0.64) < 1e-12)
        #expect(abs(s.prefillTime(batch: 4, inputLength: 3000) - 1263.659) < 1e-3)
        #expect(abs(s.compute(tokens: 73, context: 3200) - 6.663398) < 1e-6)
        #expect(abs(s.fetch(inputLength: 3000, outputLength: 200, decodeBatch: 73) - 41.653713) < 1e-6)
        #expect(abs(s.communication(batch: 1, sigma: 1) - (0.0124562 + 0.64)) < 1e-7)
        #expect(abs(s.decodeTime(batch: 74, inputLength: 3000, outputLength: 200) - 50.218) < 1e-3)
        #expect(s.weightMemory == 15.9375)
        #expect(abs(s.memoryPerToken - 3.8147e-5) < 1e-9)
    }

    @Test("row 6: weights exceed memory, so both batches stay 1 without error")
    func overLargeModel() {
        let s = Self.vectors[5].simulator
        #expect(s.weightMemory == 127.5)
        #expect(s.weightMemory > 32 * 0.9)
    }

    @Test("row 7: t = 16 spans 2 hosts, so the a₁ term (without ·1000) is present")
    func multiHost() {
        let s = Self.vectors[6].simulator
        var oneHost = s
        oneHost.parameters.cardsPerHost = 16
        #expect(s.communication(batch: 1, sigma: 3000) > oneHost.communication(batch: 1, sigma: 3000))
    }

    // Reference TestInstanceRoleManager TC10–TC14 and docs/wire/controller.md §12 test 7 (fixture = llama2-70B on 800TA2 values).
    @Test("long input / short output gives #P > #D; short input / long output gives #P < #D, for N < 16 and N > 16")
    func directionOfTheRatio() throws {
        let long = Self.vectors[0].simulator.abilities(inputLength: 3000, outputLength: 200)
        let short = Self.vectors[1].simulator.abilities(inputLength: 400, outputLength: 1000)
        for n in [5, 17] {
            let l = try RoleRatio.automatic(instanceCount: n, abilities: long, inputLength: 3000, outputLength: 200)
            let s = try RoleRatio.automatic(instanceCount: n, abilities: short, inputLength: 400, outputLength: 1000)
            #expect(l.prefill > l.decode, "N=\(n) \(l)")
            #expect(s.prefill < s.decode, "N=\(n) \(s)")
        }
    }

    // Reference TestInstanceRoleChange TC03, TC06, TC07, TC08.
    @Test("re-decisions with changing lengths follow the reference's role-change cases")
    func roleChanges() throws {
        let sim = Self.vectors[0].simulator
        func counts(_ n: Int, _ sIn: Int, _ sOut: Int) throws -> RoleCounts {
            try RoleRatio.automatic(instanceCount: n, abilities: sim.abilities(inputLength: sIn, outputLength: sOut),
                                    inputLength: sIn, outputLength: sOut)
        }
        // TC03: N=3 goes 2P1D → 1P2D → 2P1D.
        #expect(try [counts(3, 3000, 200), counts(3, 1024, 1024), counts(3, 3000, 200)].map(\.prefill) == [2, 1, 2])
        // TC06: N=2 → 1 P.
        #expect(try counts(2, 3000, 200).prefill == 1)
        #expect(try counts(2, 400, 1000).prefill == 1)
        // TC07: groups of 3 and 5 go 2:1 / 3:2 → 1:2 / 1:4 → back.
        #expect(try counts(3, 3000, 200) == .init(prefill: 2, decode: 1) && counts(5, 3000, 200) == .init(prefill: 3, decode: 2))
        #expect(try counts(3, 1024, 1024) == .init(prefill: 1, decode: 2) && counts(5, 1024, 1024) == .init(prefill: 1, decode: 4))
        // TC08: N=7 5:2 → N=6 at row 3 gives 1:5 → N=5 at row 1 gives 3:2.
        #expect(try counts(7, 3000, 200) == .init(prefill: 5, decode: 2))
        #expect(try counts(6, 1024, 1024) == .init(prefill: 1, decode: 5))
        #expect(try counts(5, 3000, 200) == .init(prefill: 3, decode: 2))
    }

    // Reference TestNodeScheduler.Test1P3DInit and docs/wire/controller.md §12 test 8 (the decision and grouping part).
    @Test("shipped config, 4 servers with 1 device each: 1P3D, every D has peers [P]")
    func test1P3DInit() throws {
        let config = try loadConfig()
        let model = try DigsModelConfig(data: try Paths.ours("model_config/llama2-70B.json"))
        let machine = try DigsMachineConfig(data: try Paths.ours("machine_config/800IA2.json"))
        let table = try RankTable(data: rankTableJSON(servers: servers(4)).data, options: .init(config: config))
        var registry = InstanceIdentityRegistry()
        let diff = registry.reconcile(table.instances, now: Date(timeIntervalSince1970: 0), retention: 7200)
        let t = RoleRatio.tensorParallel(deviceCounts: diff.new.map { $0.instance!.devices.count })
        #expect(t == 1)
        let sim = LlamaSimulator(model: model, machine: machine, parameters: .init(
            prefillSLO: Double(config.digsPrefillSLO), decodeSLO: Double(config.digsDecodeSLO), tensorParallel: t,
            pipelineParallel: config.digsPP))
        let a = sim.abilities(inputLength: config.digsRequestSummaryInputLength, outputLength: config.digsRequestSummaryOutputLength)
        let counts = try RoleRatio.automatic(instanceCount: 4, abilities: a, inputLength: 3000, outputLength: 200)
        #expect(counts == RoleCounts(prefill: 1, decode: 3))
        let groups = try InstanceGrouping.group(InstanceGrouping.assignRoles(diff.new.map(\.id), counts: counts))
        #expect(groups == [InstanceGroup(id: 0, prefill: [0], decode: [1, 2, 3])])
        for d in [1, 2, 3] { #expect(groups[0].peers(of: d) == [0]) }
        #expect(groups[0].peers(of: 0) == [1, 2, 3])
    }

    // Reference TestLlamaSimulator.CalAbility_Valid.
    @Test("row 4 abilities are positive")
    func calAbilityValid() {
        let a = Self.vectors[3].simulator.abilities(inputLength: 2048, outputLength: 512)
        #expect(a.prefill > 0 && a.decode > 0)
    }

    @Test("zero lengths or abilities give no decision; the fallback splits d = ⌊N/2⌋")
    func failures() throws {
        let a = Self.vectors[0].simulator.abilities(inputLength: 3000, outputLength: 200)
        #expect(throws: RoleDecisionError.zeroSummaryLength(input: 0, output: 200)) {
            try RoleRatio.automatic(instanceCount: 4, abilities: a, inputLength: 0, outputLength: 200)
        }
        let zero = Self.vectors[0].simulator.abilities(inputLength: 3000, outputLength: 0)
        #expect(zero.prefill == 0 && zero.decode == 0)
        #expect(throws: RoleDecisionError.self) {
            try RoleRatio.automatic(instanceCount: 4, abilities: zero, inputLength: 3000, outputLength: 0)
        }
        var noTransfer = a
        noTransfer.transfer = 0
        #expect(throws: RoleDecisionError.nonPositiveAbility(prefill: a.prefill, decode: a.decode, transfer: 0)) {
            try RoleRatio.automatic(instanceCount: 4, abilities: noTransfer, inputLength: 3000, outputLength: 200)
        }
        #expect(RoleRatio.fallback(instanceCount: 5) == RoleCounts(prefill: 3, decode: 2))
        #expect(RoleRatio.fallback(instanceCount: 4) == RoleCounts(prefill: 2, decode: 2))
    }

    @Test("fill: the first instance is always P; N=1 gives 1P0D; N=2 always 1P1D")
    func fillEdges() {
        #expect(RoleRatio.fill(instanceCount: 1, prefillAbility: 1, decodeAbility: 100) == .init(prefill: 1, decode: 0))
        #expect(RoleRatio.fill(instanceCount: 2, prefillAbility: 100, decodeAbility: 1) == .init(prefill: 1, decode: 1))
        #expect(RoleRatio.fill(instanceCount: 2, prefillAbility: 1, decodeAbility: 100) == .init(prefill: 1, decode: 1))
        #expect(RoleRatio.fill(instanceCount: 0, prefillAbility: 1, decodeAbility: 1) == .init(prefill: 0, decode: 0))
    }

    @Test("t = ⌊Σ devices ÷ nodes⌋, 1 without nodes")
    func tensorParallel() {
        #expect(RoleRatio.tensorParallel(deviceCounts: []) == 1)
        #expect(RoleRatio.tensorParallel(deviceCounts: [8, 8]) == 8)
        #expect(RoleRatio.tensorParallel(deviceCounts: [8, 7]) == 7)
    }

    @Test("model and machine files: numbers or numeric strings within range; torch_dtype checked")
    func fileValidation() throws {
        let base = try JSON.parse(try Paths.ours("model_config/llama2-7B.json"))
        #expect(try DigsModelConfig(data: base.setting("hidden_size", to: 4096).data).hiddenSize == 4096)
        for (k, v) in [("hidden_size", JSON.string("abc")), ("hidden_size", "0"), ("num_hidden_layers", "2147483648"),
                       ("torch_dtype", "float32"), ("num_key_value_heads", nil), ("initializer_range", .bool(true))] {
            do {
                _ = try DigsModelConfig(data: base.setting(k, to: v).data, file: "llama2-7B.json")
                Issue.record("\(k)=\(v?.rendered ?? "missing") should fail")
            } catch {
                #expect(error.key == k && error.file == "llama2-7B.json")
            }
        }
        let m = try JSON.parse(try Paths.ours("machine_config/800IA2.json"))
        for (k, v) in [("BWeff", JSON.string("1.5")), ("eta_OOM", "0"), ("TFLOPS", "-1"), ("MEMCapacity", nil)] {
            do {
                _ = try DigsMachineConfig(data: m.setting(k, to: v).data)
                Issue.record("\(k) should fail")
            } catch {
                #expect(error.key == k)
            }
        }
        #expect(try DigsMachineConfig(data: m.setting("BWeff", to: "1").data).bwEff == 1)
    }
}
