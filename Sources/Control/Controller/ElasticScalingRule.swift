public import Foundation
import MSCore

/// `scaling_rule_file_path` (default `./conf/elastic_scaling.json`), read only by the fault manager's
/// scale-in timer (docs/controller-role-model.md §7): the expected P and D instance counts of entry 0.
public struct ElasticScalingRule: Sendable, Equatable {
    /// `elastic_scaling_list[0].group_list[0].group_num`.
    public var expectedPrefill: Int
    /// `elastic_scaling_list[0].group_list[1].group_num`.
    public var expectedDecode: Int

    /// Parses the file; nil when it is invalid (the check is then skipped): no or empty list, fewer than 2
    /// groups in entry 0, or a `group_num` that is missing or not an integer string.
    public init?(data: Data) {
        guard let root = try? JSON.parse(data), case .array(let list)? = root["elastic_scaling_list"],
            let first = list.first, case .array(let groups)? = first["group_list"], groups.count >= 2,
            case .string(let p)? = groups[0]["group_num"], let pn = Int(p),
            case .string(let d)? = groups[1]["group_num"], let dn = Int(d)
        else { return nil }
        expectedPrefill = pn
        expectedDecode = dn
    }
}

/// Pure parts of the active/standby election through etcd (§9).
public enum HAElection {
    /// Lease TTL of the leader lock, seconds.
    public static let leaseTTL = 20
    /// Consecutive keepalive failures (1 s apart) before demotion.
    public static let keepaliveFailuresBeforeDemotion = 5

    /// Seconds between keepalives: clamp(ttl/2, 1, 10).
    public static func keepaliveInterval(ttl: Int) -> Int {
        min(max(ttl / 2, 1), 10)
    }

    /// An etcd key with the `/<POD_NAMESPACE>` prefix when the namespace is set.
    public static func key(_ base: String, namespace: String?) -> String {
        guard let ns = namespace, !ns.isEmpty else { return base }
        return "/" + ns + base
    }

    /// The leader lock key (value: the pod IP).
    public static func leaderLockKey(namespace: String?) -> String { key("/cluster/leader-lock", namespace: namespace) }
    /// The key of the §10.1 process state.
    public static func nodeDataKey(namespace: String?) -> String { key("/controller/node-data", namespace: namespace) }
    /// The key of the processed switch-fault ids.
    public static func switchFaultsKey(namespace: String?) -> String { key("/controller/switch-faults", namespace: namespace) }
}
