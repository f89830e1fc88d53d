public import MSCore

/// The PD cluster's global rank table, built from the pods Kubernetes reports (docs/wire/deployer.md §5,
/// `gen_global_ranktable.py`): group 0 = Coordinator pod IPs, group 1 = Controller, group 2 = P and D servers.
public enum GlobalRankTable {
    /// What the rank table needs to know about one pod.
    public struct Pod: Sendable, Equatable {
        public var name: String
        public var role: String
        public var ip: String?
        public init(name: String, role: String, ip: String?) {
            self.name = name
            self.role = role
            self.ip = ip
        }
    }

    /// Pod facts from a `PodList` body (role from the `mindie-ms/role` label, IP from `status.podIP`). Terminating pods are left out.
    public static func pods(fromList list: JSON) -> [Pod] {
        (list["items"]?.arrayValue ?? []).compactMap { item in
            guard let name = item.at("metadata", "name")?.stringValue,
                  let role = item.at("metadata", "labels", Manifests.roleLabel)?.stringValue,
                  item.at("metadata", "deletionTimestamp") == nil else { return nil }
            let ip = item.at("status", "podIP")?.stringValue
            return Pod(name: name, role: role, ip: ip?.isEmpty == false ? ip : nil)
        }
    }

    /// The table for `pods`; `completed` once every expected pod has an IP.
    public static func build(spec: InferServerSpec, pods: [Pod]) -> JSON {
        let pd = spec.pd
        let sorted = pods.filter { $0.ip != nil }.sorted { $0.name < $1.name }
        func ips(_ role: String) -> [String] { sorted.filter { $0.role == role }.compactMap(\.ip) }
        let coord = ips("coordinator"), ctrl = ips("controller"), prefill = ips("prefill"), decode = ips("decode")
        let complete = coord.count >= 1 && ctrl.count >= 1 && prefill.count == (pd?.prefillReplicas ?? 0) && decode.count == (pd?.decodeReplicas ?? 0)
        func group(_ id: Int, _ servers: [JSON]) -> JSON {
            jo(["group_id": js(String(id)), "server_count": js(String(servers.count)), "server_list": ja(servers)])
        }
        let servers: [JSON] = (prefill.map { ($0, "prefill") } + decode.map { ($0, "decode") }).map { ip, role in
            jo(["server_id": js(ip), "server_ip": js(ip), "deploy_server": js(role),
                "device": ja((0..<spec.npuChipNum).map { d in
                    jo(["device_id": js(String(d)), "device_ip": js(ip), "device_logical_id": js(String(d)), "rank_id": js(String(d))])
                })])
        }
        return jo([
            "version": js("1.0"),
            "status": js(complete ? "completed" : "initializing"),
            "server_group_list": ja([
                group(0, coord.map { jo(["server_id": js("coordinator"), "server_ip": js($0)]) }),
                group(1, ctrl.map { jo(["server_id": js("controller"), "server_ip": js($0)]) }),
                group(2, servers),
            ]),
        ])
    }
}
