public import Foundation
public import MSCore

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

    /// Reads the file with the config-file checks, parses it and checks the certificate files it names.
    public static func loadConfig(path: String, environment: [String: String]) throws(LocalError) -> Config {
        let bytes: [UInt8]
        do { bytes = try FileCheck(maxMode: FileCheck.configMode, environment: environment).read(path) } catch {
            throw LocalError("msctl config: \(error)")
        }
        let config: Config
        do { config = try parseConfig(bytes, file: path) } catch { throw LocalError(error.description) }
        if let tls = config.tls {
            let check = FileCheck(maxMode: FileCheck.secretMode, environment: environment)
            do {
                for p in [tls.caPath ?? "", tls.certificatePath, tls.privateKeyPath, tls.crlPath ?? ""] where !p.isEmpty { try check.validate(p) }
            } catch {
                throw LocalError("msctl config: certificate file: \(error)")
            }
        }
        return config
    }

    /// The keys of `msctl.json`, without touching the files they name.
    /// - Throws: `ConfigError` naming the file, the first invalid key, its value and what is allowed (DECISIONS 3).
    public static func parseConfig(_ bytes: some Collection<UInt8>, file: String) throws(ConfigError) -> Config {
        let h = try ConfigReader(document: bytes, file: file).section("http")
        let ip = try h.specificIP("dstIP")
        let port = try h.int("dstPort", 1024...65535)
        let timeout = try h.int("timeout", 1...60)
        var tls: TLSConfiguration?
        if try h.bool("tls_enable", default: true) {
            let ca = try h.string("ca_cert", utf8Length: 1...4096), cert = try h.string("tls_cert", utf8Length: 1...4096)
            let key = try h.string("tls_key", utf8Length: 1...4096), crl = try h.string("tls_crl", utf8Length: 0...4096)
            tls = TLSConfiguration(certificatePath: cert, privateKeyPath: key, caPath: ca, crlPath: crl.isEmpty ? nil : crl)
        }
        return Config(host: ip, port: port, timeoutSeconds: timeout, tls: tls)
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
            guard let doc = try? JSON.parse(Data(body)), case .string(let name)? = doc["server_name"], (1...4096).contains(name.utf8.count) else {
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
    /// - Parameter output: how a `get` or `list` reply is printed; other commands print the JSON reply.
    public static func run(_ command: Command, environment: [String: String], configPath: String? = nil, output: OutputFormat = .json) async -> Outcome {
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
        let text: String
        switch command {
        case .get: text = format(response.body, as: output, list: false)
        case .list: text = format(response.body, as: output, list: true)
        default: text = format(response.body)
        }
        return Outcome(ok ? 0 : 1, stdout: text, stderr: ok ? "" : "msctl: ms_deployer answered HTTP \(response.status)\n")
    }

    /// JSON pretty-printed (4 spaces, sorted keys); other text truncated to 256 characters.
    public static func format(_ body: [UInt8]) -> String {
        if let v = try? JSON.parse(Data(body)) { return v.serialized(indent: 4) + "\n" }
        let text = String(decoding: body, as: UTF8.self)
        return text.isEmpty ? "" : String(text.prefix(256)) + "\n"
    }

    // MARK: output for people

    /// `-o`: what `get` and `list` print.
    public enum OutputFormat: String, Sendable, CaseIterable {
        /// kubectl-style columns (the default)
        case table
        /// the API's reply, as msctl printed it before tables (4-space indent, sorted keys)
        case json
        case yaml
    }

    /// Formats a `get` or `list` reply; a refusal or a reply without the expected `data` falls back to `format`.
    public static func format(_ body: [UInt8], as output: OutputFormat, list: Bool, now: Date = Date()) -> String {
        guard output != .json, let doc = try? JSON.parse(Data(body)) else { return format(body) }
        if output == .yaml { return YAML.render(doc) }
        if list, let rows = doc["data"]?.arrayValue {
            return rows.isEmpty ? "No infer servers.\n" : table(header: ["NAME", "TYPE", "NAMESPACE", "READY", "STATUS", "AGE"],
                                                                 rows: rows.map { summaryRow($0, now: now, namespace: true) })
        }
        guard !list, let data = doc["data"], case .object = data else { return format(body) }
        var out = table(header: ["NAME", "TYPE", "READY", "STATUS", "AGE"], rows: [summaryRow(data, now: now, namespace: false)])
        if let reason = data["reason"]?.stringValue { out += "Reason: \(reason)\n" }
        let pods = data["instances_status"]?.arrayValue ?? []
        if !pods.isEmpty {
            out += "\n" + table(header: ["POD", "ROLE", "PHASE", "READY", "LIVE", "MESSAGE"], rows: pods.map { p in
                [p["pod_name"]?.stringValue ?? p["instance_id"]?.rendered ?? "?", p["role"]?.stringValue ?? "-", p["phase"]?.stringValue ?? "-",
                 p["readiness"]?.boolValue.map { $0 ? "true" : "false" } ?? "-", p["liveness"]?.boolValue.map { $0 ? "true" : "false" } ?? "-",
                 p["message"]?.stringValue ?? ""]
            })
        }
        return out
    }

    static func summaryRow(_ s: JSON, now: Date, namespace: Bool) -> [String] {
        let type = (s["server_type"]?.stringValue ?? "?").replacingOccurrences(of: "mindie_", with: "")
        let ready = s["ready_replicas"]?.intValue.map(String.init) ?? "?"
        let desired = s["replicas"]?.intValue.map(String.init) ?? "?"
        let age = s["created"]?.stringValue.flatMap(parseTimestamp).map { humanAge(now.timeIntervalSince($0)) } ?? "<unknown>"
        var row = [s["server_name"]?.stringValue ?? "?", type]
        if namespace { row.append(s["namespace"]?.stringValue ?? "?") }
        return row + ["\(ready)/\(desired)", s["status"]?.stringValue ?? "Unknown", age]
    }

    /// Left-aligned columns separated by three spaces, as kubectl prints them (no trailing spaces).
    static func table(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0.indices.contains(i) ? $0[i].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0) }
                .joined().replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }.joined(separator: "\n") + "\n"
    }

    static func parseTimestamp(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: s)
    }

    /// kubectl's HumanDuration: 45s, 3m20s, 45m, 3h20m, 20h, 2d5h, 30d, 2y.
    static func humanAge(_ interval: TimeInterval) -> String {
        let s = max(0, Int(interval))
        if s < 120 { return "\(s)s" }
        let m = s / 60, h = s / 3600, d = s / 86400
        if m < 10 { return s % 60 == 0 ? "\(m)m" : "\(m)m\(s % 60)s" }
        if h < 3 { return "\(m)m" }
        if h < 8 { return m % 60 == 0 ? "\(h)h" : "\(h)h\(m % 60)m" }
        if h < 48 { return "\(h)h" }
        if h < 192 { return h % 24 == 0 ? "\(d)d" : "\(d)d\(h % 24)h" }
        if d < 730 { return "\(d)d" }
        return "\(d / 365)y"
    }

    // MARK: --wait

    public struct WaitOptions: Sendable {
        public var timeoutSeconds: Double
        public var intervalMilliseconds: UInt64
        public init(timeoutSeconds: Double, intervalMilliseconds: UInt64 = 1000) {
            self.timeoutSeconds = timeoutSeconds
            self.intervalMilliseconds = intervalMilliseconds
        }
    }

    /// `create`/`update --wait`: sends the command, then polls `GET /v1/servers/NAME` until the server is Ready
    /// (exit 0), Failed (exit 1, the Deployer's reason) or the timeout passes (exit 1, the last state and reason).
    /// `progress` gets each line as it happens (a line is printed when the state changes).
    public static func runAndWait(_ command: Command, wait: WaitOptions, environment: [String: String], configPath: String? = nil,
                                  progress: @Sendable (String) -> Void) async -> Outcome {
        let file: String
        switch command {
        case .create(let f), .update(let f): file = f
        default: return Outcome(2, stderr: "msctl: --wait is for create and update\n")
        }
        let config: Config
        let name: String
        do {
            config = try loadConfig(path: try configPath ?? Self.configPath(environment: environment), environment: environment)
            guard let doc = try? JSON.parse(Data(try readSpec(file, environment: environment))), let n = doc["server_name"]?.stringValue, !n.isEmpty else {
                return Outcome(2, stderr: "msctl: \(file): --wait needs a JSON object with a string server_name\n")
            }
            name = n
        } catch {
            return Outcome(2, stderr: "msctl: \(error)\n")
        }
        let sent = await run(command, environment: environment, configPath: configPath)
        guard sent.exitCode == 0 else { return sent }
        let message = (try? JSON.parse(Data(sent.stdout.utf8)))?["message"]?.stringValue ?? sent.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        progress("\(name): \(message)")
        let client: HTTPClient
        do { client = HTTPClient(tls: try config.tls.map { c throws(HTTPClientError) in try TLSClient(c) }) } catch {
            return Outcome(2, stderr: "msctl: TLS setup failed: \(error)\n")
        }
        let request: HTTPClientRequest
        do { request = try Self.request(.get(name: name), config: config, environment: environment) } catch {
            return Outcome(2, stderr: "msctl: \(error)\n")
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64(wait.timeoutSeconds * 1000))
        var last = "", lastLine = "no answer yet"
        while true {
            do {
                let r = try await client.execute(request)
                if let data = (try? JSON.parse(Data(r.body)))?["data"], (200..<300).contains(r.status) {
                    let status = data["status"]?.stringValue ?? "Unknown"
                    let counts = "\(data["ready_replicas"]?.intValue ?? 0)/\(data["replicas"]?.intValue ?? 0) ready"
                    let reason = data["reason"]?.stringValue
                    lastLine = "\(counts) (\(status)\(reason.map { ": \($0)" } ?? ""))"
                    if status == "Ready" {
                        progress("\(name): \(counts)")
                        return Outcome(0, stderr: "")
                    }
                    if status == "Failed" {
                        return Outcome(1, stderr: "msctl: \(name) failed: \(reason ?? "the Deployer reports Failed") (\(counts))\n")
                    }
                    if lastLine != last { progress("\(name): \(lastLine)") }
                    last = lastLine
                } else {
                    lastLine = "ms_deployer answered HTTP \(r.status): \(format(r.body).trimmingCharacters(in: .whitespacesAndNewlines))"
                    if r.status == 404 { return Outcome(1, stderr: "msctl: \(name): \(lastLine)\n") }
                }
            } catch {
                // a Deployer restarting meanwhile: keep asking until the deadline
                lastLine = "cannot reach ms_deployer at \(config.host):\(config.port): \(error)"
            }
            if ContinuousClock.now >= deadline {
                return Outcome(1, stderr: "msctl: \(name) not ready after \(formatSeconds(wait.timeoutSeconds)): \(lastLine)\n")
            }
            try? await Task.sleep(for: .milliseconds(wait.intervalMilliseconds))
        }
    }

    static func formatSeconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : "\(s) s" }

    /// `msctl render infer_server -f FILE`: the manifests as YAML, no deployer involved.
    /// The PD configs are checked with the binaries' start-up parsers, as `create` does.
    public static func render(file: String, namespace: String, environment: [String: String], configChecks: ComponentConfigChecks) -> Outcome {
        let body: [UInt8]
        do { body = try readSpec(file, environment: environment) } catch { return Outcome(2, stderr: "msctl: \(error)\n") }
        let doc: JSON
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
