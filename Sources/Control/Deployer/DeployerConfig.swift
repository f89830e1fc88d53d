import Foundation
public import MSCore

/// `conf/ms_deployer.json`: the reference's `ms_server.json` keys (docs/wire/deployer.md §2) plus a few optional ones.
///
/// Keys: `ip` (env `MINDIE_MS_SERVER_IP` wins), `port` (9789), `k8s_apiserver_ip`, `k8s_apiserver_port` (6443),
/// `log_info.log_level`, `ms_status_file`, `server_tls_items`, `client_k8s_tls_enable` + `client_k8s_tls_items`,
/// `client_mindie_server_tls_enable` + `client_mindie_tls_items`. Ours, all optional: `server_tls_enable` (true),
/// `kubeconfig` (a kubeconfig path; replaces the apiserver keys), `k8s_token_file` (bearer token),
/// `namespace` ("mindie"), `rank_table_sync_seconds` (5). `"kubeconfig": "in-cluster"` uses the pod's service
/// account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted token and CA).
public struct DeployerConfig: Sendable, Equatable {
    public typealias TLSItems = MSCore.TLSItems

    public var ip: String
    public var port: Int
    public var apiserverIP: String
    public var apiserverPort: Int
    public var logLevel: String?
    public var statusFile: String
    public var serverTLSEnable: Bool
    public var serverTLS: TLSItems?
    public var k8sTLSEnable: Bool
    public var k8sTLS: TLSItems?
    public var mindieTLSEnable: Bool
    public var mindieTLS: TLSItems?
    public var kubeconfig: String?
    public var k8sTokenFile: String?
    public var namespace: String
    public var rankTableSyncSeconds: Int

    /// Validates the document; errors name the key, the value and the rule (DECISIONS 3).
    public static func parse(_ doc: JSON, environment: [String: String] = [:]) throws(ConfigLoadError) -> DeployerConfig {
        func fail(_ key: String, _ rule: String) -> ConfigLoadError {
            let v = doc[key].map { $0.rendered } ?? "nothing"
            return ConfigLoadError("ms_deployer config: \(key) \(rule), got \(v)")
        }
        func ip(_ key: String, override: String? = nil) throws(ConfigLoadError) -> String {
            let v = override ?? doc[key]?.stringValue
            guard let v, IPAddress.isValid(v), !IPAddress.isAllZero(v) else { throw fail(key, "must be an IPv4 or IPv6 address, not all-zero") }
            return v
        }
        func port(_ key: String, _ def: Int) throws(ConfigLoadError) -> Int {
            guard let raw = doc[key] else { return def }
            guard case .int(let p) = raw, (1024...65535).contains(p) else { throw fail(key, "must be an integer in [1024, 65535]") }
            return Int(p)
        }
        func bool(_ key: String, _ def: Bool?) throws(ConfigLoadError) -> Bool {
            guard let raw = doc[key] else {
                if let def { return def }
                throw fail(key, "must be a boolean")
            }
            guard case .bool(let b) = raw else { throw fail(key, "must be a boolean") }
            return b
        }
        func items(_ key: String) throws(ConfigLoadError) -> TLSItems {
            guard case .object(let o)? = doc[key] else { throw fail(key, "must be an object with ca_cert, tls_cert, tls_key, tls_passwd, tls_crl") }
            func s(_ k: String, min: Int) throws(ConfigLoadError) -> String {
                guard case .string(let v)? = o[k], (min...4096).contains(v.utf8.count) else {
                    throw ConfigLoadError("ms_deployer config: \(key).\(k) must be a string of \(min)..4096 characters, got \(o[k]?.rendered ?? "nothing")")
                }
                return v
            }
            return TLSItems(caCert: try s("ca_cert", min: 1), tlsCert: try s("tls_cert", min: 1), tlsKey: try s("tls_key", min: 1),
                            tlsPasswd: try s("tls_passwd", min: 0), tlsCrl: try s("tls_crl", min: 0))
        }
        var c = DeployerConfig(ip: "", port: 9789, apiserverIP: "", apiserverPort: 6443, logLevel: nil, statusFile: "", serverTLSEnable: true,
                               serverTLS: nil, k8sTLSEnable: false, k8sTLS: nil, mindieTLSEnable: false, mindieTLS: nil, kubeconfig: nil,
                               k8sTokenFile: nil, namespace: Manifests.defaultNamespace, rankTableSyncSeconds: 5)
        c.ip = try ip("ip", override: environment["MINDIE_MS_SERVER_IP"].flatMap { $0.isEmpty ? nil : $0 })
        c.port = try port("port", 9789)
        if case .string(let k)? = doc["kubeconfig"], !k.isEmpty { c.kubeconfig = k } else { c.apiserverIP = try ip("k8s_apiserver_ip") }
        c.apiserverPort = try port("k8s_apiserver_port", 6443)
        c.logLevel = doc["log_info"]?["log_level"]?.stringValue
        guard case .string(let sf)? = doc["ms_status_file"], !sf.isEmpty else { throw fail("ms_status_file", "must be a file path") }
        c.statusFile = sf
        c.serverTLSEnable = try bool("server_tls_enable", true)
        if c.serverTLSEnable { c.serverTLS = try items("server_tls_items") }
        c.k8sTLSEnable = try bool("client_k8s_tls_enable", c.kubeconfig == nil ? nil : false)
        if c.k8sTLSEnable { c.k8sTLS = try items("client_k8s_tls_items") }
        c.mindieTLSEnable = try bool("client_mindie_server_tls_enable", nil)
        if c.mindieTLSEnable { c.mindieTLS = try items("client_mindie_tls_items") }
        if case .string(let t)? = doc["k8s_token_file"], !t.isEmpty { c.k8sTokenFile = t }
        if let ns = doc["namespace"] {
            guard case .string(let n) = ns, InferServerSpec.isValidServerName(n) else { throw fail("namespace", "must be a DNS-1123 label") }
            c.namespace = n
        }
        if let r = doc["rank_table_sync_seconds"] {
            guard case .int(let v) = r, (1...3600).contains(v) else { throw fail("rank_table_sync_seconds", "must be an integer in [1, 3600]") }
            c.rankTableSyncSeconds = Int(v)
        }
        return c
    }

    /// Checks a TLS item set's files (≤0400, owner, no symlink) and turns it into a `TLSConfiguration`.
    public static func tlsConfiguration(_ items: TLSItems, environment: [String: String], verifyPeer: Bool = true) throws(ConfigLoadError) -> TLSConfiguration {
        do {
            return try items.configuration(environment: environment, verifyPeer: verifyPeer)
        } catch {
            throw ConfigLoadError("ms_deployer config: TLS file: \(error)")
        }
    }

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The pod's own service account. Its files are kubelet-managed symlinks, so the symlink check does not apply.
    static func inClusterEndpoint(environment: [String: String], directory: String = serviceAccountDirectory) throws(ConfigLoadError) -> KubeEndpoint {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let port = Int(environment["KUBERNETES_SERVICE_PORT"] ?? "443") else {
            throw ConfigLoadError("ms_deployer config: kubeconfig \"in-cluster\" needs KUBERNETES_SERVICE_HOST (not running in a pod?)")
        }
        guard let token = try? String(contentsOfFile: "\(directory)/token", encoding: .utf8) else {
            throw ConfigLoadError("ms_deployer config: kubeconfig \"in-cluster\": cannot read \(directory)/token")
        }
        return KubeEndpoint(host: host, port: port, tls: TLSConfiguration(caPath: "\(directory)/ca.crt", minimumVersion: 12),
                            bearerToken: token.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The API server endpoint: from the kubeconfig when given, else from the apiserver keys.
    public func kubeEndpoint(environment: [String: String]) throws(ConfigLoadError) -> KubeEndpoint {
        var endpoint: KubeEndpoint
        if kubeconfig == "in-cluster" {
            endpoint = try Self.inClusterEndpoint(environment: environment)
        } else if let kubeconfig {
            let bytes: [UInt8]
            do { bytes = try FileCheck(maxMode: FileCheck.configMode, environment: environment).read(kubeconfig) } catch {
                throw ConfigLoadError("ms_deployer config: kubeconfig: \(error)")
            }
            let dir = (kubeconfig as NSString).deletingLastPathComponent
            do { endpoint = try Kubeconfig.endpoint(text: String(decoding: bytes, as: UTF8.self), directory: dir.isEmpty ? "." : dir) } catch {
                throw ConfigLoadError("ms_deployer config: \(error)")
            }
        } else {
            endpoint = KubeEndpoint(host: apiserverIP, port: apiserverPort,
                                    tls: try k8sTLS.map { i throws(ConfigLoadError) in try Self.tlsConfiguration(i, environment: environment) })
        }
        if let k8sTokenFile {
            do {
                let t = try FileCheck(maxMode: FileCheck.secretMode, environment: environment).read(k8sTokenFile)
                endpoint.bearerToken = String(decoding: t, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw ConfigLoadError("ms_deployer config: k8s_token_file: \(error)")
            }
        }
        return endpoint
    }
}
