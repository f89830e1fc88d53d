/// A round-robin cursor over a candidate list (docs/wire/coordinator.md §5.2).
///
/// The cursor advances *before* each use, so the first pick is index 1 mod n. Unavailable candidates
/// are skipped; after one full circle without a pick the attempt fails.
public struct RoundRobinCursor: Sendable, Equatable {
    public private(set) var position: Int

    public init(position: Int = 0) { self.position = position }

    /// Picks the next available candidate, or nil after a full circle.
    public mutating func next(_ candidates: [InstanceInfo], available: (InstanceInfo) -> Bool) -> InstanceInfo? {
        let n = candidates.count
        guard n > 0 else { return nil }
        for _ in 0..<n {
            position = (position + 1) % n
            if available(candidates[position]) { return candidates[position] }
        }
        return nil
    }
}

/// `round_robin` under default_scheduler, single_node and PD (docs/wire/coordinator.md §5.2).
///
/// - single_node: instances in registration order, cursor advanced before use.
/// - PD: P round-robin as above; then D round-robin among the D's listing that P in `peers`, with a
///   cursor per P whose first use takes index 0. If that D is unavailable, move on to the next P.
///
/// Availability: ``CandidateFilter/hasResources(_:)``. Offline flags are ignored, as in the reference
/// (offline/online is a no-op under default_scheduler). Cluster-scoped: the split is even over all requests,
/// whichever loop they arrive on.
public struct RoundRobinPolicy: SchedulingPolicy {
    public static let name = "round_robin"
    public static let needs: RequestNeeds = []
    public static let scope = PolicyStateScope.cluster
    public static let modes = PolicyModes.all

    private var cursor = RoundRobinCursor()
    private var decodeCursors: [InstanceID: Int] = [:]

    public init() {}

    public init(config: CoordinatorConfig.Scheduler) {}

    public mutating func select(_ request: RequestFeatures, from candidates: Candidates, load: LoadCounters) -> SchedulingDecision? {
        select(candidates.snapshot, pd: candidates.pd)
    }

    /// Picks a mixed instance (single_node).
    public mutating func selectSingle(_ snapshot: InstanceSnapshot) -> SchedulingDecision? {
        cursor.next(snapshot.instances(role: .mixed), available: CandidateFilter.hasResources).map { .single($0.id) }
    }

    /// Picks a P and one of its D's (PD).
    ///
    /// The first `ps.count` turns are the reference's pass. When they find nothing the turns go on, with the
    /// same cursor moves, until each available P has offered each of its D's: what asking again would have
    /// found, so nil means no pair in this snapshot can take the request.
    public mutating func selectPair(_ snapshot: InstanceSnapshot) -> SchedulingDecision? {
        let ps = snapshot.instances(role: .prefill)
        guard !ps.isEmpty else { return nil }
        let widest = ps.reduce(1) { max($0, snapshot.decodes(for: $1.id).count) }
        for _ in 0..<(ps.count * widest) {
            guard let p = cursor.next(ps, available: CandidateFilter.hasResources) else { return nil }
            let ds = snapshot.decodes(for: p.id)
            guard !ds.isEmpty else { continue }
            let k = decodeCursors[p.id, default: 0]
            decodeCursors[p.id] = k + 1
            let d = ds[k % ds.count]
            if CandidateFilter.hasResources(d) { return .pair(prefill: p.id, decode: d.id) }
        }
        return nil
    }

    /// Picks per deploy mode.
    public mutating func select(_ snapshot: InstanceSnapshot, pd: Bool) -> SchedulingDecision? {
        pd ? selectPair(snapshot) : selectSingle(snapshot)
    }

    /// Drops per-P cursors of instances no longer registered (bounded memory).
    public mutating func prune(_ snapshot: InstanceSnapshot) {
        decodeCursors = decodeCursors.filter { snapshot[$0.key] != nil }
    }
}
