public import MSCore

/// One Kubernetes object as the Deployer creates it: its REST coordinates and its JSON body.
public struct KubeObject: Sendable, Equatable {
    public var kind: Kind
    public var namespace: String
    public var name: String
    public var body: JSON

    /// The kinds the Deployer creates, with their REST paths.
    public enum Kind: String, Sendable, Equatable, CaseIterable, Codable {
        case configMap = "ConfigMap"
        case service = "Service"
        case deployment = "Deployment"
        case pod = "Pod"
        case serviceAccount = "ServiceAccount"
        case role = "Role"
        case roleBinding = "RoleBinding"
        case podDisruptionBudget = "PodDisruptionBudget"
        case statefulSet = "StatefulSet"

        public var apiVersion: String {
            switch self {
            case .configMap, .service, .pod, .serviceAccount: "v1"
            case .deployment, .statefulSet: "apps/v1"
            case .role, .roleBinding: "rbac.authorization.k8s.io/v1"
            case .podDisruptionBudget: "policy/v1"
            }
        }

        /// The plural resource name in URLs.
        public var resource: String {
            switch self {
            case .configMap: "configmaps"
            case .service: "services"
            case .deployment: "deployments"
            case .pod: "pods"
            case .serviceAccount: "serviceaccounts"
            case .role: "roles"
            case .roleBinding: "rolebindings"
            case .podDisruptionBudget: "poddisruptionbudgets"
            case .statefulSet: "statefulsets"
            }
        }

        /// `/api/v1` or `/apis/<group>/<version>`.
        public var apiPrefix: String { apiVersion == "v1" ? "/api/v1" : "/apis/\(apiVersion)" }

        public func collectionPath(namespace: String) -> String { "\(apiPrefix)/namespaces/\(namespace)/\(resource)" }

        /// Creation order: what others refer to first (RBAC and config before workloads, workloads before Services).
        public var createRank: Int {
            switch self {
            case .serviceAccount: 0
            case .role: 1
            case .roleBinding: 2
            case .configMap: 3
            case .statefulSet: 4
            case .deployment: 5
            case .podDisruptionBudget: 6
            case .service: 7
            case .pod: 8
            }
        }
    }

    public init(kind: Kind, namespace: String, name: String, body: JSON) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.body = body
    }

    public var collectionPath: String { kind.collectionPath(namespace: namespace) }
    public var path: String { "\(collectionPath)/\(name)" }
    /// `Kind/name`, for messages.
    public var ref: String { "\(kind.rawValue)/\(name)" }
}

// Small builders for JSON trees (kept internal so that they do not clash with other literal conformances).
func jo(_ pairs: KeyValuePairs<String, JSON>) -> JSON {
    var d: JSON.Object = [:]
    for (k, v) in pairs { d[k] = v }
    return .object(d)
}
func jo(_ dict: [String: String]) -> JSON { .object(JSON.Object(dict.mapValues { .string($0) })) }
func js(_ s: String) -> JSON { .string(s) }
func ji(_ i: Int) -> JSON { .int(Int64(i)) }
func jb(_ b: Bool) -> JSON { .bool(b) }
func ja(_ xs: [JSON]) -> JSON { .array(xs) }

extension JSON {
    /// A copy with `value` set at `path` (objects created on the way).
    func setting(_ path: [String], to value: JSON) -> JSON {
        guard let first = path.first else { return value }
        var o = objectValue ?? [:]
        o[first] = (o[first] ?? .object([:])).setting(Array(path.dropFirst()), to: value)
        return .object(o)
    }

    /// The value at a path of keys.
    func at(_ path: String...) -> JSON? {
        var v: JSON? = self
        for k in path { v = v?[k] }
        return v
    }

    /// RFC 7386 JSON merge patch of `patch` over self.
    func merging(_ patch: JSON) -> JSON {
        guard case .object(let p) = patch else { return patch }
        var o = objectValue ?? [:]
        for (k, v) in p {
            if case .null = v { o[k] = nil } else { o[k] = (o[k] ?? .null).merging(v) }
        }
        return .object(o)
    }
}
