import MSCore
#if canImport(Glibc)
import Glibc
#endif

/// One instance of a `/v1/instances/refresh` body (docs/wire/coordinator.md §3.1), after validation.
public struct RefreshInstance: Sendable, Equatable {
    public var id: InstanceID
    public var ip: String
    public var port: Int
    public var metricPort: Int
    public var interCommPort: Int
    public var modelName: String
    public var roleCode: Int
    public var label: Int
    public var groupID: UInt64
    public var maxSeqLen: Int
    public var maxOutputLen: Int
    public var totalSlots: Int
    public var totalBlocks: Int
    public var blockSize: Int
    public var pPercentage: Int
    public var virtualID: UInt64
    public var availSlots: Int
    public var availBlocks: Int
    public var peers: [InstanceID]

    var role: InstanceRole? { InstanceRole(code: roleCode) }

    func info(role: InstanceRole, id: InstanceID? = nil, scale: Double = 1, peers: [InstanceID]? = nil) -> InstanceInfo {
        InstanceInfo(id: id ?? self.id, role: role, groupID: groupID, label: label,
                     totalSlots: max(1, Int(Double(totalSlots) * scale)), totalBlocks: max(1, Int(Double(totalBlocks) * scale)),
                     availSlots: Int(Double(availSlots) * scale), availBlocks: Int(Double(availBlocks) * scale),
                     peers: peers ?? self.peers, modelName: modelName)
    }
}

/// A parsed refresh: the instances that passed validation and why the others did not.
public struct RefreshPlan: Sendable, Equatable {
    public var ids: [InstanceID]
    public var accepted: [RefreshInstance]
    public var rejected: [String]
}

public enum RefreshParser {
    public static let maxEntries = 4096
    /// The id a flex instance's decode half gets (the reference's UINT64_MAX-1).
    public static let flexDecodeID: InstanceID = .max - 1

    /// Parses and validates a refresh body. Malformed bodies throw (400); an invalid instance is only skipped.
    public static func parse(_ body: [UInt8], pd: Bool, singleContainer: Bool) throws(GatewayError) -> RefreshPlan {
        guard let root = try? JSON.parse(body, maxDepth: 16) else {
            throw GatewayError(status: 400, message: "refresh body is not JSON")
        }
        guard let idsValue = root["ids"]?.arrayValue else {
            throw GatewayError(status: 400, message: "refresh body needs an 'ids' array")
        }
        guard let instances = root["instances"]?.arrayValue else {
            throw GatewayError(status: 400, message: "refresh body needs an 'instances' array")
        }
        guard idsValue.count <= maxEntries, instances.count <= maxEntries else {
            throw GatewayError(status: 400, message: "refresh body has more than \(maxEntries) entries")
        }
        var ids: [InstanceID] = []
        var seenIDs = Set<InstanceID>()
        for v in idsValue {
            guard let n = v.intValue, n >= 0 else { throw GatewayError(status: 400, message: "'ids' must hold non-negative integers") }
            // a set with one id twice cannot be routed (two entries, one key): refuse it whole, keep the last good set
            guard seenIDs.insert(InstanceID(n)).inserted else {
                throw GatewayError(status: 400, message: "refresh 'ids' lists instance \(n) more than once")
            }
            ids.append(InstanceID(n))
        }
        var plan = RefreshPlan(ids: ids, accepted: [], rejected: [])
        var seenInstances = Set<Int>()
        var flex: [InstanceID] = []
        for v in instances {
            if let id = int(v["id"]), id >= 0, !seenInstances.insert(id).inserted {
                throw GatewayError(status: 400, message: "refresh 'instances' holds instance \(id) more than once")
            }
            switch try validate(v, pd: pd, singleContainer: singleContainer) {
            case .success(let i):
                // every flex instance's decode half is UINT64_MAX-1: two split flex instances would collide
                if i.roleCode == RoleCode.flex.rawValue, i.pPercentage != 100 { flex.append(i.id) }
                plan.accepted.append(i)
            case .failure(let reason): plan.rejected.append(reason.reason)
            }
        }
        if flex.count > 1 {
            throw GatewayError(status: 400, message: "refresh has more than one flex instance with a decode part (instances \(flex.map(String.init).joined(separator: ", ")))")
        }
        return plan
    }

    /// A dynamic value (`dynamic_info`): absent → `def`; present, it must be an integer in `range`.
    static func dynamicInt(_ v: JSON?, _ key: String, _ range: ClosedRange<Int>, default def: Int, tag: String) throws(GatewayError) -> Int {
        guard let v else { return def }
        guard let n = int(v), range.contains(n) else {
            throw GatewayError(status: 400, message: "\(tag): dynamic_info.\(key) must be an integer in \(range.lowerBound)...\(range.upperBound), got \(v.compact)")
        }
        return n
    }

    static func int(_ v: JSON?) -> Int? {
        if let n = v?.intValue { return Int(n) }
        if let s = v?.stringValue, let n = Int(s) { return n }
        return nil
    }

    static func validIP(_ s: String) -> Bool {
        if s == "0.0.0.0" || s == "::" { return false }
        var a4 = in_addr(), a6 = in6_addr()
        return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1
    }

    /// Static problems skip the instance (docs/wire/coordinator.md §3.1); impossible dynamic values (what the Controller measured just
    /// now) throw, because they mean the whole report is wrong and the previous set is the better one.
    static func validate(_ v: JSON, pd: Bool, singleContainer: Bool) throws(GatewayError) -> Result<RefreshInstance, RefreshRejection> {
        guard let id = int(v["id"]), id >= 0 else { return .failure(RefreshRejection("instance without a valid id")) }
        let tag = "instance \(id)"
        guard let ip = v["ip"]?.stringValue, validIP(ip) else { return .failure(RefreshRejection("\(tag): invalid ip")) }
        func portValue(_ key: String, required: Bool = true) -> Int?? {
            guard let p = int(v[key]) else { return required ? nil : .some(nil) }
            return (1...65535).contains(p) ? .some(p) : nil
        }
        guard let p = portValue("port"), let port = p else { return .failure(RefreshRejection("\(tag): invalid port")) }
        guard let mp = portValue("metric_port", required: false) else { return .failure(RefreshRejection("\(tag): invalid metric_port")) }
        guard let icp = portValue("inter_comm_port", required: singleContainer) else { return .failure(RefreshRejection("\(tag): invalid inter_comm_port")) }
        let s = v["static_info"] ?? .object([:])
        let d = v["dynamic_info"] ?? .object([:])
        guard let maxSeq = int(s["max_seq_len"]), maxSeq > 0 else { return .failure(RefreshRejection("\(tag): max_seq_len must be > 0")) }
        guard let maxOut = int(s["max_output_len"]), maxOut >= 1, maxOut <= maxSeq else {
            return .failure(RefreshRejection("\(tag): max_output_len must be in 1...max_seq_len"))
        }
        guard let slots = int(s["total_slots_num"]), (1...5000).contains(slots) else { return .failure(RefreshRejection("\(tag): total_slots_num must be in 1...5000")) }
        guard let blocks = int(s["total_block_num"]), blocks > 0 else { return .failure(RefreshRejection("\(tag): total_block_num must be > 0")) }
        guard let blockSize = int(s["block_size"]), (1...128).contains(blockSize) else { return .failure(RefreshRejection("\(tag): block_size must be in 1...128")) }
        guard let role = int(s["role"]) else { return .failure(RefreshRejection("\(tag): missing role")) }
        let label = int(s["label"]) ?? 2
        if pd {
            guard [RoleCode.prefill, .decode, .flex].map(\.rawValue).contains(role) else { return .failure(RefreshRejection("\(tag): PD mode needs role P, D or F")) }
            guard [2, 3, 4].contains(label) else { return .failure(RefreshRejection("\(tag): PD mode needs label 2, 3 or 4")) }
        } else {
            guard role == RoleCode.undefined.rawValue else { return .failure(RefreshRejection("\(tag): single_node mode needs role U (85)")) }
        }
        func nonNegative(_ key: String, default def: Int, max: Int = .max) -> Int? {
            guard let raw = s[key] else { return def }
            guard let n = int(raw), n >= 0, n <= max else { return nil }
            return n
        }
        guard let groupID = nonNegative("group_id", default: 0) else { return .failure(RefreshRejection("\(tag): group_id must be a non-negative integer")) }
        guard let virtualID = nonNegative("virtual_id", default: 0) else { return .failure(RefreshRejection("\(tag): virtual_id must be a non-negative integer")) }
        guard let pPercentage = nonNegative("p_percentage", default: 0, max: 100) else { return .failure(RefreshRejection("\(tag): p_percentage must be in 0...100")) }
        // not capped by the totals: the Controller takes the totals from its first reading of a possibly busy
        // instance, so a later reading may legitimately exceed them
        let availSlots = try dynamicInt(d["avail_slots_num"], "avail_slots_num", 0...5000, default: slots, tag: tag)
        let availBlocks = try dynamicInt(d["avail_block_num"], "avail_block_num", 0...Int(Int32.max), default: blocks, tag: tag)
        var peers: [InstanceID] = []
        if let p = d["peers"] {
            guard let arr = p.arrayValue else { throw GatewayError(status: 400, message: "\(tag): dynamic_info.peers must be an array of instance ids") }
            for x in arr {
                guard let n = int(x), n >= 0 else {
                    throw GatewayError(status: 400, message: "\(tag): dynamic_info.peers holds \(x.compact), not an instance id")
                }
                peers.append(InstanceID(n))
            }
        }
        return .success(RefreshInstance(
            id: InstanceID(id), ip: ip, port: port, metricPort: mp ?? port, interCommPort: icp ?? 0,
            modelName: v["model_name"]?.stringValue ?? "", roleCode: role, label: label,
            groupID: UInt64(groupID), maxSeqLen: maxSeq, maxOutputLen: maxOut, totalSlots: slots,
            totalBlocks: blocks, blockSize: blockSize, pPercentage: pPercentage,
            virtualID: UInt64(virtualID), availSlots: availSlots, availBlocks: availBlocks, peers: peers))
    }

    /// The scheduler's view of the accepted instances: a flex instance becomes P (100%), D (0%) or both halves.
    public static func infos(_ plan: RefreshPlan) -> [(RefreshInstance, InstanceInfo)] {
        var out: [(RefreshInstance, InstanceInfo)] = []
        for i in plan.accepted {
            if let role = i.role {
                out.append((i, i.info(role: role)))
            } else if i.roleCode == RoleCode.flex.rawValue {
                switch i.pPercentage {
                case 100: out.append((i, i.info(role: .prefill)))
                case 0: out.append((i, i.info(role: .decode, id: flexDecodeID)))
                default:
                    let p = Double(i.pPercentage) / 100
                    out.append((i, i.info(role: .prefill, scale: p)))
                    out.append((i, i.info(role: .decode, id: flexDecodeID, scale: 1 - p, peers: i.peers + [i.id])))
                }
            }
        }
        return out
    }
}

/// Why one instance of a refresh was skipped.
public struct RefreshRejection: Error, Sendable, Equatable {
    public let reason: String
    init(_ reason: String) { self.reason = reason }
}
