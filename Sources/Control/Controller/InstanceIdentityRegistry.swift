public import Foundation

/// Instance identities: sequential ids from 0, keyed by `server_ip` + `mgmt_port` (§4), persisted as JSON.
///
/// DECISIONS 17: an instance that leaves the rank table keeps its identity (id, role, group) for
/// `disappeared_server_waiting_seconds`; if it comes back at the same ip:mgmt_port within that time it gets
/// them back ("reappeared"). After that the identity is forgotten and a return is a new instance with a new id.
public struct InstanceIdentityRegistry: Sendable, Equatable, Codable {
    /// What is remembered about one key.
    public struct Entry: Sendable, Equatable, Codable {
        public var key: InstanceKey
        public var id: Int
        /// The last role assigned (nil = none yet).
        public var role: InstanceRole?
        /// The last group assigned.
        public var groupID: Int?
        /// When it left the table; nil while it is in the table.
        public var disappearedAt: Date?
        /// The instance as last seen in the table (to detect a device or port change).
        public var instance: DiscoveredInstance?

        enum CodingKeys: String, CodingKey {
            case key, id, role
            case groupID = "group_id"
            case disappearedAt = "disappeared_at"
            case instance
        }
    }

    /// The next id to hand out (`instance_start_id_number`).
    public private(set) var nextID: Int
    /// Every remembered key.
    public private(set) var entries: [InstanceKey: Entry]
    /// Keys released by the Controller (expired): ignored while still in the table, purged once they leave it.
    public private(set) var expired: Set<InstanceKey>

    public init(nextID: Int = 0) {
        self.nextID = nextID
        self.entries = [:]
        self.expired = []
    }

    /// The id of `key`, if it is remembered (present or disappeared).
    public func id(of key: InstanceKey) -> Int? { entries[key]?.id }

    /// The entry with `id`.
    public func entry(id: Int) -> Entry? { entries.values.first { $0.id == id } }

    /// Records the role and group given to `key`.
    public mutating func recordAssignment(_ key: InstanceKey, role: InstanceRole?, groupID: Int?) {
        entries[key]?.role = role
        entries[key]?.groupID = groupID
    }

    /// Marks `key` as released by the Controller: it is ignored while it stays in the table.
    public mutating func markExpired(_ key: InstanceKey) {
        expired.insert(key)
    }

    /// Restores one remembered key (process-state recovery, §9 "Takeover"); the counter stays above every id.
    public mutating func restore(_ key: InstanceKey, id: Int, role: InstanceRole?, groupID: Int?, instance: DiscoveredInstance?) {
        entries[key] = Entry(key: key, id: id, role: role, groupID: groupID, disappearedAt: nil, instance: instance)
        nextID = max(nextID, id + 1)
    }

    /// Takes over the identities of a registry saved before a restart that this one does not hold: each comes
    /// back as departed (since `now` unless it had already left), so an instance at the same ip:mgmt_port gets
    /// its id and role back on the next pass (DECISIONS 17 across restarts). The counter never goes down; an
    /// entry whose id is already used here is skipped.
    public mutating func adoptDeparted(from saved: InstanceIdentityRegistry, now: Date) {
        nextID = max(nextID, saved.nextID)
        var used = Set(entries.values.map(\.id))
        for e in saved.entries.values.sorted(by: { $0.id < $1.id }) where entries[e.key] == nil && !used.contains(e.id) {
            var d = e
            d.disappearedAt = e.disappearedAt ?? now
            entries[e.key] = d
            used.insert(e.id)
        }
        for key in saved.expired where entries[key] != nil { expired.insert(key) }
    }

    /// Compares a new table pass with what is remembered and updates the registry (§7.3, DECISIONS 17).
    /// - Parameters:
    ///   - table: the instances of this pass, in table order.
    ///   - now: the pass time.
    ///   - retention: `disappeared_server_waiting_seconds`.
    /// - Returns: the diff; `new` entries get fresh ids in table order.
    public mutating func reconcile(_ table: [DiscoveredInstance], now: Date, retention: TimeInterval) -> RankTableDiff {
        var diff = RankTableDiff()
        let present = Set(table.map(\.key))

        // Expired keys that left the table are purged (and forgotten).
        for key in expired where !present.contains(key) {
            expired.remove(key)
            entries[key] = nil
        }
        // Removed: live entries missing from the table.
        for key in entries.keys.sorted(by: { entries[$0]!.id < entries[$1]!.id }) {
            guard let e = entries[key], e.disappearedAt == nil, !present.contains(key) else { continue }
            entries[key]!.disappearedAt = now
            diff.removed.append(IdentifiedInstance(entry: entries[key]!))
        }
        // Forget disappeared identities past their retention.
        for (key, e) in entries {
            if let t = e.disappearedAt, now.timeIntervalSince(t) >= retention, !present.contains(key) {
                entries[key] = nil
                diff.forgotten.append(e.id)
            }
        }
        diff.forgotten.sort()
        for inst in table {
            let key = inst.key
            if expired.contains(key) { continue }
            if var e = entries[key] {
                if let t = e.disappearedAt {
                    if now.timeIntervalSince(t) < retention {
                        e.disappearedAt = nil
                        e.instance = inst
                        entries[key] = e
                        diff.reappeared.append(IdentifiedInstance(entry: e))
                        continue
                    }
                    entries[key] = nil
                    diff.forgotten.append(e.id)
                } else {
                    if e.instance != inst {
                        e.instance = inst
                        entries[key] = e
                        diff.changed.append(IdentifiedInstance(entry: e))
                    } else {
                        diff.unchanged.append(e.id)
                    }
                    continue
                }
            }
            let e = Entry(key: key, id: nextID, role: nil, groupID: nil, disappearedAt: nil, instance: inst)
            nextID += 1
            entries[key] = e
            diff.new.append(IdentifiedInstance(entry: e))
        }
        return diff
    }

    enum CodingKeys: String, CodingKey {
        case nextID = "instance_start_id_number"
        case entries = "instances"
        case expired
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nextID = try c.decode(Int.self, forKey: .nextID)
        let list = try c.decode([Entry].self, forKey: .entries)
        entries = Dictionary(list.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        expired = Set(try c.decodeIfPresent([InstanceKey].self, forKey: .expired) ?? [])
        guard nextID >= 0, list.allSatisfy({ $0.id >= 0 && $0.id < nextID }),
            Set(list.map(\.id)).count == list.count, entries.count == list.count
        else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [CodingKeys.entries], debugDescription: "ids must be unique and below instance_start_id_number"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nextID, forKey: .nextID)
        try c.encode(entries.values.sorted { $0.id < $1.id }, forKey: .entries)
        try c.encode(expired.sorted(), forKey: .expired)
    }

    /// The registry as JSON (sorted keys, for the state file or etcd).
    public func jsonData() throws(EncodingError) -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        enc.dateEncodingStrategy = .secondsSince1970
        do { return try enc.encode(self) } catch let e as EncodingError { throw e } catch {
            throw EncodingError.invalidValue(self, .init(codingPath: [], debugDescription: "\(error)"))
        }
    }

    /// Restores a registry written by `jsonData()`.
    public init(jsonData: Data) throws(DecodingError) {
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .secondsSince1970
        do { self = try dec.decode(InstanceIdentityRegistry.self, from: jsonData) } catch let e as DecodingError {
            throw e
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(error)"))
        }
    }
}

/// An instance with its identity.
public struct IdentifiedInstance: Sendable, Equatable {
    public var id: Int
    public var key: InstanceKey
    /// The role remembered for it (reappeared instances get theirs back).
    public var role: InstanceRole?
    public var groupID: Int?
    /// nil only for an entry restored from an old state without the instance.
    public var instance: DiscoveredInstance?

    init(entry e: InstanceIdentityRegistry.Entry) {
        id = e.id
        key = e.key
        role = e.role
        groupID = e.groupID
        instance = e.instance
    }
}

/// The difference between two rank-table passes (§7.3 with DECISIONS 17).
public struct RankTableDiff: Sendable, Equatable {
    /// In the registry (live) but not in the table: stop routing at once; identity kept for the retention.
    public var removed: [IdentifiedInstance] = []
    /// In the table, not remembered: fresh ids, in table order.
    public var new: [IdentifiedInstance] = []
    /// Back at the same ip:mgmt_port within the retention: same id, role and group.
    public var reappeared: [IdentifiedInstance] = []
    /// Same key, different servers/devices/ports: handle as removed + new (§7.3 "device change"), same id.
    public var changed: [IdentifiedInstance] = []
    /// Ids of live instances present and unchanged.
    public var unchanged: [Int] = []
    /// Ids whose identity was dropped this pass (retention over).
    public var forgotten: [Int] = []

    public var isEmpty: Bool { removed.isEmpty && new.isEmpty && reappeared.isEmpty && changed.isEmpty }
}
