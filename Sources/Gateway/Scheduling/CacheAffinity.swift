import MSCore

/// `cache_affinity` under default_scheduler, single_node (docs/wire/coordinator.md §5.2).
///
/// For OpenAI chat requests the input is the dumped `messages` array (one compact dump per message):
/// - ≤ 2 messages: key = h(all dumps concatenated); pick by round-robin, then `put(key, node)`.
/// - > 2 messages: hist = h(dumps of m₀…m_{n−3}), new = h(all). If hist is cached and its node is
///   available, pick it and rename hist→new; otherwise round-robin, erase hist, put new.
///
/// The cache holds `cache_size` keys and evicts the oldest insertion; a lookup does not refresh a
/// key, a rename moves it to the back. Other dialects, a missing/malformed array or a hash of 0 use
/// round-robin. Availability everywhere: avail/total > `slots_thresh` for slots and > `block_thresh`
/// for blocks. h is xxh64 (the reference's `std::hash` is not portable). Cluster-scoped: a conversation's next
/// turn must find its key whichever connection (and loop) it comes on.
public struct CacheAffinityPolicy: SchedulingPolicy {
    public static let name = "cache_affinity"
    public static let needs = RequestNeeds.prompt
    public static let scope = PolicyStateScope.cluster
    public static let modes = PolicyModes.singleNode

    public let slotsThresh: Double
    public let blockThresh: Double
    private var cursor = RoundRobinCursor()
    private var cache: LRUCache<UInt64, InstanceID>

    /// - Parameters:
    ///   - cacheSize: keys kept (`cache_size`, 1–10000).
    ///   - slotsThresh: `slots_thresh`.
    ///   - blockThresh: `block_thresh`.
    public init(cacheSize: Int, slotsThresh: Double, blockThresh: Double) {
        self.cache = LRUCache(capacity: max(1, cacheSize))
        self.slotsThresh = slotsThresh
        self.blockThresh = blockThresh
    }

    public init(config: CoordinatorConfig.Scheduler) {
        self.init(cacheSize: config.cacheSize, slotsThresh: config.slotsThresh, blockThresh: config.blockThresh)
    }

    public mutating func select(_ request: RequestFeatures, from candidates: Candidates, load: LoadCounters) -> SchedulingDecision? {
        candidates.pd ? nil : select(request, snapshot: candidates.snapshot)
    }

    /// Whether `i` passes the thresholds.
    public func isAvailable(_ i: InstanceInfo) -> Bool {
        Self.isAvailable(i, slotsThresh: slotsThresh, blockThresh: blockThresh)
    }

    static func isAvailable(_ i: InstanceInfo, slotsThresh: Double, blockThresh: Double) -> Bool {
        guard i.totalSlots > 0, i.totalBlocks > 0 else { return false }
        return Double(i.availSlots) / Double(i.totalSlots) > slotsThresh
            && Double(i.availBlocks) / Double(i.totalBlocks) > blockThresh
    }

    /// Number of keys currently cached.
    public var cachedKeys: Int { cache.count }

    /// Picks a mixed instance for `request`, or nil if none is available.
    public mutating func select(_ request: RequestFeatures, snapshot: InstanceSnapshot) -> SchedulingDecision? {
        let nodes = snapshot.instances(role: .mixed)
        let (st, bt) = (slotsThresh, blockThresh)
        let avail = { (i: InstanceInfo) in Self.isAvailable(i, slotsThresh: st, blockThresh: bt) }
        func roundRobin() -> InstanceID? { cursor.next(nodes, available: avail)?.id }

        guard request.dialect == .openAI, let dumps = request.prompt.messageDumps, !dumps.isEmpty else {
            return roundRobin().map { .single($0) }
        }
        let all = xxh64(dumps.joined())
        guard all != 0 else { return roundRobin().map { .single($0) } }
        if dumps.count <= 2 {
            guard let pick = roundRobin() else { return nil }
            cache.put(all, pick)
            return .single(pick)
        }
        let hist = xxh64(dumps[..<(dumps.count - 2)].joined())
        guard hist != 0 else { return roundRobin().map { .single($0) } }
        if let node = cache.peek(hist), let inst = snapshot[node], inst.role == .mixed, isAvailable(inst) {
            cache.remove(hist)
            cache.put(all, node)
            return .single(node)
        }
        let pick = roundRobin()
        cache.remove(hist)
        if let pick { cache.put(all, pick) }
        return pick.map { .single($0) }
    }
}
