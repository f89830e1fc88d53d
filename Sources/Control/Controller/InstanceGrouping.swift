/// One P/D group: its members and the peer list each member is posted with (§6.5).
public struct InstanceGroup: Sendable, Equatable {
    public var id: Int
    /// Prefill ids, in table order.
    public var prefill: [Int]
    /// Decode ids, in table order.
    public var decode: [Int]
    /// Flex ids (unreachable while `has_flex` is rejected; kept for the wire format).
    public var flex: [Int]

    public init(id: Int, prefill: [Int], decode: [Int], flex: [Int] = []) {
        self.id = id
        self.prefill = prefill
        self.decode = decode
        self.flex = flex
    }

    public var members: [Int] { prefill + decode + flex }

    /// The peers `id` is posted with: P → all D + flex; D → all P + flex; flex → everyone else.
    public func peers(of id: Int) -> [Int] {
        if prefill.contains(id) { return decode + flex }
        if decode.contains(id) { return prefill + flex }
        if flex.contains(id) { return prefill + decode + flex.filter { $0 != id } }
        return []
    }

    public func role(of id: Int) -> InstanceRole? {
        if prefill.contains(id) { return .prefill }
        if decode.contains(id) { return .decode }
        if flex.contains(id) { return .flex }
        return nil
    }
}

/// Role assignment and grouping (§6.5 with DECISIONS 18: no 16-instance cap).
public enum InstanceGrouping {
    /// The reference's group size; larger clusters are split into several groups of about this size.
    public static let defaultMaxGroupSize = 16

    /// Gives the first `counts.prefill` ids P and the next `counts.decode` ids D (§6.2); further ids stay U.
    public static func assignRoles(_ ids: [Int], counts: RoleCounts) -> [(id: Int, role: InstanceRole)] {
        ids.enumerated().map { i, id in
            if i < counts.prefill { return (id, .prefill) }
            if i < counts.prefill + counts.decode { return (id, .decode) }
            return (id, .undefined)
        }
    }

    /// Splits decided instances into P/D groups.
    ///
    /// Every group gets ≥ 1 P and ≥ 1 D. With N ≤ `maxGroupSize` there is one group, id 0, as in the reference.
    /// Larger clusters get G = min(⌈N / maxGroupSize⌉, #P, #D) groups; P and D are each split into G contiguous,
    /// balanced chunks in table order, so every group keeps the cluster's ratio. Undefined members are ignored.
    /// - Throws: `.missingRole` when there is no P or no D (and no flex).
    public static func group(
        _ decided: [(id: Int, role: InstanceRole)], maxGroupSize: Int = defaultMaxGroupSize
    ) throws(RoleDecisionError) -> [InstanceGroup] {
        let p = decided.filter { $0.role == .prefill }.map(\.id)
        let d = decided.filter { $0.role == .decode }.map(\.id)
        let f = decided.filter { $0.role == .flex }.map(\.id)
        if f.isEmpty && (p.isEmpty || d.isEmpty) { throw .missingRole(prefill: p.count, decode: d.count) }
        if p.isEmpty || d.isEmpty { return [InstanceGroup(id: 0, prefill: p, decode: d, flex: f)] }
        let n = p.count + d.count + f.count
        let size = max(1, maxGroupSize)
        let g = max(1, min((n + size - 1) / size, p.count, d.count))
        let pc = chunks(p, g)
        let dc = chunks(d, g)
        return (0..<g).map { i in InstanceGroup(id: i, prefill: pc[i], decode: dc[i], flex: i == 0 ? f : []) }
    }

    /// `list` cut into `n` contiguous chunks whose sizes differ by at most one (larger ones first).
    static func chunks(_ list: [Int], _ n: Int) -> [[Int]] {
        var out: [[Int]] = []
        var start = 0
        for i in 0..<n {
            let len = list.count / n + (i < list.count % n ? 1 : 0)
            out.append(Array(list[start..<start + len]))
            start += len
        }
        return out
    }
}
