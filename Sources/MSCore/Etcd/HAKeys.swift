import Foundation

/// Where an HA cluster keeps its keys in etcd, and which etcd members it talks to.
public enum HAKeys {
    /// The environment variable naming the cluster whose lock and state keys a process uses. The manifests set it to
    /// the server's name, so that two clusters (in one namespace or not) can share an etcd; unset, the keys are the
    /// reference's.
    public static let clusterNameVariable = "MINDIE_MS_CLUSTER_NAME"

    /// The prefix of every lock and state key: `/<POD_NAMESPACE>` when set, then `/<MINDIE_MS_CLUSTER_NAME>` when set;
    /// "" with neither (the reference's `/cluster/leader-lock`, `/coordinator/leader-lock`, `/controller/node-data`).
    public static func prefix(environment: [String: String]) -> String {
        var p = ""
        for variable in ["POD_NAMESPACE", clusterNameVariable] {
            if let v = environment[variable], !v.isEmpty { p += "/" + v }
        }
        return p
    }
}

extension EtcdClient.Endpoint {
    /// The members named by `database_server_dns`: one host, or several comma-separated `host[:port]` (an IPv6 address
    /// in brackets when it has a port); a member without a port uses `defaultPort`. The client tries them in order and
    /// moves to the next when one does not answer.
    /// - Returns: nil when an entry is empty or its port is not 1–65535.
    public static func list(_ text: String, defaultPort: Int) -> [EtcdClient.Endpoint]? {
        var out: [EtcdClient.Endpoint] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = raw.trimmingCharacters(in: .whitespaces)
            var host = item
            var port = defaultPort
            if item.hasPrefix("["), let close = item.firstIndex(of: "]") {
                host = String(item[item.index(after: item.startIndex)..<close])
                let rest = item[item.index(after: close)...]
                if !rest.isEmpty {
                    guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                    port = p
                }
            } else if item.filter({ $0 == ":" }).count == 1, let colon = item.firstIndex(of: ":") {
                guard let p = Int(item[item.index(after: colon)...]) else { return nil }
                host = String(item[..<colon])
                port = p
            }
            guard !host.isEmpty, (1...65535).contains(port) else { return nil }
            out.append(.init(host: host, port: port))
        }
        return out.isEmpty ? nil : out
    }
}
