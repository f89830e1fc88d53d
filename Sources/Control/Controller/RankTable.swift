public import Foundation
import MSCore

/// A global rank table (docs/wire/controller.md §8), parsed and validated.
///
/// Only what the Controller uses is kept: the coordinators (group "0") and the instance servers of the first
/// group with id ≥ 2 (every group with id ≥ 2 in multi-node mode). Group "1" and `status` are ignored.
public struct RankTable: Sendable, Equatable {
    /// One accelerator of a server.
    public struct Device: Sendable, Hashable, Codable {
        public var deviceID: Int
        public var deviceIP: String
        public var deviceLogicalID: Int
        public var rankID: Int
        /// A3 only.
        public var superDeviceID: Int?

        public init(deviceID: Int, deviceIP: String, deviceLogicalID: Int, rankID: Int, superDeviceID: Int? = nil) {
            self.deviceID = deviceID
            self.deviceIP = deviceIP
            self.deviceLogicalID = deviceLogicalID
            self.rankID = rankID
            self.superDeviceID = superDeviceID
        }
    }

    /// One server entry of an instance group.
    public struct Server: Sendable, Hashable, Codable {
        /// `server_id`: the host IP.
        public var hostID: String
        /// `server_ip`: the pod IP.
        public var ip: String
        /// Ports after the table's overrides of the config defaults.
        public var ports: InstancePorts
        /// Heterogeneous mode only.
        public var hardwareType: String?
        public var devices: [Device]
        /// From the group's `super_pod_list` (A3 only).
        public var superPodID: String?
    }

    /// One instance group (id ≥ 2).
    public struct Group: Sendable, Hashable {
        public var id: Int
        public var servers: [Server]
        /// Multi-node only ("1", "2", ...).
        public var deployServer: String?
    }

    /// What the parser needs from the config.
    public struct Options: Sendable, Equatable {
        public var deployMode: ControllerConfig.DeployMode
        public var isHeterogeneous: Bool
        public var isMultiNode: Bool
        /// The ports used when a server entry gives none.
        public var defaultPorts: InstancePorts

        public init(
            deployMode: ControllerConfig.DeployMode = .pdSeparate, isHeterogeneous: Bool = false,
            isMultiNode: Bool = false,
            defaultPorts: InstancePorts = InstancePorts(predict: 1025, mgmt: 1026, metric: 1027, interComm: nil)
        ) {
            self.deployMode = deployMode
            self.isHeterogeneous = isHeterogeneous
            self.isMultiNode = isMultiNode
            self.defaultPorts = defaultPorts
        }

        /// The options a config implies.
        public init(config: ControllerConfig) {
            self.init(
                deployMode: config.deployMode, isHeterogeneous: config.isHeterogeneous,
                isMultiNode: config.multiNode.enabled, defaultPorts: config.defaultInstancePorts)
        }
    }

    /// Largest number of servers in the instance group.
    public static let maxServers = 96
    /// Largest number of devices of one server.
    public static let maxDevices = 128

    public var version: String?
    /// `server_ip` of each coordinator (group "0"), 0...2 of them.
    public var coordinatorIPs: [String]
    /// The instance groups read (one outside multi-node mode).
    public var groups: [Group]
    /// The instances, in table order.
    public var instances: [DiscoveredInstance]

    /// Parses and validates a rank table.
    /// - Throws: `RankTableError` naming the offending path and value; a failure skips the pass.
    public init(data: Data, options: Options) throws(RankTableError) {
        let root: JSON
        do {
            root = try JSON.parse(data)
        } catch {
            throw RankTableError(path: "", value: "<unparsable>", reason: "not JSON: \(error.reason)")
        }
        guard let top = root.objectValue else {
            throw RankTableError(path: "", value: root.typeName, reason: "must be a JSON object")
        }
        if case .string(let v)? = top["version"] { version = v } else { version = nil }
        guard case .array(let groupList)? = top["server_group_list"] else {
            throw RankTableError(
                path: "server_group_list", value: top["server_group_list"]?.rendered ?? "<missing>",
                reason: "must be an array")
        }
        let groupRange = options.isMultiNode ? 2...98 : 2...3
        guard groupRange.contains(groupList.count) else {
            throw RankTableError(
                path: "server_group_list", value: "\(groupList.count) groups",
                reason: "must hold \(groupRange.lowerBound)...\(groupRange.upperBound) groups")
        }
        var coordinators: [String]?
        var groups: [Group] = []
        for (gi, g) in groupList.enumerated() {
            let gp = "server_group_list[\(gi)]"
            guard let go = g.objectValue else {
                throw RankTableError(path: gp, value: g.typeName, reason: "must be an object")
            }
            guard case .string(let gidText)? = go["group_id"], let gid = Int(gidText), gid >= 0 else {
                throw RankTableError(
                    path: gp + ".group_id", value: go["group_id"]?.rendered ?? "<missing>",
                    reason: "must be a string holding a non-negative integer")
            }
            guard case .array(let list)? = go["server_list"] else {
                throw RankTableError(
                    path: gp + ".server_list", value: go["server_list"]?.rendered ?? "<missing>",
                    reason: "must be an array")
            }
            if gid == 0 {
                guard list.count <= 2 else {
                    throw RankTableError(
                        path: gp + ".server_list", value: "\(list.count) servers", reason: "0...2 coordinators")
                }
                var ips: [String] = []
                for (si, s) in list.enumerated() {
                    guard case .string(let ip)? = s["server_ip"], IPAddress.isValid(ip) else {
                        throw RankTableError(
                            path: gp + ".server_list[\(si)].server_ip", value: s["server_ip"]?.rendered ?? "<missing>",
                            reason: "must be an IP address")
                    }
                    ips.append(ip)
                }
                coordinators = ips
            } else if gid >= 2 {
                if !options.isMultiNode && !groups.isEmpty { continue }
                guard list.count <= Self.maxServers else {
                    throw RankTableError(
                        path: gp + ".server_list", value: "\(list.count) servers",
                        reason: "at most \(Self.maxServers) servers")
                }
                var servers: [Server] = []
                let superPods = try Self.superPods(go["super_pod_list"], path: gp + ".super_pod_list")
                for (si, s) in list.enumerated() {
                    var server = try Self.server(s, path: gp + ".server_list[\(si)]", options: options)
                    server.superPodID = superPods[server.hostID]
                    servers.append(server)
                }
                var deploy: String?
                if case .string(let d)? = go["deploy_server"] { deploy = d }
                groups.append(Group(id: gid, servers: servers, deployServer: deploy))
            }
        }
        guard let coordinatorIPs = coordinators else {
            throw RankTableError(path: "server_group_list", value: "<no group \"0\">", reason: "group \"0\" is required")
        }
        self.coordinatorIPs = coordinatorIPs
        self.groups = groups

        var instances: [DiscoveredInstance] = []
        if options.isMultiNode {
            for g in groups where !g.servers.isEmpty {
                instances.append(DiscoveredInstance(servers: g.servers, groupID: g.id, deployServer: g.deployServer))
            }
        } else {
            for g in groups {
                for s in g.servers {
                    instances.append(DiscoveredInstance(servers: [s], groupID: g.id, deployServer: g.deployServer))
                }
            }
        }
        var seen: Set<InstanceKey> = []
        for i in instances {
            guard seen.insert(i.key).inserted else {
                throw RankTableError(
                    path: "server_list", value: i.key.description, reason: "duplicate server_ip + mgmt_port")
            }
        }
        self.instances = instances
    }

    static func superPods(_ v: JSON?, path: String) throws(RankTableError) -> [String: String] {
        guard let v else { return [:] }
        guard case .array(let pods) = v else {
            throw RankTableError(path: path, value: v.typeName, reason: "must be an array")
        }
        var map: [String: String] = [:]
        for (pi, p) in pods.enumerated() {
            guard case .string(let id)? = p["super_pod_id"], case .array(let list)? = p["server_list"] else {
                throw RankTableError(
                    path: path + "[\(pi)]", value: p.rendered, reason: "needs super_pod_id and server_list")
            }
            for s in list {
                if case .string(let host)? = s["server_id"] { map[host] = id }
            }
        }
        return map
    }

    static func port(_ o: JSON.Object, _ key: String, path: String, default d: Int?) throws(RankTableError) -> Int? {
        guard let v = o[key] else { return d }
        let n: Int?
        switch v {
        case .string(let s): n = Int(s)
        case .int(let i): n = Int(exactly: i)
        default: n = nil
        }
        guard let p = n, (1024...65535).contains(p) else {
            throw RankTableError(path: path + "." + key, value: v.rendered, reason: "must be a port in [1024, 65535]")
        }
        return p
    }

    static func intField(_ o: JSON.Object, _ key: String, path: String, range: ClosedRange<Int>, required: Bool)
        throws(RankTableError) -> Int?
    {
        guard let v = o[key] else {
            if required {
                throw RankTableError(path: path + "." + key, value: "<missing>", reason: "is required")
            }
            return nil
        }
        let n: Int?
        switch v {
        case .string(let s): n = Int(s)
        case .int(let i): n = Int(exactly: i)
        default: n = nil
        }
        guard let x = n, range.contains(x) else {
            throw RankTableError(
                path: path + "." + key, value: v.rendered,
                reason: "must be an integer in [\(range.lowerBound), \(range.upperBound)]")
        }
        return x
    }

    static func server(_ v: JSON, path: String, options: Options) throws(RankTableError) -> Server {
        guard let o = v.objectValue else {
            throw RankTableError(path: path, value: v.typeName, reason: "must be an object")
        }
        guard case .string(let ip)? = o["server_ip"], IPAddress.isValid(ip) else {
            throw RankTableError(
                path: path + ".server_ip", value: o["server_ip"]?.rendered ?? "<missing>", reason: "must be an IP address")
        }
        guard case .string(let host)? = o["server_id"], IPAddress.isValid(host) else {
            throw RankTableError(
                path: path + ".server_id", value: o["server_id"]?.rendered ?? "<missing>", reason: "must be an IP address")
        }
        let dp = options.defaultPorts
        let ports = InstancePorts(
            predict: try port(o, "predict_port", path: path, default: dp.predict)!,
            mgmt: try port(o, "mgmt_port", path: path, default: dp.mgmt)!,
            metric: try port(o, "metric_port", path: path, default: dp.metric)!,
            interComm: try port(o, "inter_comm_port", path: path, default: dp.interComm))
        var hardware: String?
        if case .string(let h)? = o["hardware_type"] { hardware = h }
        if options.isHeterogeneous && (hardware ?? "").isEmpty {
            throw RankTableError(
                path: path + ".hardware_type", value: o["hardware_type"]?.rendered ?? "<missing>",
                reason: "is required in heterogeneous mode")
        }
        var devices: [Device] = []
        if options.deployMode.isPDMode {
            guard case .array(let list)? = o["device"], (1...maxDevices).contains(list.count) else {
                throw RankTableError(
                    path: path + ".device", value: o["device"]?.rendered ?? "<missing>",
                    reason: "must be an array of 1...\(maxDevices) devices")
            }
            for (di, d) in list.enumerated() {
                let p = path + ".device[\(di)]"
                guard let dobj = d.objectValue else {
                    throw RankTableError(path: p, value: d.typeName, reason: "must be an object")
                }
                guard case .string(let dip)? = dobj["device_ip"], IPAddress.isValid(dip) else {
                    throw RankTableError(
                        path: p + ".device_ip", value: dobj["device_ip"]?.rendered ?? "<missing>",
                        reason: "must be an IP address")
                }
                devices.append(
                    Device(
                        deviceID: try intField(dobj, "device_id", path: p, range: 0...2048, required: true)!,
                        deviceIP: dip,
                        deviceLogicalID: try intField(dobj, "device_logical_id", path: p, range: 0...2048, required: true)!,
                        rankID: try intField(dobj, "rank_id", path: p, range: 0...2048, required: true)!,
                        superDeviceID: try intField(dobj, "super_device_id", path: p, range: 0...(1 << 30), required: false)))
            }
        }
        return Server(hostID: host, ip: ip, ports: ports, hardwareType: hardware, devices: devices, superPodID: nil)
    }
}

/// A rank table that cannot be used; the pass is skipped.
public struct RankTableError: Error, Sendable, Equatable, CustomStringConvertible {
    /// JSON path of the offending value, e.g. `server_group_list[2].server_list[0].mgmt_port`.
    public var path: String
    public var value: String
    public var reason: String

    public var description: String { "global rank table: '\(path)' = \(value): \(reason)" }
}

/// The identity key of an instance: its `server_ip` and management port (§4).
public struct InstanceKey: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var ip: String
    public var mgmtPort: Int

    public init(ip: String, mgmtPort: Int) {
        self.ip = ip
        self.mgmtPort = mgmtPort
    }

    public var description: String { "\(ip):\(mgmtPort)" }

    public static func < (a: InstanceKey, b: InstanceKey) -> Bool {
        (a.ip, a.mgmtPort) < (b.ip, b.mgmtPort)
    }

    enum CodingKeys: String, CodingKey {
        case ip
        case mgmtPort = "mgmt_port"
    }
}

/// One instance found in the rank table: one server outside multi-node mode, a whole group in it.
public struct DiscoveredInstance: Sendable, Hashable, Codable {
    /// The instance's servers; the first one gives the identity and the ports.
    public var servers: [RankTable.Server]
    /// The rank-table group it came from.
    public var groupID: Int
    /// Multi-node only.
    public var deployServer: String?

    public init(servers: [RankTable.Server], groupID: Int = 2, deployServer: String? = nil) {
        precondition(!servers.isEmpty, "an instance has at least one server")
        self.servers = servers
        self.groupID = groupID
        self.deployServer = deployServer
    }

    var first: RankTable.Server { servers[0] }
    /// `server_id` of the first server.
    public var hostID: String { first.hostID }
    /// `server_ip` of the first server.
    public var ip: String { first.ip }
    public var ports: InstancePorts { first.ports }
    public var hardwareType: String? { first.hardwareType }
    /// Devices of the first server.
    public var devices: [RankTable.Device] { first.devices }
    public var key: InstanceKey { InstanceKey(ip: ip, mgmtPort: ports.mgmt) }
}
