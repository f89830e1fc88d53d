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

    /// Parses and validates the file's bytes.
    /// - Parameter file: the name used in error messages (the path the binary read).
    /// - Throws: `ConfigError` naming the file, the first invalid key, its value and what is allowed (DECISIONS 3).
    public static func parse(
        _ bytes: some Collection<UInt8>, environment: [String: String] = [:], file: String = "ms_deployer.json"
    ) throws(ConfigError) -> DeployerConfig {
        try parse(ConfigReader(document: bytes, file: file), environment: environment)
    }

    /// Validates an already parsed document.
    public static func parse(
        _ doc: JSON, environment: [String: String] = [:], file: String = "ms_deployer.json"
    ) throws(ConfigError) -> DeployerConfig {
        guard case .object(let o) = doc else {
            throw ConfigError(code: .invalidJSON, file: file, key: "<document>", value: String(doc.compact.prefix(40)), allowed: "a JSON object")
        }
        return try parse(ConfigReader(file: file, object: o), environment: environment)
    }

    static func parse(_ r: ConfigReader, environment: [String: String]) throws(ConfigError) -> DeployerConfig {
        func items(_ key: String) throws(ConfigError) -> TLSItems {
            let i = try r.section(key)
            return TLSItems(caCert: try i.string("ca_cert", utf8Length: 1...4096), tlsCert: try i.string("tls_cert", utf8Length: 1...4096),
                            tlsKey: try i.string("tls_key", utf8Length: 1...4096), tlsPasswd: try i.string("tls_passwd", utf8Length: 0...4096),
                            tlsCrl: try i.string("tls_crl", utf8Length: 0...4096))
        }
        let portRange = 1024...65535
        var c = DeployerConfig(ip: "", port: 9789, apiserverIP: "", apiserverPort: 6443, logLevel: nil, statusFile: "", serverTLSEnable: true,
                               serverTLS: nil, k8sTLSEnable: false, k8sTLS: nil, mindieTLSEnable: false, mindieTLS: nil, kubeconfig: nil,
                               k8sTokenFile: nil, namespace: Manifests.defaultNamespace, rankTableSyncSeconds: 5)
        // the environment wins over the file (the reference's pod template sets it); then the file's ip is not read
        if let v = environment["MINDIE_MS_SERVER_IP"], !v.isEmpty {
            guard ConfigReader.isSpecificIP(v) else {
                throw ConfigError(file: "environment", key: "MINDIE_MS_SERVER_IP", value: v, allowed: ConfigReader.specificIPAllowed)
            }
            c.ip = v
        } else {
            c.ip = try r.specificIP("ip")
        }
        c.port = try r.int("port", portRange, default: 9789)
        // optional paths: absent, null or "" leave them unset; any other non-string is a mistake, not "unset"
        func optionalPath(_ key: String, _ allowed: String) throws(ConfigError) -> String? {
            switch r.object[key] {
            case nil, .null?: return nil
            case .string(let v)?: return v.isEmpty ? nil : v
            case let v?: throw r.fail(key, v, allowed, .wrongType)
            }
        }
        c.kubeconfig = try optionalPath("kubeconfig", "a kubeconfig file path or \"in-cluster\"")
        if c.kubeconfig == nil { c.apiserverIP = try r.specificIP("k8s_apiserver_ip") }
        c.apiserverPort = try r.int("k8s_apiserver_port", portRange, default: 6443)
        if let level = r.object["log_info"]?["log_level"], level != .null {
            guard case .string(let l) = level else { throw r.fail("log_info.log_level", level, "a string (a log level)", .wrongType) }
            c.logLevel = l
        }
        c.statusFile = try r.nonEmptyString("ms_status_file", "a non-empty file path")
        c.serverTLSEnable = try r.bool("server_tls_enable", default: true)
        if c.serverTLSEnable { c.serverTLS = try items("server_tls_items") }
        // the apiserver keys need their TLS switch; a kubeconfig carries its own TLS settings
        c.k8sTLSEnable = c.kubeconfig == nil ? try r.bool("client_k8s_tls_enable") : try r.bool("client_k8s_tls_enable", default: false)
        if c.k8sTLSEnable { c.k8sTLS = try items("client_k8s_tls_items") }
        c.mindieTLSEnable = try r.bool("client_mindie_server_tls_enable")
        if c.mindieTLSEnable { c.mindieTLS = try items("client_mindie_tls_items") }
        if let t = try optionalPath("k8s_token_file", "a token file path") { c.k8sTokenFile = t }
        if let ns = r.object["namespace"] {
            let allowed = "a DNS-1123 label (lowercase letters, digits and '-', at most 48 characters)"
            guard case .string(let n) = ns else { throw r.fail("namespace", ns, allowed, .wrongType) }
            guard InferServerSpec.isValidServerName(n) else { throw r.fail("namespace", ns, allowed, .invalidValue) }
            c.namespace = n
        }
        c.rankTableSyncSeconds = try r.int("rank_table_sync_seconds", 1...3600, default: 5)
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
