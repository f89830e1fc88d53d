public import Foundation
import MSCore

/// The process state (§10.1): written every sync period (temp file + rename, by the effect runner) and read
/// back on restart or takeover to recover ids, the id counter, roles, groups and peers instead of deciding.
public struct ProcessStateFile: Sendable, Equatable {
    /// One `server` entry, as far as recovery needs it.
    public struct Server: Sendable, Equatable {
        public var id: Int
        public var key: InstanceKey
        public var deleteTime: Int
        public var isHealthy: Bool
        public var isInitialized: Bool
        public var isFaulty: Bool
        public var inferenceType: InferenceType
        public var roleState: RoleState
        public var currentRole: InstanceRole
        public var role: InstanceRole
        public var label: InstanceLabel
        public var groupID: Int
        public var peers: [Int]
        public var activePeers: [Int]
        public var config: ServerConfigInfo?
        public var totalSlots: Int
        public var totalBlocks: Int
    }

    public var servers: [Server]
    /// `instance_start_id_number`.
    public var nextID: Int
    /// `processed_switch_faults`: `code|chip|port|time` ids already handled.
    public var processedSwitchFaults: [String]

    /// The file's content for a state (JSON, indent 4).
    public static func encode(_ state: ControllerCore.State, processedSwitchFaults: [String] = []) -> Data {
        func j(_ i: Int) -> JSON { .int(Int64(i)) }
        func ids(_ a: [Int]) -> JSON { .array(a.map(j)) }
        var list: [JSON] = []
        for id in state.nodes.keys.sorted() {
            let n = state.nodes[id]!
            let inst = n.instance
            var si: JSON.Object = [:]
            si["id"] = j(id)
            si["group_id"] = j(n.groupID ?? 0)
            si["max_seq_len"] = j(n.config?.maxSeqLen ?? 0)
            si["max_output_len"] = j(n.config?.maxOutputLen ?? 0)
            si["total_slots_num"] = j(n.totalSlots)
            si["total_block_num"] = j(n.totalBlocks)
            si["block_size"] = j(n.config?.cacheBlockSize ?? 0)
            si["label"] = j(n.label.rawValue)
            si["role"] = j(n.role.asciiCode)
            si["p_percentage"] = j(0)
            si["virtual_id"] = j(id)
            var serverInfo: [JSON] = []
            for (i, s) in inst.servers.enumerated() {
                var devices: [JSON] = []
                for d in s.devices {
                    var dev: JSON.Object = [:]
                    dev["id"] = .string(String(d.deviceID))
                    dev["ip"] = .string(d.deviceIP)
                    dev["logical_id"] = .string(String(d.deviceLogicalID))
                    dev["rank_id"] = j(d.rankID)
                    if let sd = d.superDeviceID { dev["super_device_id"] = .string(String(sd)) }
                    devices.append(.object(dev))
                }
                var o: JSON.Object = [:]
                o["hostId"] = .string(s.hostID)
                o["ip"] = .string(s.ip)
                o["is_master"] = .bool(i == 0)
                o["sp_size"] = j(1)
                o["cp_size"] = j(1)
                o["device_infos"] = .array(devices)
                o["dp_group_infos"] = .array([])
                if let sp = s.superPodID { o["super_pod_id"] = .string(sp) }
                serverInfo.append(.object(o))
            }
            var e: JSON.Object = [:]
            e["delete_time"] = j(0)
            e["id"] = j(id)
            e["host_id"] = .string(inst.hostID)
            e["ip"] = .string(inst.ip)
            e["port"] = j(inst.ports.predict)
            e["mgmt_port"] = j(inst.ports.mgmt)
            e["metric_port"] = j(inst.ports.metric)
            e["inter_comm_port"] = j(inst.ports.interComm ?? 0)
            e["is_healthy"] = .bool(n.isHealthy)
            e["is_initialized"] = .bool(n.isInitialized)
            e["inference_type"] = j(n.inferenceType.rawValue)
            e["role_state"] = .string(n.roleState.rawValue)
            e["current_role"] = j(n.currentRole.asciiCode)
            e["model_name"] = .string(n.config?.modelName ?? "")
            e["static_info"] = .object(si)
            e["peers"] = ids(n.peers)
            e["active_peers"] = ids(n.activePeers)
            e["is_distribute"] = .bool(false)
            e["dp_group_peers"] = .array([])
            e["server_info_list"] = .array(serverInfo)
            e["dynamic_info"] = .object([
                "avail_slots_num": j(n.resources.availSlotsNum), "avail_block_num": j(n.resources.availBlockNum),
            ])
            e["is_faulty"] = .bool(n.phase == .faulty)
            list.append(.object(e))
        }
        var root: JSON.Object = [:]
        root["server"] = .array(list)
        root["instance_start_id_number"] = j(state.registry.nextID)
        root["processed_switch_faults"] = .array(processedSwitchFaults.map { .string($0) })
        return Data((JSON.object(root).serialized(indent: 4) + "\n").utf8)
    }

    /// Parses and validates a state file (the §10.1 load checks).
    /// - Throws: `RankTableError`-style `ProcessStateError` naming the path.
    public init(data: Data) throws(ProcessStateError) {
        guard let root = try? JSON.parse(data), let o = root.objectValue else {
            throw ProcessStateError(path: "", reason: "not a JSON object")
        }
        guard case .int(let next)? = o["instance_start_id_number"], next >= 0 else {
            throw ProcessStateError(path: "instance_start_id_number", reason: "must be an integer ≥ 0")
        }
        nextID = Int(next)
        processedSwitchFaults = []
        if case .array(let faults)? = o["processed_switch_faults"] {
            for f in faults { if case .string(let s) = f { processedSwitchFaults.append(s) } }
        }
        guard case .array(let list)? = o["server"] else { throw ProcessStateError(path: "server", reason: "must be an array") }
        var parsed: [Server] = []
        for (i, v) in list.enumerated() {
            let p = "server[\(i)]"
            func int(_ obj: JSON?, _ k: String, _ r: ClosedRange<Int64>) throws(ProcessStateError) -> Int {
                guard case .int(let x)? = obj?[k], r.contains(x) else {
                    throw ProcessStateError(path: p + "." + k, reason: "must be an integer in [\(r.lowerBound), \(r.upperBound)]")
                }
                return Int(x)
            }
            func bool(_ k: String) throws(ProcessStateError) -> Bool {
                guard case .bool(let b)? = v[k] else { throw ProcessStateError(path: p + "." + k, reason: "must be a boolean") }
                return b
            }
            func ids(_ k: String) throws(ProcessStateError) -> [Int] {
                guard case .array(let a)? = v[k], a.count <= 768 else {
                    throw ProcessStateError(path: p + "." + k, reason: "must be an array of at most 768 ids")
                }
                var out: [Int] = []
                for x in a {
                    guard case .int(let n) = x, n >= 0 else { throw ProcessStateError(path: p + "." + k, reason: "ids are integers ≥ 0") }
                    out.append(Int(n))
                }
                return out
            }
            let deleteTime = try int(v, "delete_time", 0...Int64.max)
            guard case .string(let ip)? = v["ip"], IPAddress.isValid(ip) else {
                throw ProcessStateError(path: p + ".ip", reason: "must be an IP address")
            }
            let s = v["static_info"]
            let roleCode = try int(s, "role", 0...255)
            guard let role = InstanceRole(asciiCode: roleCode) else {
                throw ProcessStateError(path: p + ".static_info.role", reason: "must be 85, 80, 68 or 70")
            }
            let current = InstanceRole(asciiCode: (try? int(v, "current_role", 0...255)) ?? 85) ?? .undefined
            let state: RoleState
            if case .string(let rs)? = v["role_state"], let x = RoleState(rawValue: rs) { state = x } else { state = .unknown }
            var config: ServerConfigInfo?
            if case .string(let m)? = v["model_name"], !m.isEmpty {
                config = ServerConfigInfo(
                    modelName: m, maxSeqLen: (try? int(s, "max_seq_len", 0...4_294_967_295)) ?? 0,
                    maxOutputLen: (try? int(s, "max_output_len", 0...4_294_967_295)) ?? 0,
                    cacheBlockSize: (try? int(s, "block_size", 0...128)) ?? 0)
            }
            parsed.append(Server(
                id: try int(v, "id", 0...Int64(Int32.max)),
                key: InstanceKey(ip: ip, mgmtPort: try int(v, "mgmt_port", 1...65535)),
                deleteTime: deleteTime, isHealthy: (try? bool("is_healthy")) ?? false,
                isInitialized: try bool("is_initialized"), isFaulty: try bool("is_faulty"),
                inferenceType: InferenceType(rawValue: try int(v, "inference_type", 0...3))!,
                roleState: state, currentRole: current, role: role,
                label: InstanceLabel(rawValue: try int(s, "label", 0...4))!,
                groupID: try int(s, "group_id", 0...Int64(Int32.max)), peers: try ids("peers"),
                activePeers: (try? ids("active_peers")) ?? [], config: config,
                totalSlots: try int(s, "total_slots_num", 0...5000),
                totalBlocks: try int(s, "total_block_num", 0...4_294_967_295)))
        }
        let limit = Int(next)
        guard parsed.allSatisfy({ $0.id < limit }), Set(parsed.map(\.id)).count == parsed.count else {
            throw ProcessStateError(path: "server", reason: "ids must be unique and below instance_start_id_number")
        }
        servers = parsed
    }

    /// Recovery (§9 "Takeover"): keeps the entries whose ip:mgmt_port is still in `table`, restores ids, the
    /// counter, roles, groups and peers; instances of the table not in the file are left for the next pass
    /// (they are handled as scale-out). Peers that were not kept are dropped from every list.
    public func recover(table: [DiscoveredInstance]) -> ControllerCore.State {
        var state = ControllerCore.State()
        let byKey = Dictionary(table.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        var reg = InstanceIdentityRegistry(nextID: nextID)
        let kept = servers.filter { $0.deleteTime == 0 && byKey[$0.key] != nil }
        let keptIDs = Set(kept.map(\.id))
        var groups: [Int: InstanceGroup] = [:]
        for s in kept {
            let inst = byKey[s.key]!
            reg.restore(s.key, id: s.id, role: s.role, groupID: s.groupID, instance: inst)
            var n = ControllerNode(id: s.id, instance: inst)
            n.role = s.role
            n.label = s.label
            n.groupID = s.groupID
            n.peers = s.peers.filter(keptIDs.contains)
            n.activePeers = s.activePeers.filter(keptIDs.contains)
            n.currentRole = s.currentRole
            n.roleState = s.roleState
            n.isHealthy = s.isHealthy
            n.isInitialized = s.isInitialized
            n.inferenceType = s.inferenceType
            n.config = s.config
            n.totalSlots = s.totalSlots
            n.totalBlocks = s.totalBlocks
            n.totalsPending = false
            n.phase = s.isFaulty ? .faulty : .candidate
            state.nodes[s.id] = n
            var g = groups[s.groupID] ?? InstanceGroup(id: s.groupID, prefill: [], decode: [])
            switch s.role {
            case .prefill: g.prefill.append(s.id)
            case .decode: g.decode.append(s.id)
            case .flex: g.flex.append(s.id)
            case .undefined: continue
            }
            groups[s.groupID] = g
        }
        state.registry = reg
        state.groups = groups.keys.sorted().map { groups[$0]! }
        state.initialAssignmentDone = !kept.isEmpty
        state.refreshEnabled = !kept.isEmpty
        return state
    }
}

/// A process state file that cannot be loaded (init fails and is retried).
public struct ProcessStateError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "process state: '\(path)' \(reason)" }
}
