import MSCore

/// `prefix_affinity` (DECISIONS 16): route to the instance that most likely holds the prompt's
/// prefix in its KV cache.
///
/// The rendered prompt is cut into fixed-size blocks; block k's hash is
/// `xxh64(block k, seed: hash of block k−1)` (block 0 uses `seed`), so a hash names the whole prefix
/// up to its block. Only full blocks are hashed. Each instance remembers the block hashes of prompts
/// sent to it in an LRU of bounded size.
///
/// Choice: among eligible instances (not offline, free slots and blocks), take the one with the
/// longest run of leading blocks it remembers (ties: fewer in flight, then registration order).
/// If none matches, or the best one's in-flight count exceeds the least-loaded instance's by more
/// than `loadMargin`, take the least-loaded (``LeastLoadPolicy``) instead. The chosen instance then
/// remembers all of the prompt's blocks. In PD mode this chooses P; D is the least-loaded of P's decodes.
/// Cluster-scoped: what an instance holds does not depend on the loop that sent the prompt there.
public struct PrefixAffinityPolicy: SchedulingPolicy {
    public static let name = "prefix_affinity"
    public static let needs = RequestNeeds.prompt
    public static let scope = PolicyStateScope.cluster
    public static let modes = PolicyModes.all

    /// The outcome of one selection, for logging and tests.
    public struct Choice: Sendable, Equatable {
        public var decision: SchedulingDecision
        /// Leading blocks the chosen instance (P in PD) already held.
        public var matchedBlocks: Int
        /// Full blocks in the prompt.
        public var promptBlocks: Int
    }

    public let blockSize: Int
    public let blocksPerInstance: Int
    public let loadMargin: Int
    public let seed: UInt64
    private var memory: [InstanceID: LRUCache<UInt64, Bool>] = [:]

    /// - Parameters:
    ///   - blockSize: bytes per hashed block (`prefix_block_size`).
    ///   - blocksPerInstance: block hashes remembered per instance (`prefix_cache_blocks`).
    ///   - loadMargin: in-flight requests the affine instance may exceed the least loaded by
    ///     (`prefix_load_margin`).
    ///   - seed: hash seed of block 0.
    public init(blockSize: Int = 256, blocksPerInstance: Int = 8192, loadMargin: Int = 8, seed: UInt64 = 0x4D53_5046) {
        self.blockSize = max(1, blockSize)
        self.blocksPerInstance = max(1, blocksPerInstance)
        self.loadMargin = max(0, loadMargin)
        self.seed = seed
    }

    public init(config: CoordinatorConfig.Scheduler) {
        self.init(blockSize: config.prefixBlockSize, blocksPerInstance: config.prefixCacheBlocks, loadMargin: config.prefixLoadMargin)
    }

    public mutating func select(_ request: RequestFeatures, from candidates: Candidates, load: LoadCounters) -> SchedulingDecision? {
        select(request, snapshot: candidates.snapshot, load: load, pd: candidates.pd)?.decision
    }

    /// Chained hashes of the full `blockSize` blocks of `bytes`.
    public static func blockHashes(_ bytes: [UInt8], blockSize: Int, seed: UInt64) -> [UInt64] {
        let n = bytes.count / blockSize
        guard n > 0 else { return [] }
        var out: [UInt64] = []
        out.reserveCapacity(n)
        var h = seed
        bytes.withUnsafeBytes { raw in
            for k in 0..<n {
                h = xxh64(UnsafeRawBufferPointer(rebasing: raw[(k * blockSize)..<((k + 1) * blockSize)]), seed: h)
                out.append(h)
            }
        }
        return out
    }

    /// Leading blocks of `hashes` that `id` remembers.
    public func matchedBlocks(_ id: InstanceID, _ hashes: [UInt64]) -> Int {
        guard let lru = memory[id] else { return 0 }
        var m = 0
        while m < hashes.count, lru.contains(hashes[m]) { m += 1 }
        return m
    }

    /// Block hashes remembered for `id`.
    public func rememberedBlocks(_ id: InstanceID) -> Int { memory[id]?.count ?? 0 }

    /// Chooses an instance (single) or a pair (PD) for `request`, or nil if nothing is eligible.
    public mutating func select(_ request: RequestFeatures, snapshot: InstanceSnapshot, load: LoadCounters,
                                pd: Bool) -> Choice? {
        // Forget instances that left the cluster.
        if memory.count > snapshot.instances.count || memory.keys.contains(where: { snapshot[$0] == nil }) {
            memory = memory.filter { snapshot[$0.key] != nil }
        }
        let hashes = Self.blockHashes(request.prompt.renderedPrompt, blockSize: blockSize, seed: seed)
        let ranked = LeastLoadPolicy.ranked(snapshot.instances(role: pd ? .prefill : .mixed), load: load)
        guard let leastLoaded = ranked.first else { return nil }

        // `ranked` is ordered by load, so the first with the maximal match wins ties by load.
        var best = leastLoaded
        var bestMatch = 0
        if !hashes.isEmpty {
            for c in ranked {
                let m = matchedBlocks(c.id, hashes)
                if m > bestMatch { best = c; bestMatch = m }
            }
        }
        if bestMatch == 0 {
            // a cold prompt: among the least loaded, the instance holding the least remembered prefix state, so
            // new conversations spread instead of piling onto the first instance while the cluster is idle
            let minLoad = load[leastLoaded.id]
            best = ranked.filter { load[$0.id] == minLoad }.min { rememberedBlocks($0.id) < rememberedBlocks($1.id) } ?? leastLoaded
        } else if load[best.id] > load[leastLoaded.id] + loadMargin {
            best = leastLoaded
            bestMatch = matchedBlocks(best.id, hashes)
        }

        let decision: SchedulingDecision
        if pd {
            // Prefer the chosen P; if it has no eligible D, fall back to the least-loaded workable pair.
            if let d = LeastLoadPolicy.ranked(snapshot.decodes(for: best.id), load: load).first {
                decision = .pair(prefill: best.id, decode: d.id)
            } else if var fallback = Optional(LeastLoadPolicy()), case .pair(let p, let d)? = fallback.select(snapshot, load: load, pd: true) {
                decision = .pair(prefill: p, decode: d)
                best = snapshot[p]!
                bestMatch = matchedBlocks(p, hashes)
            } else {
                return nil
            }
        } else {
            decision = .single(best.id)
        }
        if !hashes.isEmpty {
            var lru = memory[best.id] ?? LRUCache(capacity: blocksPerInstance)
            for h in hashes { lru.put(h, true) }
            memory[best.id] = lru
        }
        return Choice(decision: decision, matchedBlocks: bestMatch, promptBlocks: hashes.count)
    }
}
