/// One instance of the per-request policy that `digs_scheduler_config` names, with the deploy mode it serves.
///
/// A value with the policy's mutable state: its ``SchedulingHost`` decides who owns it. `load_balance` (DIGS) is
/// queue-based and lives in ``DIGSScheduler``; for it this holds no policy and `select` returns nil.
public struct Scheduler: Sendable {
    var policy: (any SchedulingPolicy)?
    /// True in every PD deploy mode.
    public let pd: Bool

    /// Builds the policy that `config` names, from `registry`.
    public init(config: CoordinatorConfig.Scheduler, registry: PolicyRegistry = .builtIn) {
        pd = config.deployMode.isPD
        let type = registry.policy(for: config)
        // a policy that cannot place requests in this mode chooses nothing (the config refuses that pairing)
        policy = type.flatMap { $0.modes.contains(pd ? .pd : .singleNode) ? $0.init(config: config) : nil }
    }

    /// Chooses where `request` goes now, or nil if nothing can take it (the caller waits for capacity until
    /// `schedule_timeout`).
    public mutating func select(_ request: RequestFeatures, snapshot: InstanceSnapshot,
                                load: LoadCounters) -> SchedulingDecision? {
        let candidates = Candidates(snapshot, pd: pd)
        return policy?.select(request, from: candidates, load: load)
    }

    /// The tokenizer target (§5.4): the instance with the fewest tasks, ties to the first registered.
    public static func tokenizerTarget(_ snapshot: InstanceSnapshot, load: LoadCounters) -> InstanceID? {
        var best: InstanceInfo?
        for i in snapshot.instances where best == nil || load[i.id] < load[best!.id] { best = i }
        return best?.id
    }
}
