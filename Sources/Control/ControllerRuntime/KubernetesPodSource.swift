import Foundation
import MSCore

/// Lists the cluster's pods from the Kubernetes API server, as the pod's own ServiceAccount
/// (`instance_discovery.source = kubernetes`).
///
/// In-cluster conventions, each overridable (tests, `scripts/kube_local.py`):
/// - API server: `KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT` (default 443), always HTTPS, verified against
///   the ServiceAccount's `ca.crt` (TLS 1.2 or later, as API servers offer);
/// - ServiceAccount files: `/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`, directory
///   overridden by `MINDIE_MS_SERVICEACCOUNT_DIR`. The token is read again before every call (kubelet rotates
///   projected tokens). These are kubelet-managed symlinks of mode 0644, so the config-file checks do not apply;
/// - namespace: `instance_discovery.namespace`, else `POD_NAMESPACE`, else the ServiceAccount's `namespace` file.
///
/// One `GET /api/v1/namespaces/<ns>/pods?labelSelector=…` per pass (every `rank_table_detecting_seconds`). A list
/// carries no resourceVersion, so an API-server restart or a compacted history (`410 Gone`, which only a watch
/// resuming from an old version gets) costs nothing but the passes that fail while the server is away; a failed
/// pass is skipped and the last instance set stays, as with an unreadable rank table.
public final class KubernetesPodSource: Sendable {
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    public let host: String
    public let port: Int
    public let namespace: String
    public let tokenPath: String
    let config: ControllerConfig.InstanceDiscovery
    let tableOptions: RankTable.Options
    let http: HTTPClient

    /// - Throws: `ControllerStartError` naming the missing variable or file.
    public init(config c: ControllerConfig, environment env: [String: String]) throws(ControllerStartError) {
        config = c.instanceDiscovery
        tableOptions = RankTable.Options(config: c)
        guard let host = env["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw ControllerStartError(
                "instance_discovery.source is \"kubernetes\" but KUBERNETES_SERVICE_HOST is not set (not running in a pod?)")
        }
        let portText = env["KUBERNETES_SERVICE_PORT"].flatMap { $0.isEmpty ? nil : $0 } ?? "443"
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw ControllerStartError("KUBERNETES_SERVICE_PORT=\(portText) is not a port")
        }
        self.host = host
        self.port = port
        let dir = env["MINDIE_MS_SERVICEACCOUNT_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.serviceAccountDirectory
        tokenPath = dir + "/token"
        let caPath = dir + "/ca.crt"
        guard FileManager.default.isReadableFile(atPath: caPath) else {
            throw ControllerStartError("instance_discovery: cannot read the API server's CA \(caPath)")
        }
        guard FileManager.default.isReadableFile(atPath: tokenPath) else {
            throw ControllerStartError("instance_discovery: cannot read the ServiceAccount token \(tokenPath)")
        }
        var ns = c.instanceDiscovery.namespace
        if ns.isEmpty { ns = env["POD_NAMESPACE"] ?? "" }
        if ns.isEmpty, let text = try? String(contentsOfFile: dir + "/namespace", encoding: .utf8) {
            ns = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard !ns.isEmpty else {
            throw ControllerStartError(
                "instance_discovery: no namespace (set instance_discovery.namespace or POD_NAMESPACE, or mount \(dir)/namespace)")
        }
        namespace = ns
        do {
            http = HTTPClient(tls: try TLSClient(TLSConfiguration(caPath: caPath, minimumVersion: 12)))
        } catch {
            throw ControllerStartError("instance_discovery: TLS client with CA \(caPath): \(error)")
        }
    }

    /// The request target of one pass.
    public var listPath: String {
        var p = "/api/v1/namespaces/\(Self.percentEncode(namespace))/pods"
        if !config.labelSelector.isEmpty { p += "?labelSelector=" + Self.percentEncode(config.labelSelector) }
        return p
    }

    /// Where the pods come from, for logs.
    public var description: String {
        "pods of namespace \(namespace) (\(config.labelSelector.isEmpty ? "all" : config.labelSelector)) at \(host):\(port)"
    }

    /// One pass: the cluster the API server shows now, or why there is none.
    public func discover() async -> Result<(cluster: DiscoveredCluster, skipped: [PodDiscovery.Skipped]), DiscoveryError> {
        let token: String
        do {
            token = try String(contentsOfFile: tokenPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            return .failure(DiscoveryError("cannot read the ServiceAccount token \(tokenPath): \(error.localizedDescription)"))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(
                HTTPClientRequest(
                    method: "GET", host: host, port: port, path: listPath,
                    headers: [("Accept", "application/json"), ("Authorization", "Bearer \(token)")],
                    timeoutMilliseconds: UInt64(config.timeoutSeconds) * 1000))
        } catch {
            return .failure(DiscoveryError("GET \(listPath) at \(host):\(port): \(error)"))
        }
        guard response.status == 200 else {
            var message = String(decoding: response.body.prefix(300), as: UTF8.self)
            if let v = try? JSON.parse(Data(response.body)), case .string(let m)? = v["message"] { message = m }
            let hint = response.status == 403 ? " (the ServiceAccount needs get/list/watch on pods in \(namespace))" : ""
            return .failure(DiscoveryError("GET \(listPath): HTTP \(response.status): \(message)\(hint)"))
        }
        let list: JSON
        do { list = try JSON.parse(Data(response.body)) } catch {
            return .failure(DiscoveryError("GET \(listPath): the body is not JSON: \(error.reason)"))
        }
        do {
            return .success(try PodDiscovery.cluster(fromPodList: list, config: config, options: tableOptions))
        } catch {
            return .failure(DiscoveryError("GET \(listPath): \(error.description)"))
        }
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || "-_.~".utf8.contains(b)
            out += ok ? String(UnicodeScalar(b)) : String(format: "%%%02X", b)
        }
        return out
    }
}

/// Why a discovery pass found nothing usable; the pass is skipped.
public struct DiscoveryError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
