import Foundation
public import MSCore

/// What one discovery pass found: the instances in table order and the coordinator IPs (a rank table's group 2
/// and group 0).
public struct DiscoveredCluster: Sendable, Equatable {
    public var instances: [DiscoveredInstance]
    public var coordinators: [String]

    public init(instances: [DiscoveredInstance], coordinators: [String]) {
        self.instances = instances
        self.coordinators = coordinators
    }
}

/// Turns a Kubernetes `PodList` into what a rank table would say (pure; `instance_discovery.source = kubernetes`).
///
/// A pod counts when it is `Running`, has a `status.podIP`, is not being deleted (`deletionTimestamp`) and its
/// role label is one of the configured values. Readiness is not required: MindIE Server pods only become ready
/// once the Controller has given them a role.
///
/// Per instance pod: `server_ip` = pod IP; `server_id` = `status.hostIP` (the pod IP when absent); ports are the
/// config's defaults unless the pod's annotations `mindie-ms/predict-port`, `mindie-ms/mgmt-port`,
/// `mindie-ms/metric-port`, `mindie-ms/inter-comm-port` say otherwise (as the table's per-server port keys do);
/// devices (PD modes) = as many as the first container requests of an `huawei.com/*` resource (at least 1), each
/// with the pod IP as `device_ip`, which is what the deployer's table writer did. Instances are ordered by their
/// role value's position in `instanceRoles` (P before D), then by pod name; coordinators by pod name.
public enum PodDiscovery {
    public static let portAnnotations = (
        predict: "mindie-ms/predict-port", mgmt: "mindie-ms/mgmt-port", metric: "mindie-ms/metric-port",
        interComm: "mindie-ms/inter-comm-port"
    )

    /// One pod that did not make it into the table, and why (for the log).
    public struct Skipped: Sendable, Equatable {
        public var pod: String
        public var reason: String
    }

    /// - Parameters:
    ///   - list: the `PodList` body.
    ///   - config: `instance_discovery`.
    ///   - options: ports and mode (as for a rank table).
    /// - Returns: the cluster, plus the pods with a known role that were left out for a reason worth logging.
    /// - Throws: `RankTableError` when the body is not a pod list (the pass is skipped, as for a bad table).
    public static func cluster(
        fromPodList list: JSON, config: ControllerConfig.InstanceDiscovery, options: RankTable.Options
    ) throws(RankTableError) -> (cluster: DiscoveredCluster, skipped: [Skipped]) {
        guard case .array(let items)? = list["items"] else {
            throw RankTableError(path: "items", value: list["items"]?.rendered ?? "<missing>", reason: "not a PodList")
        }
        var instances: [(rank: Int, name: String, instance: DiscoveredInstance)] = []
        var coordinators: [(name: String, ip: String)] = []
        var skipped: [Skipped] = []
        for item in items {
            guard let name = str(item, "metadata", "name"),
                let role = str(item, "metadata", "labels", config.roleLabel)
            else { continue }
            let rank = config.instanceRoles.firstIndex(of: role)
            let isCoordinator = config.coordinatorRoles.contains(role)
            guard rank != nil || isCoordinator else { continue }
            if val(item, "metadata", "deletionTimestamp").map({ $0 != .null }) == true { continue }
            guard str(item, "status", "phase") == "Running" else { continue }
            guard let ip = str(item, "status", "podIP"), !ip.isEmpty else { continue }
            guard IPAddress.isValid(ip) else {
                skipped.append(Skipped(pod: name, reason: "status.podIP \(ip) is not an IP address"))
                continue
            }
            if isCoordinator {
                coordinators.append((name, ip))
                continue
            }
            do {
                instances.append((rank!, name, try instance(item, ip: ip, options: options)))
            } catch {
                skipped.append(Skipped(pod: name, reason: error.description))
            }
        }
        instances.sort { ($0.rank, $0.name) < ($1.rank, $1.name) }
        coordinators.sort { $0.name < $1.name }
        // Two pods at one ip:mgmt_port would share an identity; keep the first (a rank table would be refused
        // whole, but one odd pod must not hide the others).
        var seen: Set<InstanceKey> = []
        var unique: [DiscoveredInstance] = []
        for (_, name, inst) in instances {
            if seen.insert(inst.key).inserted {
                unique.append(inst)
            } else {
                skipped.append(Skipped(pod: name, reason: "another pod already has \(inst.key)"))
            }
        }
        return (DiscoveredCluster(instances: unique, coordinators: coordinators.map(\.ip)), skipped)
    }

    static func instance(_ pod: JSON, ip: String, options: RankTable.Options) throws(RankTableError) -> DiscoveredInstance {
        let annotations = val(pod, "metadata", "annotations")?.objectValue ?? [:]
        let name = str(pod, "metadata", "name") ?? "?"
        func port(_ key: String, _ d: Int?) throws(RankTableError) -> Int? {
            guard let v = annotations[key] else { return d }
            guard let s = str(v), let p = Int(s), (1024...65535).contains(p) else {
                throw RankTableError(
                    path: "pod \(name) annotation \(key)", value: v.rendered, reason: "must be a port in [1024, 65535]")
            }
            return p
        }
        let dp = options.defaultPorts
        let ports = InstancePorts(
            predict: try port(portAnnotations.predict, dp.predict)!, mgmt: try port(portAnnotations.mgmt, dp.mgmt)!,
            metric: try port(portAnnotations.metric, dp.metric)!, interComm: try port(portAnnotations.interComm, dp.interComm))
        var host = ip
        if let h = str(pod, "status", "hostIP"), IPAddress.isValid(h) { host = h }
        var devices: [RankTable.Device] = []
        if options.deployMode.isPDMode {
            let n = min(max(acceleratorCount(pod), 1), RankTable.maxDevices)
            devices = (0..<n).map { RankTable.Device(deviceID: $0, deviceIP: ip, deviceLogicalID: $0, rankID: $0) }
        }
        let server = RankTable.Server(
            hostID: host, ip: ip, ports: ports, hardwareType: nil, devices: devices, superPodID: nil)
        return DiscoveredInstance(servers: [server])
    }

    /// The first container's `huawei.com/*` request (or limit); 0 when it asks for none.
    static func acceleratorCount(_ pod: JSON) -> Int {
        guard let c = arr(val(pod, "spec", "containers"))?.first else { return 0 }
        for part in ["limits", "requests"] {
            guard let res = val(c, "resources", part)?.objectValue else { continue }
            for (k, v) in res where k.hasPrefix("huawei.com/") {
                if let s = str(v), let n = Int(s) { return n }
                if let n = int(v) { return n }
            }
        }
        return 0
    }
}

// Path readers kept private here: the Deployer has its own JSON helpers and the two must not depend on each other.
private func val(_ v: JSON?, _ keys: String...) -> JSON? {
    var x = v
    for k in keys { x = x?[k] }
    return x
}

private func str(_ v: JSON?, _ keys: String...) -> String? {
    var x = v
    for k in keys { x = x?[k] }
    if case .string(let s)? = x { return s }
    return nil
}

private func arr(_ v: JSON?) -> [JSON]? {
    if case .array(let a)? = v { return a }
    return nil
}

private func int(_ v: JSON?) -> Int? {
    if case .int(let i)? = v { return Int(exactly: i) }
    return nil
}
