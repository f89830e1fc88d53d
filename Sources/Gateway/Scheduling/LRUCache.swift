/// A bounded key→value map ordered by insertion/use, evicting from the front. O(1) operations.
///
/// `peek` does not reorder; `put` and `touch` move a key to the back (newest). Used by
/// cache_affinity (evict oldest insertion; a rename moves to the back) and by prefix_affinity
/// (least recently used block hashes go first).
public struct LRUCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Node: Sendable {
        var key: Key
        var value: Value
        var prev: Int
        var next: Int
    }

    /// Maximum number of keys kept (≥ 1).
    public let capacity: Int
    private var nodes: [Node] = []
    private var free: [Int] = []
    private var map: [Key: Int] = [:]
    private var head = -1  // oldest
    private var tail = -1  // newest

    public init(capacity: Int) {
        precondition(capacity >= 1, "LRUCache capacity must be at least 1")
        self.capacity = capacity
    }

    /// Number of keys held.
    public var count: Int { map.count }

    /// Whether `key` is held (does not reorder).
    public func contains(_ key: Key) -> Bool { map[key] != nil }

    /// The value for `key` without reordering.
    public func peek(_ key: Key) -> Value? { map[key].map { nodes[$0].value } }

    /// Keys from oldest to newest.
    public var keys: [Key] {
        var out: [Key] = []
        var i = head
        while i >= 0 { out.append(nodes[i].key); i = nodes[i].next }
        return out
    }

    /// Moves `key` to the back (newest) if held; returns whether it was.
    @discardableResult
    public mutating func touch(_ key: Key) -> Bool {
        guard let i = map[key] else { return false }
        unlink(i)
        linkBack(i)
        return true
    }

    /// Inserts or updates `key`, making it the newest; evicts the oldest past capacity.
    /// - Returns: the evicted key, if any.
    @discardableResult
    public mutating func put(_ key: Key, _ value: Value) -> Key? {
        if let i = map[key] {
            nodes[i].value = value
            unlink(i)
            linkBack(i)
            return nil
        }
        let i: Int
        if let f = free.popLast() {
            nodes[f] = Node(key: key, value: value, prev: -1, next: -1)
            i = f
        } else {
            nodes.append(Node(key: key, value: value, prev: -1, next: -1))
            i = nodes.count - 1
        }
        map[key] = i
        linkBack(i)
        if map.count > capacity {
            let old = nodes[head].key
            remove(old)
            return old
        }
        return nil
    }

    /// Removes `key`; returns its value if it was held.
    @discardableResult
    public mutating func remove(_ key: Key) -> Value? {
        guard let i = map.removeValue(forKey: key) else { return nil }
        unlink(i)
        free.append(i)
        return nodes[i].value
    }

    private mutating func unlink(_ i: Int) {
        let p = nodes[i].prev, n = nodes[i].next
        if p >= 0 { nodes[p].next = n } else { head = n }
        if n >= 0 { nodes[n].prev = p } else { tail = p }
        nodes[i].prev = -1
        nodes[i].next = -1
    }

    private mutating func linkBack(_ i: Int) {
        nodes[i].prev = tail
        nodes[i].next = -1
        if tail >= 0 { nodes[tail].next = i } else { head = i }
        tail = i
    }
}
