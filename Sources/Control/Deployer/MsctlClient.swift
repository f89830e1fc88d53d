import Foundation
import MSCore

/// msctl's work without argument parsing (docs/wire/deployer.md §1, DECISIONS 24): load `~/.mindie_ms/msctl.json`, send
/// one request to ms_deployer, print its JSON reply. Exit codes: 0 success, 1 the deployer refused or could not
/// be reached, 2 usage or local file error.
public enum MsctlClient {
    public enum Command: Sendable, Equatable {
        case create(file: String)
        case update(file: String)
        case get(name: String)
        case delete(name: String)
        /// Every managed server (`GET /v1/servers`).
        case list
    }

    /// A server name as one URL path segment: RFC 3986 unreserved characters stay, everything else is
    /// percent-encoded, so `-n 'a b'` or `-n 'x/../y'` asks for a name the deployer does not know instead of
    /// another path.
    static func pathSegment(_ name: String) -> String {
        var out = ""
        for b in name.utf8 {
            let unreserved = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
            out += unreserved ? String(UnicodeScalar(b)) : String(format: "%%%02X", b)
        }
        return out
    }

    /// What the binary prints and returns.
    public struct Outcome: Sendable, Equatable {
        public var exitCode: Int32
        public var stdout: String
        public var stderr: String
        public init(_ exitCode: Int32, stdout: String = "", stderr: String = "") {
            self.exitCode = exitCode
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    /// `msctl.json`: `http.{dstIP,dstPort,ca_cert,tls_cert,tls_key,tls_crl,timeout}`, `log_level`; ours:
    /// `http.tls_enable` (default true).
    public struct Config: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var timeoutSeconds: Int
        public var tls: TLSConfiguration?
    }

    public struct LocalError: Error, Sendable, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// The config path: `$HOME/.mindie_ms/msctl.json`.
    public static func configPath(environment: [String: String]) throws(LocalError) -> String {
        guard let home = environment["HOME"], !home.isEmpty else { throw LocalError("HOME is not set: cannot find ~/.mindie_ms/msctl.json") }
        return "\(home)/.mindie_ms/msctl.json"
    }

    public static func loadConfig(path: String, environment: [String: String]) throws(LocalError) -> Config {
        let bytes: [UInt8]
        do { bytes = try FileCheck(maxMode: FileCheck.configMode, environment: environment).read(path) } catch {
            throw LocalError("msctl config: \(error)")
        }
        guard let doc = try? JSONValue.parse(Data(bytes)), case .object = doc else { throw LocalError("msctl config \(path): not a JSON object") }
        guard case .object(let h)? = doc["http"] else { throw LocalError("msctl config \(path): http must be an object") }
        func fail(_ k: String, _ rule: String) -> LocalError {
            LocalError("msctl config \(path): http.\(k) \(rule), got \(h[k]?.rendered ?? "nothing")")
        }
        guard case .string(let ip)? = h["dstIP"], IPAddress.isValid(ip), !IPAddress.isAllZero(ip) else {
            throw fail("dstIP", "must be an IPv4 or IPv6 address, not all-zero")
        }
        guard case .int(let port)? = h["dstPort"], (1024...65535).contains(port) else { throw fail("dstPort", "must be an integer in [1024, 65535]") }
        guard case .int(let timeout)? = h["timeout"], (1...60).contains(timeout) else { throw fail("timeout", "must be an integer in [1, 60]") }
        var tlsEnable = true
        if let t = h["tls_enable"] {
            guard case .bool(let b) = t else { throw fail("tls_enable", "must be a boolean") }
            tlsEnable = b
        }
        func str(_ k: String, min: Int) throws(LocalError) -> String {
            guard case .string(let s)? = h[k], (min...4096).contains(s.utf8.count) else { throw fail(k, "must be a string of \(min)..4096 characters") }
            return s
        }
        var tls: TLSConfiguration?
        if tlsEnable {
            let ca = try str("ca_cert", min: 1), cert = try str("tls_cert", min: 1), key = try str("tls_key", min: 1), crl = try str("tls_crl", min: 0)
            let check = FileCheck(maxMode: FileCheck.secretMode, environment: environment)
            do {
                for p in [ca, cert, key] + (crl.isEmpty ? [] : [crl]) { try check.validate(p) }
            } catch {
                throw LocalError("msctl config: certificate file: \(error)")
            }
            tls = TLSConfiguration(certificatePath: cert, privateKeyPath: key, caPath: ca, crlPath: crl.isEmpty ? nil : crl)
        }
        return Config(host: ip, port: Int(port), timeoutSeconds: Int(timeout), tls: tls)
    }

    /// Reads a spec file with the config-file checks (≤0640, owner, no symlink).
    static func readSpec(_ file: String, environment: [String: String]) throws(LocalError) -> [UInt8] {
        do { return try FileCheck(maxMode: FileCheck.configMode, environment: environment).read(file) } catch {
            throw LocalError("\(error)")
        }
    }

    /// Builds the request for a command (file checks included).
    public static func request(_ command: Command, config: Config, environment: [String: String]) throws(LocalError) -> HTTPClientRequest {
        var method = "GET", path = "", body: [UInt8] = []
        switch command {
        case .create(let file):
            body = try readSpec(file, environment: environment)
            method = "POST"
            path = "/v1/servers"
        case .update(let file):
            body = try readSpec(file, environment: environment)
            guard let doc = try? JSONValue.parse(Data(body)), case .string(let name)? = doc["server_name"], (1...4096).contains(name.utf8.count) else {
                throw LocalError("\(file): update needs a JSON object with a string server_name, e.g. {\"server_name\":\"mindie-server\"}")
            }
            method = "POST"
            path = "/v1/servers/\(pathSegment(name))"
        case .get(let name):
            path = "/v1/servers/\(pathSegment(name))"
        case .delete(let name):
            method = "DELETE"
            path = "/v1/servers/\(pathSegment(name))"
        case .list:
            path = "/v1/servers"
        }
        return HTTPClientRequest(method: method, host: config.host, port: config.port, path: path,
                                 headers: [("Accept", "*/*"), ("Content-Type", "application/json")], body: body,
                                 timeoutMilliseconds: UInt64(config.timeoutSeconds) * 1000)
    }

    /// Loads the config, sends the command, formats the answer.
    /// - Parameter configPath: nil = `$HOME/.mindie_ms/msctl.json`.
    public static func run(_ command: Command, environment: [String: String], configPath: String? = nil) async -> Outcome {
        let config: Config
        let request: HTTPClientRequest
        let client: HTTPClient
        do {
            config = try loadConfig(path: try configPath ?? Self.configPath(environment: environment), environment: environment)
            request = try Self.request(command, config: config, environment: environment)
        } catch {
            return Outcome(2, stderr: "msctl: \(error)\n")
        }
        do {
            client = HTTPClient(tls: try config.tls.map { c throws(HTTPClientError) in try TLSClient(c) })
        } catch {
            return Outcome(2, stderr: "msctl: TLS setup failed: \(error)\n")
        }
        let response: HTTPClientResponse
        do { response = try await client.execute(request) } catch {
            return Outcome(1, stderr: "msctl: cannot reach ms_deployer at \(config.host):\(config.port): \(error)\n")
        }
        let ok = (200..<300).contains(response.status)
        return Outcome(ok ? 0 : 1, stdout: format(response.body), stderr: ok ? "" : "msctl: ms_deployer answered HTTP \(response.status)\n")
    }

    /// JSON pretty-printed (4 spaces, sorted keys); other text truncated to 256 characters.
    public static func format(_ body: [UInt8]) -> String {
        if let v = try? JSONValue.parse(Data(body)) { return v.serialized(indent: 4) + "\n" }
        let text = String(decoding: body, as: UTF8.self)
        return text.isEmpty ? "" : String(text.prefix(256)) + "\n"
    }

    /// `msctl render infer_server -f FILE`: the manifests as YAML, no deployer involved.
    /// The PD configs are checked with the binaries' start-up parsers, as `create` does.
    public static func render(file: String, namespace: String, environment: [String: String], configChecks: ComponentConfigChecks) -> Outcome {
        let body: [UInt8]
        do { body = try readSpec(file, environment: environment) } catch { return Outcome(2, stderr: "msctl: \(error)\n") }
        let doc: JSONValue
        do { doc = try InferServerSpec.parseDocument(body) } catch { return Outcome(2, stderr: "msctl: \(file): \(error.message)\n") }
        let tls = doc["mindie_server_config"]?["enable_tls"]?.boolValue ?? false
        do {
            let spec = try InferServerSpec.parse(body: body, mindieTLS: tls)
            try PDConfigs.check(spec, with: configChecks)
            return Outcome(0, stdout: "---\n" + YAML.render(Manifests.namespaceObject(namespace)) + YAML.render(Manifests.build(spec, namespace: namespace)))
        } catch {
            return Outcome(2, stderr: "msctl: \(file): \(error.message)\n")
        }
    }
}
