/// `least_load` (DECISIONS 16): the available instance with the fewest requests in flight; ties go to
/// the one with more available slots, then to registration order.
///
/// single_node picks among mixed instances; PD picks the least-loaded P, then the least-loaded D among
/// that P's decodes (falling back to the next P if it has none available). Offline and resource-less
/// instances (avail slots or blocks 0) are skipped.
///
/// Loop-scoped: its only state is the rotation that spreads ties, which needs no agreement between loops.
public struct LeastLoadPolicy: SchedulingPolicy {
    public static let name = "least_load"
    public static let needs: RequestNeeds = []
    public static let scope = PolicyStateScope.loop
    public static let modes = PolicyModes.all

    public init() {}

    public init(config: CoordinatorConfig.Scheduler) {}

    public mutating func select(_ request: RequestFeatures, from candidates: Candidates, load: LoadCounters) -> SchedulingDecision? {
        select(candidates.snapshot, load: load, pd: candidates.pd)
    }

    /// Whether `i` may take a new request.
    public static func isEligible(_ i: InstanceInfo) -> Bool { CandidateFilter.available(i) }

    /// Candidates sorted best first: fewest in flight, then most free slots, then registration order.
    /// Candidates by load, then by free slots, then in registration order rotated by `rotation` (so that equal
    /// instances take turns instead of the first one taking every idle-time request).
    public static func ranked(_ candidates: [InstanceInfo], load: LoadCounters, rotation: Int = 0) -> [InstanceInfo] {
        let n = max(candidates.count, 1)
        return candidates.enumerated()
            .filter { isEligible($0.element) }
            .sorted { a, b in
                let la = load[a.element.id], lb = load[b.element.id]
                if la != lb { return la < lb }
                if a.element.availSlots != b.element.availSlots { return a.element.availSlots > b.element.availSlots }
                return (a.offset - rotation % n + n) % n < (b.offset - rotation % n + n) % n
            }
            .map(\.element)
    }

    /// Picks an instance (single) or a pair (PD), or nil if nothing is eligible.
    /// Rotates ties between equally loaded instances.
    var rotation = 0

    public mutating func select(_ snapshot: InstanceSnapshot, load: LoadCounters, pd: Bool) -> SchedulingDecision? {
        rotation &+= 1
        if !pd {
            return Self.ranked(snapshot.instances(role: .mixed), load: load, rotation: rotation).first.map { .single($0.id) }
        }
        for p in Self.ranked(snapshot.instances(role: .prefill), load: load, rotation: rotation) {
            if let d = Self.ranked(snapshot.decodes(for: p.id), load: load).first {
                return .pair(prefill: p.id, decode: d.id)
            }
        }
        return nil
    }
}
