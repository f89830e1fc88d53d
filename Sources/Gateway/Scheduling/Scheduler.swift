/// The per-request scheduling policy chosen by `digs_scheduler_config`, behind one entry point.
///
/// Value type with mutable cursors/caches: own one per event loop, or guard a shared one with a
/// `Mutex`. `load_balance` (DIGS) is queue-based and lives in ``DIGSScheduler``; this type
/// returns nil for it.
public struct Scheduler: Sendable {
    enum Policy: Sendable {
        case roundRobin(RoundRobinPolicy)
        case cacheAffinity(CacheAffinityPolicy)
        case leastLoad(LeastLoadPolicy)
        case prefixAffinity(PrefixAffinityPolicy)
        case loadBalance
    }

    var policy: Policy
    /// True in every PD deploy mode.
    public let pd: Bool

    /// Builds the policy that `config` names.
    public init(config: CoordinatorConfig.Scheduler) {
        pd = config.deployMode.isPD
        switch config.algorithm {
        case .roundRobin: policy = .roundRobin(RoundRobinPolicy())
        case .cacheAffinity:
            policy = .cacheAffinity(CacheAffinityPolicy(
                cacheSize: config.cacheSize, slotsThresh: config.slotsThresh, blockThresh: config.blockThresh))
        case .leastLoad: policy = .leastLoad(LeastLoadPolicy())
        case .prefixAffinity:
            policy = .prefixAffinity(PrefixAffinityPolicy(
                blockSize: config.prefixBlockSize, blocksPerInstance: config.prefixCacheBlocks,
                loadMargin: config.prefixLoadMargin))
        case .loadBalance: policy = .loadBalance
        }
    }

    /// Chooses where `request` goes now, or nil if nothing can take it (the caller retries until
    /// `schedule_timeout`).
    public mutating func select(_ request: RequestFeatures, snapshot: InstanceSnapshot,
                                load: LoadCounters) -> SchedulingDecision? {
        switch policy {
        case .roundRobin(var p):
            policy = .loadBalance  // drop the enum's reference so `p` mutates in place (no CoW copy)
            let d = p.select(snapshot, pd: pd)
            policy = .roundRobin(p)
            return d
        case .cacheAffinity(var p):
            policy = .loadBalance  // drop the enum's reference so `p` mutates in place (no CoW copy)
            let d = pd ? nil : p.select(request, snapshot: snapshot)
            policy = .cacheAffinity(p)
            return d
        case .leastLoad(let p):
            return p.select(snapshot, load: load, pd: pd)
        case .prefixAffinity(var p):
            policy = .loadBalance  // drop the enum's reference so `p` mutates in place (no CoW copy)
            let c = p.select(request, snapshot: snapshot, load: load, pd: pd)
            policy = .prefixAffinity(p)
            return c?.decision
        case .loadBalance:
            return nil
        }
    }

    /// The tokenizer target (§5.4): the instance with the fewest tasks, ties to the first registered.
    public static func tokenizerTarget(_ snapshot: InstanceSnapshot, load: LoadCounters) -> InstanceID? {
        var best: InstanceInfo?
        for i in snapshot.instances where best == nil || load[i.id] < load[best!.id] { best = i }
        return best?.id
    }
}
