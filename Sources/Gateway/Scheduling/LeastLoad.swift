/// `least_load` (DECISIONS 16): the available instance with the fewest requests in flight; ties go to
/// the one with more available slots, then to registration order.
///
/// single_node picks among mixed instances; PD picks the least-loaded P, then the least-loaded D among
/// that P's decodes (falling back to the next P if it has none available). Offline and resource-less
/// instances (avail slots or blocks 0) are skipped.
public struct LeastLoadPolicy: Sendable {
    public init() {}

    /// Whether `i` may take a new request.
    public static func isEligible(_ i: InstanceInfo) -> Bool { !i.offline && i.hasFreeResources }

    /// Candidates sorted best first: fewest in flight, then most free slots, then registration order.
    public static func ranked(_ candidates: [InstanceInfo], load: LoadCounters) -> [InstanceInfo] {
        candidates.enumerated()
            .filter { isEligible($0.element) }
            .sorted { a, b in
                let la = load[a.element.id], lb = load[b.element.id]
                if la != lb { return la < lb }
                if a.element.availSlots != b.element.availSlots { return a.element.availSlots > b.element.availSlots }
                return a.offset < b.offset
            }
            .map(\.element)
    }

    /// Picks an instance (single) or a pair (PD), or nil if nothing is eligible.
    public func select(_ snapshot: InstanceSnapshot, load: LoadCounters, pd: Bool) -> SchedulingDecision? {
        if !pd {
            return Self.ranked(snapshot.instances(role: .mixed), load: load).first.map { .single($0.id) }
        }
        for p in Self.ranked(snapshot.instances(role: .prefill), load: load) {
            if let d = Self.ranked(snapshot.decodes(for: p.id), load: load).first {
                return .pair(prefill: p.id, decode: d.id)
            }
        }
        return nil
    }
}
