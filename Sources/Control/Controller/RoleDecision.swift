/// How many instances of a group become prefill and decode.
public struct RoleCounts: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var prefill: Int
    public var decode: Int

    public init(prefill: Int, decode: Int) {
        self.prefill = prefill
        self.decode = decode
    }

    public var total: Int { prefill + decode }
    public var description: String { "\(prefill)P\(decode)D" }
}

/// Why no role decision could be made.
public enum RoleDecisionError: Error, Sendable, Equatable {
    /// Fewer than 2 instances (§6.1).
    case tooFewInstances(count: Int)
    /// A request summary length is 0: allocation is skipped (role model §5.1).
    case zeroSummaryLength(input: Int, output: Int)
    /// An ability is zero or negative: the round fails with no decisions (role model §5.2).
    case nonPositiveAbility(prefill: Double, decode: Double, transfer: Double)
    /// Grouping needs at least one prefill and one decode instance (§6.5).
    case missingRole(prefill: Int, decode: Int)
    /// The rates are invalid (§6.1); the config validation normally catches this.
    case invalidRates(p: Int, d: Int)
}

/// P/D counts: the definite ratio (docs/wire/controller.md §6.2) and the automatic one (docs/controller-role-model.md §5).
public enum RoleRatio {
    static let eps = 1e-6

    /// The fill of role model §5.3: `p = d = 0; while p+d < N { if pA·p ≤ dA·d { p += 1 } else { d += 1 } }`.
    /// The first instance is always P.
    public static func fill(instanceCount n: Int, prefillAbility pA: Double, decodeAbility dA: Double) -> RoleCounts {
        var p = 0
        var d = 0
        while p + d < n {
            if pA * Double(p) <= dA * Double(d) { p += 1 } else { d += 1 }
        }
        return RoleCounts(prefill: p, decode: d)
    }

    /// The definite ratio `pRate:dRate` over `n` instances (§6.2): the fill with pA = dRate and dA = pRate.
    /// - Throws: `.invalidRates` unless both rates are ≥ 1 with each ≤ 767 and a sum ≤ 768.
    public static func definite(instanceCount n: Int, pRate: Int, dRate: Int) throws(RoleDecisionError) -> RoleCounts {
        guard pRate > 0, dRate > 0, ControllerConfig.areValidRates(p: pRate, d: dRate) else {
            throw .invalidRates(p: pRate, d: dRate)
        }
        return fill(instanceCount: n, prefillAbility: Double(dRate), decodeAbility: Double(pRate))
    }

    /// The automatic ratio over `n` instances from simulated abilities (role model §5).
    /// - Throws: `.zeroSummaryLength` or `.nonPositiveAbility` (no decision is made).
    public static func automatic(
        instanceCount n: Int, abilities a: LlamaSimulator.Abilities, inputLength: Int, outputLength: Int
    ) throws(RoleDecisionError) -> RoleCounts {
        guard inputLength != 0, outputLength != 0 else {
            throw .zeroSummaryLength(input: inputLength, output: outputLength)
        }
        guard a.prefill > eps, a.decode > eps, a.transfer > eps else {
            throw .nonPositiveAbility(prefill: a.prefill, decode: a.decode, transfer: a.transfer)
        }
        return fill(instanceCount: n, prefillAbility: a.prefill, decodeAbility: a.decode)
    }

    /// The reference's fallback (`CalPdRatio`) when an ability is ≤ 0: d = ⌊N/2⌋, p = N − d.
    public static func fallback(instanceCount n: Int) -> RoleCounts {
        RoleCounts(prefill: n - n / 2, decode: n / 2)
    }

    /// The rate reported in the log after the automatic decision (role model §5, "Reported rate"): over
    /// p = 1...15 and d = 1...16−p, the pair minimising |p·pA − d·dA|; ties keep the smaller p, then d.
    public static func reportedRate(prefillAbility pA: Double, decodeAbility dA: Double) -> (p: Int, d: Int) {
        var best = (p: 1, d: 1)
        var bestDiff = Double.infinity
        for p in 1...15 {
            for d in 1...(16 - p) {
                let diff = abs(Double(p) * pA - Double(d) * dA)
                if diff < bestDiff - eps {
                    bestDiff = diff
                    best = (p, d)
                }
            }
        }
        return best
    }

    /// t for the simulator: ⌊Σ device counts of each node's first server ÷ number of nodes⌋, 1 without nodes.
    public static func tensorParallel(deviceCounts: [Int]) -> Int {
        guard !deviceCounts.isEmpty else { return 1 }
        return deviceCounts.reduce(0, +) / deviceCounts.count
    }

    /// The heterogeneous-mode role from `hardware_type` (§6.4): `800I A2(32G)` → P, `800I A2(64G)` → D,
    /// case-insensitive; nil for anything else.
    public static func heterogeneousRole(hardwareType: String) -> InstanceRole? {
        switch hardwareType.lowercased() {
        case "800i a2(32g)": return .prefill
        case "800i a2(64g)": return .decode
        default: return nil
        }
    }

    /// The multi-node (big-EP) role of a rank-table group from its `deploy_server` (§6.4).
    ///
    /// With the same `enable_dist_dp_server` for P and D: "2" → P, "1" → D, anything else → U. With different
    /// flags: the group is P when `deploy_server` (as an integer, 0 when absent) is non-zero exactly when P is the
    /// distributed side, else D.
    public static func multiNodeRole(
        deployServer: String?, prefillDistributed: Bool, decodeDistributed: Bool
    ) -> InstanceRole {
        if prefillDistributed == decodeDistributed {
            switch deployServer {
            case "2": return .prefill
            case "1": return .decode
            default: return .undefined
            }
        }
        let flag = (Int(deployServer ?? "") ?? 0) != 0
        return flag == prefillDistributed ? .prefill : .decode
    }
}
