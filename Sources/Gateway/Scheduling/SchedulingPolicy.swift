/// A per-request scheduling policy (`digs_scheduler_config.algorithm_type`): a plug-in the Coordinator asks
/// where each request goes. See docs/architecture.md "Adding a scheduling policy".
///
/// A policy is a value with whatever state it learns (cursors, affinity memory); its host owns it per
/// ``PolicyStateScope`` and calls `select` serially, so a policy never locks anything itself.
public protocol SchedulingPolicy: Sendable {
    /// The `algorithm_type` that names it in the config.
    static var name: String { get }
    /// What the request parser must extract for it (the lean parser skips the prompt otherwise).
    static var needs: RequestNeeds { get }
    /// Whether its state means something cluster-wide (one instance for all loops) or per loop.
    static var scope: PolicyStateScope { get }
    /// Deploy modes it can place requests in.
    static var modes: PolicyModes { get }

    init(config: CoordinatorConfig.Scheduler)

    /// Where `request` goes now, or nil if no candidate can take it. A nil must mean "nothing fits this view":
    /// the caller then waits for capacity to be released instead of asking again with the same view.
    mutating func select(_ request: RequestFeatures, from candidates: Candidates, load: LoadCounters) -> SchedulingDecision?
}

/// What a policy reads from a request besides its dialect.
public struct RequestNeeds: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// The rendered prompt and a chat's per-message dumps (hashing, affinity).
    public static let prompt = RequestNeeds(rawValue: 1)
}

/// Where a policy's state lives.
public enum PolicyStateScope: Sendable {
    /// The state only breaks ties (a rotation): each event loop owns its own copy, no lock.
    case loop
    /// The state is about the whole cluster (a round-robin cursor whose fairness is over all requests, affinity
    /// memory a conversation must find on whichever connection it comes back): one copy behind its own lock.
    case cluster
}

/// The deploy modes a policy supports.
public struct PolicyModes: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let singleNode = PolicyModes(rawValue: 1)
    public static let pd = PolicyModes(rawValue: 2)
    public static let all: PolicyModes = [.singleNode, .pd]
}

/// The instances a request may go to: the view after the Coordinator's exclusions (open circuits, unlinked D's,
/// instances a retry failed on).
public struct Candidates: Sendable {
    public let snapshot: InstanceSnapshot
    /// True in every PD deploy mode: a decision is then a P/D pair.
    public let pd: Bool

    public init(_ snapshot: InstanceSnapshot, pd: Bool) {
        self.snapshot = snapshot
        self.pd = pd
    }

    /// Where a request starts: mixed instances in single-node, P's in PD (registration order).
    public var entryInstances: [InstanceInfo] { snapshot.instances(role: pd ? .prefill : .mixed) }

    /// The D's that are peers of P `p` (registration order).
    public func decodes(peerOf p: InstanceID) -> [InstanceInfo] { snapshot.decodes(for: p) }

    public subscript(id: InstanceID) -> InstanceInfo? { snapshot[id] }
}

/// The candidate filters policies share, so "eligible" means one thing wherever it is checked.
public enum CandidateFilter {
    /// Not taken out by `/v1/instances/offline`.
    public static func online(_ i: InstanceInfo) -> Bool { !i.offline }

    /// Free slots and blocks in its latest report, and both totals ≥ 1 (§5.2).
    public static func hasResources(_ i: InstanceInfo) -> Bool {
        i.availSlots > 0 && i.availBlocks > 0 && i.totalSlots >= 1 && i.totalBlocks >= 1
    }

    /// Online with free resources.
    public static func available(_ i: InstanceInfo) -> Bool { online(i) && hasResources(i) }

    /// Not one of `excluded` (instances a retry must avoid).
    public static func notExcluded(_ excluded: Set<InstanceID>) -> (InstanceInfo) -> Bool {
        { !excluded.contains($0.id) }
    }

    /// A D that serves P `p`: it lists `p` in its peers, or it is `p` (a flex instance's two halves).
    public static func peer(of p: InstanceID) -> (InstanceInfo) -> Bool {
        { $0.role == .decode && ($0.peers.contains(p) || $0.id == p) }
    }
}
