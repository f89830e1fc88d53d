/// KV blocks with a hashed prefix cache and LRU eviction (docs/wire/simulator.md §6.2).
///
/// A full prompt block's key is kᵢ = H(kᵢ₋₁, tokensᵢ). Keyed blocks are shared; once no sequence holds
/// one it stays cached in LRU order and is evicted (oldest first) only when a fresh block is needed and
/// no free block is left. Partial and generated blocks are private to their sequence.
public struct BlockPool: Sendable {
    public let blockSize: Int
    public private(set) var totalBlocks: Int
    /// Blocks held by nobody and caching nothing.
    public private(set) var freeBlocks: Int
    /// Private (unkeyed) blocks in use.
    public private(set) var privateBlocks = 0
    /// Cumulative prompt tokens looked up / found in the cache.
    public private(set) var lookedUpTokens = 0
    public private(set) var hitTokens = 0
    public private(set) var evictions = 0

    private var refCount: [UInt64: Int] = [:]
    private var lru = LRUList()

    public init(blockSize: Int, totalBlocks: Int) {
        precondition(blockSize > 0 && totalBlocks >= 0)
        self.blockSize = blockSize
        self.totalBlocks = totalBlocks
        self.freeBlocks = totalBlocks
    }

    /// Cached blocks nobody holds (evictable).
    public var evictableBlocks: Int { lru.count }
    /// Keyed blocks in the cache, held or not.
    public var cachedBlocks: Int { refCount.count }
    /// Blocks an allocation could take: free + evictable.
    public var availableBlocks: Int { freeBlocks + lru.count }
    /// Blocks held by running sequences.
    public var usedBlocks: Int { totalBlocks - freeBlocks - lru.count }

    /// Block keys of the full blocks of `tokens`.
    public func keys(for tokens: [UInt32]) -> [UInt64] {
        var keys: [UInt64] = []
        let full = tokens.count / blockSize
        keys.reserveCapacity(full)
        var prev: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in 0..<full {
            var h = prev
            withUnsafeBytes(of: prev.littleEndian) { for x in $0 { h = (h ^ UInt64(x)) &* 0x0000_0100_0000_01B3 } }
            for t in tokens[(b * blockSize)..<((b + 1) * blockSize)] {
                withUnsafeBytes(of: t.littleEndian) { for x in $0 { h = (h ^ UInt64(x)) &* 0x0000_0100_0000_01B3 } }
            }
            keys.append(h)
            prev = h
        }
        return keys
    }

    /// Number of leading blocks of `keys` present in the cache.
    public func leadingHits(_ keys: [UInt64]) -> Int {
        var n = 0
        for k in keys { if refCount[k] != nil { n += 1 } else { break } }
        return n
    }

    /// Cached tokens for a prompt of `length` tokens with these keys: B × leading hits, capped at n − 1.
    public func cachedTokens(keys: [UInt64], length: Int) -> Int {
        max(0, min(leadingHits(keys) * blockSize, length - 1))
    }

    /// Blocks needed to hold `tokens` tokens.
    public func blocksFor(tokens: Int) -> Int { (tokens + blockSize - 1) / blockSize }

    /// Whether `blocks` blocks for a sequence with these prefix keys could be allocated now.
    public func canAllocate(keys: [UInt64], blocks: Int) -> Bool {
        let hits = leadingHits(keys)
        var idleHits = 0
        for k in keys.prefix(hits) where refCount[k] == 0 { idleHits += 1 }
        return blocks - hits <= freeBlocks + lru.count - idleHits
    }

    /// Allocates `blocks` blocks for a sequence whose full prompt blocks have `keys`; the hit prefix is
    /// shared, the other full prompt blocks are cached under their keys, the rest are private.
    /// - Returns: the allocation, or nil when the blocks do not fit (nothing changes then).
    public mutating func allocate(keys: [UInt64], blocks: Int, countLookup: Int? = nil) -> BlockAllocation? {
        guard canAllocate(keys: keys, blocks: blocks) else { return nil }
        let hits = leadingHits(keys)
        var held: [UInt64] = []
        for k in keys.prefix(hits) { retain(k); held.append(k) }
        for k in keys.dropFirst(hits).prefix(max(0, blocks - hits)) {
            takeFresh()
            if refCount[k] != nil {
                // a later block that happens to be cached already: share it, give back the fresh one
                freeBlocks += 1
                retain(k)
            } else {
                refCount[k] = 1
            }
            held.append(k)
        }
        let priv = max(0, blocks - held.count)
        for _ in 0..<priv { takeFresh() }
        privateBlocks += priv
        if let n = countLookup {
            lookedUpTokens += n
            hitTokens += min(hits * blockSize, max(0, n - 1))
        }
        return BlockAllocation(keys: held, privateBlocks: priv)
    }

    /// Adds one private block to `allocation`; false when none is available.
    public mutating func grow(_ allocation: inout BlockAllocation) -> Bool {
        guard availableBlocks > 0 else { return false }
        takeFresh()
        privateBlocks += 1
        allocation.privateBlocks += 1
        return true
    }

    /// Returns the blocks of `allocation`; its keyed blocks stay cached (most recently used first).
    public mutating func release(_ allocation: BlockAllocation) {
        for k in allocation.keys {
            guard let c = refCount[k] else { continue }
            if c <= 1 { refCount[k] = 0; lru.pushFront(k) } else { refCount[k] = c - 1 }
        }
        freeBlocks += allocation.privateBlocks
        privateBlocks -= allocation.privateBlocks
    }

    /// Changes the pool size (the `kv_shrink` fault). Shrinking takes free blocks, then evicts.
    public mutating func resize(totalBlocks newTotal: Int) {
        var delta = newTotal - totalBlocks
        if delta >= 0 { freeBlocks += delta; totalBlocks = newTotal; return }
        while delta < 0, freeBlocks + lru.count > 0 {
            if freeBlocks == 0 { evictOne() }
            freeBlocks -= 1; totalBlocks -= 1; delta += 1
        }
    }

    /// Drops every unheld cached block.
    public mutating func clearCache() {
        while lru.count > 0 { evictOne() }
    }

    private mutating func retain(_ k: UInt64) {
        let c = refCount[k] ?? 0
        if c == 0 { lru.remove(k) }
        refCount[k] = c + 1
    }

    private mutating func takeFresh() {
        if freeBlocks == 0 { evictOne() }
        freeBlocks -= 1
    }

    private mutating func evictOne() {
        guard let k = lru.popBack() else { return }
        refCount[k] = nil
        freeBlocks += 1
        evictions += 1
    }

    /// Whether `key` is in the cache (held or not).
    public func contains(_ key: UInt64) -> Bool { refCount[key] != nil }
}

/// The blocks one sequence holds.
public struct BlockAllocation: Sendable, Equatable {
    public var keys: [UInt64]
    public var privateBlocks: Int
    public var count: Int { keys.count + privateBlocks }
    public init(keys: [UInt64] = [], privateBlocks: Int = 0) { self.keys = keys; self.privateBlocks = privateBlocks }
}

/// A doubly linked LRU list over keys (front = most recent).
struct LRUList: Sendable {
    private var prev: [UInt64: UInt64] = [:]
    private var next: [UInt64: UInt64] = [:]
    private var members: Set<UInt64> = []
    private var head: UInt64?
    private var tail: UInt64?

    var count: Int { members.count }

    mutating func pushFront(_ k: UInt64) {
        if members.contains(k) { remove(k) }
        members.insert(k)
        if let h = head { next[k] = h; prev[h] = k } else { tail = k }
        head = k
    }

    mutating func remove(_ k: UInt64) {
        guard members.remove(k) != nil else { return }
        let p = prev.removeValue(forKey: k), n = next.removeValue(forKey: k)
        if let p { next[p] = n } else { head = n }
        if let n { prev[n] = p } else { tail = p }
        if let p, n == nil { next[p] = nil }
        if let n, p == nil { prev[n] = nil }
    }

    mutating func popBack() -> UInt64? {
        guard let t = tail else { return nil }
        remove(t)
        return t
    }
}
