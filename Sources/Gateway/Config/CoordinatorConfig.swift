public import MSCore

/// The Coordinator's configuration: every key of `ms_coordinator.json` (docs/wire/coordinator.md §8), validated.
///
/// Parse with ``CoordinatorConfig/parse(_:environment:file:)``. Keys, defaults and ranges are the
/// reference's; the two request limits can be overridden from the environment. Pure: no file or
/// environment access of its own.
public struct CoordinatorConfig: Sendable, Equatable {
    /// `http_config`.
    public struct HTTP: Sendable, Equatable {
        public var allowAllZeroIPListening = false
        public var predictIP = "127.0.0.1"
        public var manageIP = "127.0.0.1"
        public var predictPort = 1025
        public var managePort = 1026
        public var alarmPort = 1027
        public var externalPort = 1028
        public var statusPort = 1029
        public var serverThreadNum = 10
        public var clientThreadNum = 10
        public var httpTimeoutSeconds = 600
        /// Client idle timeout; 0 = never.
        public var keepAliveSeconds = 180
        public var serverName = "MindIE-MS"
        public var userAgent = "Coordinator/1.0"
        /// `relay_buffer_bytes` (ours, optional): the most bytes of an instance's reply held for one client. A
        /// Content-Length reply up to it is held until complete (a short one is retried, never relayed as whole);
        /// a longer reply or a stream stops reading its instance while this many bytes are unsent to a slow client.
        public var relayBufferBytes = 1 << 20
        /// `max_connections` (ours, optional): open connections each listener accepts, by port ("data", "management",
        /// "status", "external"); over it a new connection gets 503. A flood on one port cannot take the file
        /// descriptors the others need. The data port's default follows `request_limit.max_requests`.
        public var maxConnections: [String: Int] = [:]
        public init() {}
    }

    /// `request_limit`.
    public struct RequestLimit: Sendable, Equatable {
        public var singleNodeMaxRequests = 1000
        public var maxRequests = 10000
        /// Body limit in MiB.
        public var bodyLimitMiB = 1
        public var bodyLimitBytes: Int { bodyLimitMiB << 20 }
        public init() {}
    }

    /// `exception_config`; all timeouts in seconds, 0 disables one.
    public struct Exceptions: Sendable, Equatable {
        public var maxRetry = 5
        public var scheduleTimeout = 600
        public var firstTokenTimeout = 600
        public var inferTimeout = 600
        public var tokenizerTimeout = 300
        /// `drain_timeout` (optional, beyond the reference): how long requests in flight on an instance that a
        /// refresh removed may still finish before they fail with a reply; 0 fails them at once.
        public var drainTimeout = 30
        public init() {}

        /// The timeouts in force while `EnableDynamicAdjustTimeoutConfig` is true (§8):
        /// schedule 3600, first token 3600, inference 65536.
        public func dynamicallyAdjusted() -> Exceptions {
            var e = self
            e.scheduleTimeout = 3600
            e.firstTokenTimeout = 3600
            e.inferTimeout = 65536
            return e
        }

        /// The schedule timeout after the startup rule (§6): if schedule+20 > min(first_token, infer),
        /// it becomes max(min−20, 0). Defaults give 580.
        public var effectiveScheduleTimeout: Int {
            let m = min(firstTokenTimeout, inferTimeout)
            return scheduleTimeout + 20 > m ? max(m - 20, 0) : scheduleTimeout
        }
    }

    /// `instance_health_config` (optional section, beyond the reference): passive health of instances.
    ///
    /// Every proxied attempt gets a connect deadline and, when the client asked for a stream, a deadline for the
    /// instance's response head: a frozen process still completes TCP handshakes in its kernel, so only the head
    /// deadline notices it. A non-streamed reply legitimately comes only at the end, so it gets no head deadline
    /// (its first-token timeout still counts). `failure_threshold` consecutive failed attempts (connect error,
    /// reset, a missed deadline, a first-token timeout, a stream broken by the instance) open the instance's
    /// circuit: it gets no new requests. After `open_ms` (doubling per failed probe, up to `max_open_ms`) a
    /// cheap `GET /health` probe with `probe_timeout_ms` is sent; any HTTP answer closes the circuit, and so
    /// does any successful reply from the instance. The Controller still decides membership.
    public struct Health: Sendable, Equatable {
        public var connectTimeoutMs = 3000
        public var firstByteTimeoutMs = 10000
        public var failureThreshold = 3
        public var openMs = 5000
        public var maxOpenMs = 60000
        public var probeTimeoutMs = 2000
        public init() {}

        /// The back-off before the probe after `openings` consecutive openings.
        public func openNanoseconds(openings: Int) -> UInt64 {
            let ms = min(UInt64(maxOpenMs), UInt64(openMs) << UInt64(min(openings, 16)))
            return ms * 1_000_000
        }
    }

    /// `log_info`, after `MINDIE_LOG_*` overrides.
    public struct Log: Sendable, Equatable {
        public var logLevel = "INFO"
        public var toFile = true
        public var toStdout = false
        public var runLogPath = ""
        public var operationLogPath = ""
        public var maxLogStrSize = 4096
        public var maxLogFileSizeMB = 20
        public var maxLogFileNum = 10
        /// `access_log` (ours, optional): the structured access log of the data port.
        public var accessLog = AccessLog()
        public init() {}

        /// `log_info.access_log`: `{"enable": bool, "path": string, "queue_size": int}`.
        public struct AccessLog: Sendable, Equatable {
            public var enable = false
            /// The JSON-lines file (created 0640, appended to); required when `enable` is true.
            public var path = ""
            /// Records that may wait for the writer thread; beyond it lines are dropped (and counted), never waited for.
            public var queueSize = 8192
            public init() {}
        }
    }

    /// `backup_config` (optional section).
    public struct Backup: Sendable, Equatable {
        public var databaseServerDNS = "etcd.default.svc.cluster.local"
        public var databaseServerPort = 2379
        public var functionEnable = false
        /// `lease_ttl_seconds` (ours, optional, 2...3600): the master lease; the reference's is 20 s.
        public var leaseTTLSeconds = 20
        public init() {}
    }

    /// `deploy_mode`.
    public enum DeployMode: String, Sendable, Equatable {
        case singleNode = "single_node"
        case pdSeparate = "pd_separate"
        case pdDisaggregation = "pd_disaggregation"
        case pdDisaggregationSingleContainer = "pd_disaggregation_single_container"

        /// True for every PD (prefill/decode disaggregated) mode.
        public var isPD: Bool { self != .singleNode }
    }

    /// `scheduler_type`.
    public enum SchedulerType: String, Sendable, Equatable {
        case digs = "digs_scheduler"
        case `default` = "default_scheduler"
    }

    /// `algorithm_type`. `least_load` and `prefix_affinity` are this project's additions (DECISIONS 16).
    public enum Algorithm: String, Sendable, Equatable {
        case loadBalance = "load_balance"
        case roundRobin = "round_robin"
        case cacheAffinity = "cache_affinity"
        case leastLoad = "least_load"
        case prefixAffinity = "prefix_affinity"
    }

    /// `digs_scheduler_config` (every value is a JSON string in the file).
    public struct Scheduler: Sendable, Equatable {
        public var deployMode: DeployMode = .pdSeparate
        public var schedulerType: SchedulerType = .digs
        public var algorithm: Algorithm = .loadBalance
        // cache_affinity
        public var cacheSize = 100
        public var slotsThresh = 0.05
        public var blockThresh = 0.05
        // load_balance
        public var maxScheduleCount = 10000
        /// 1 FCFS, 2 SJF, 3 LJF.
        public var reorderingType = 1
        public var maxResNum = 5000
        public var resLimitRate = 1.1
        /// 1: no max check; 2: booked ≤ max check.
        public var selectType = 2
        /// `load_cost_values`: demand in [slots, blocks]; blocks 0 = computed from the prompt.
        public var loadCostValues: [Int] = [1, 0]
        /// `load_cost_coefficient` w = (a, i, o, n, k, m, r, b, c).
        public var loadCostCoefficient: [Double] = [0, 0.22, 1024, 24, 6, 0, 1, 0, 1]
        // prefix_affinity (project keys, optional)
        /// `prefix_block_size`: bytes of rendered prompt per hashed block.
        public var prefixBlockSize = 256
        /// `prefix_cache_blocks`: block hashes remembered per instance (LRU).
        public var prefixCacheBlocks = 8192
        /// `prefix_load_margin`: in-flight requests the affine instance may exceed the least loaded by.
        public var prefixLoadMargin = 8
        // hidden keys
        public var pullRequestTimeout = 500
        public var resViewUpdateTimeout = 500
        /// Other hidden keys, as given (`pool_type`, `block_size`, `max_summary_count`, …).
        public var hidden: [String: String] = [:]
        public init() {}
    }

    /// One `X_tls_items` block.
    public typealias TLSItems = MSCore.TLSItems

    /// One `X_tls_enable` switch with its items (items are empty when disabled and absent).
    public struct TLSEndpoint: Sendable, Equatable {
        public var enabled = true
        public var items = TLSItems()
        public init() {}
    }

    /// `api_config` (this project's optional section): what the data port offers beyond the reference's routes.
    public struct API: Sendable, Equatable {
        /// `passthrough_routes`: POST paths scheduled like the OpenAI routes and relayed unchanged (the backend
        /// validates the payload), so a route a new engine serves needs no release.
        public var passthroughRoutes = API.defaultPassthroughRoutes
        /// `metrics_on_data_port`: `GET /metrics` on the data port too (tools such as aiperf scrape the port they
        /// send to).
        public var metricsOnDataPort = true
        /// Routes vLLM-compatible engines serve that users call.
        public static let defaultPassthroughRoutes = ["/v1/responses", "/v1/embeddings", "/tokenize", "/detokenize"]
        /// Most entries `passthrough_routes` may list.
        public static let maxPassthroughRoutes = 64
        public init() {}
    }

    /// The eight TLS prefixes, in the reference's spelling (`mindie_mangment` sic).
    public static let tlsPrefixes = [
        "controller_server", "request_server", "mindie_client", "mindie_mangment",
        "external", "status", "etcd_server", "alarm_client",
    ]

    public var http = HTTP()
    public var requestLimit = RequestLimit()
    public var metricsEnable = false
    public var metricsTriggerSize = 100
    /// `prometheus_metrics_config.reuse_time`, seconds.
    public var prometheusReuseTime = 3
    public var exceptions = Exceptions()
    public var health = Health()
    public var log = Log()
    /// Characters per token.
    public var stringTokenRate = 4.02
    public var scheduler = Scheduler()
    /// TLS switches keyed by prefix (see ``tlsPrefixes``).
    public var tls: [String: TLSEndpoint] = Dictionary(uniqueKeysWithValues: tlsPrefixes.map { ($0, TLSEndpoint()) })
    public var backup = Backup()
    /// `api_config` (optional).
    public var api = API()
    /// `EnableDynamicAdjustTimeoutConfig` (optional).
    public var enableDynamicAdjustTimeout = false
    /// Non-fatal findings (clamped environment overrides), for the caller to log.
    public var warnings: [String] = []

    /// All defaults, as the reference documents them.
    public init() {}

    /// Environment variable overriding `request_limit.single_node_max_requests`.
    public static let singleNodeMaxReqEnv = "MINDIE_MS_COORDINATOR_CONFIG_SINGLE_NODE_MAX_REQ"
    /// Environment variable overriding `request_limit.max_requests`.
    public static let maxReqEnv = "MINDIE_MS_COORDINATOR_CONFIG_MAX_REQ"
}

extension CoordinatorConfig {
    /// Parses and validates `ms_coordinator.json`.
    ///
    /// Mandatory: every key of `http_config`, `request_limit`, `metrics_config`,
    /// `prometheus_metrics_config`, `exception_config`, `log_info`, `string_token_rate` and the eight
    /// `*_tls_enable` switches (with their `*_tls_items` when true). Optional with defaults:
    /// `digs_scheduler_config` keys, `backup_config`, `EnableDynamicAdjustTimeoutConfig`, and this project's
    /// `api_config` (`passthrough_routes`: array of POST paths, default ``API/defaultPassthroughRoutes``;
    /// `metrics_on_data_port`: bool, default true).
    /// - Parameters:
    ///   - data: the file's bytes.
    ///   - environment: the process environment (injected); reads `MINDIE_MS_COORDINATOR_CONFIG_*`
    ///     and `MINDIE_LOG_LEVEL`, `MINDIE_LOG_TO_FILE`, `MINDIE_LOG_TO_STDOUT`, `MINDIE_LOG_PATH`.
    ///   - file: the name used in error messages.
    /// - Throws: `ConfigError` naming file, key, value and allowed range.
    public static func parse(
        _ data: some Collection<UInt8>, environment: [String: String] = [:], file: String = "ms_coordinator.json"
    ) throws(ConfigError) -> CoordinatorConfig {
        let r = try ConfigReader(document: data, file: file, maxDepth: 64)
        var c = CoordinatorConfig()

        // http_config
        let h = try r.section("http_config")
        c.http.allowAllZeroIPListening = try h.bool("allow_all_zero_ip_listening")
        for (k, kp) in [("predict_ip", \HTTP.predictIP), ("manage_ip", \HTTP.manageIP)] {
            let ip = try h.string(k)
            guard IPAddress.isValid(ip) else { throw h.fail(k, .string(ip), "an IPv4 or IPv6 address") }
            if !c.http.allowAllZeroIPListening && IPAddress.isAllZero(ip) {
                throw h.fail(k, .string(ip), "a specific address (0.0.0.0 and :: need allow_all_zero_ip_listening=true)")
            }
            c.http[keyPath: kp] = ip
        }
        c.http.predictPort = try h.stringPort("predict_port")
        c.http.managePort = try h.stringPort("manage_port")
        c.http.alarmPort = try h.stringPort("alarm_port")
        c.http.externalPort = try h.stringPort("external_port")
        c.http.statusPort = try h.stringPort("status_port")
        // Each bound port is its own listener: two of them on one port would make the second bind fail (or, with
        // port sharing, split one port's traffic between two meanings).
        let bound = [("predict_port", c.http.predictPort), ("manage_port", c.http.managePort),
                     ("status_port", c.http.statusPort), ("external_port", c.http.externalPort)]
        for (i, (k, p)) in bound.enumerated() {
            if let other = bound[..<i].first(where: { $0.1 == p }) {
                throw h.fail(k, .string(String(p)), "a port different from \(other.0) (\(other.1))")
            }
        }
        c.http.serverThreadNum = try h.int("server_thread_num", 1...10000)
        c.http.clientThreadNum = try h.int("client_thread_num", 1...10000)
        c.http.httpTimeoutSeconds = try h.int("http_timeout_seconds", 0...3600)
        c.http.keepAliveSeconds = try h.int("keep_alive_seconds", 0...3600)
        c.http.serverName = try h.string("server_name")
        c.http.userAgent = try h.string("user_agent")
        if h.has("relay_buffer_bytes") {
            c.http.relayBufferBytes = try h.int("relay_buffer_bytes", 65536...(64 << 20))
        }
        if h.has("max_connections") {
            let caps = try h.section("max_connections")
            for port in ["data", "management", "status", "external"] where caps.has(port) {
                c.http.maxConnections[port] = try caps.int(port, 1...1_000_000)
            }
            if let unknown = caps.object.keys.first(where: { !["data", "management", "status", "external"].contains($0) }) {
                throw caps.fail(unknown, caps.object[unknown], "one of data, management, status, external")
            }
        }

        // request_limit (+ env overrides)
        let rl = try r.section("request_limit")
        c.requestLimit.singleNodeMaxRequests = try rl.int("single_node_max_requests", 1...15000)
        c.requestLimit.maxRequests = try rl.int("max_requests", 1...90000)
        c.requestLimit.bodyLimitMiB = try rl.int("body_limit", 1...20)
        if let v = environment[singleNodeMaxReqEnv] {
            c.requestLimit.singleNodeMaxRequests = try envLimit(singleNodeMaxReqEnv, v, 1...15000, &c.warnings)
        }
        if let v = environment[maxReqEnv] {
            c.requestLimit.maxRequests = try envLimit(maxReqEnv, v, 1...90000, &c.warnings)
        }

        let m = try r.section("metrics_config")
        c.metricsEnable = try m.bool("enable")
        c.metricsTriggerSize = try m.int("trigger_size", 1...10000)
        c.prometheusReuseTime = try r.section("prometheus_metrics_config").int("reuse_time", 1...100)

        let e = try r.section("exception_config")
        c.exceptions.maxRetry = try e.int("max_retry", 0...10)
        c.exceptions.scheduleTimeout = try e.int("schedule_timeout", 0...3600)
        c.exceptions.firstTokenTimeout = try e.int("first_token_timeout", 0...3600)
        c.exceptions.inferTimeout = try e.int("infer_timeout", 0...65535)
        c.exceptions.tokenizerTimeout = try e.int("tokenizer_timeout", 0...3600)
        if e.has("drain_timeout") { c.exceptions.drainTimeout = try e.int("drain_timeout", 0...3600) }

        if r.has("instance_health_config") {
            let ih = try r.section("instance_health_config")
            func opt(_ k: String, _ range: ClosedRange<Int>, _ kp: WritableKeyPath<Health, Int>) throws(ConfigError) {
                if ih.has(k) { c.health[keyPath: kp] = try ih.int(k, range) }
            }
            try opt("connect_timeout_ms", 0...600_000, \.connectTimeoutMs)
            try opt("first_byte_timeout_ms", 0...3_600_000, \.firstByteTimeoutMs)
            try opt("failure_threshold", 0...1000, \.failureThreshold)
            try opt("open_ms", 1...3_600_000, \.openMs)
            try opt("max_open_ms", 1...3_600_000, \.maxOpenMs)
            try opt("probe_timeout_ms", 1...600_000, \.probeTimeoutMs)
            if c.health.maxOpenMs < c.health.openMs {
                throw ih.fail("max_open_ms", .int(c.health.maxOpenMs), "an integer >= open_ms (\(c.health.openMs))")
            }
        }

        let l = try r.section("log_info")
        c.log.logLevel = try l.choice("log_level", logLevels, default: nil)
        c.log.toFile = try l.bool("to_file")
        c.log.toStdout = try l.bool("to_stdout")
        c.log.runLogPath = try l.string("run_log_path")
        c.log.operationLogPath = try l.string("operation_log_path")
        c.log.maxLogStrSize = try l.int("max_log_str_size", 128...65535)
        c.log.maxLogFileSizeMB = try l.int("max_log_file_size", 1...500)
        c.log.maxLogFileNum = try l.int("max_log_file_num", 1...64)
        if l.has("access_log") { c.log.accessLog = try parseAccessLog(try l.section("access_log")) }
        try applyLogEnvironment(environment, to: &c.log)

        c.stringTokenRate = try r.double("string_token_rate", 1.0...100.0)

        if r.has("digs_scheduler_config") {
            c.scheduler = try parseScheduler(try r.section("digs_scheduler_config"))
        } else {
            c.scheduler = try parseScheduler(ConfigReader(file: file, path: "digs_scheduler_config", object: [:]))
        }

        let t = try r.section("tls_config")
        for prefix in tlsPrefixes {
            var ep = TLSEndpoint()
            ep.enabled = try t.bool(prefix + "_tls_enable")
            if ep.enabled {
                let items = try t.section(prefix + "_tls_items")
                for k in ["ca_cert", "tls_cert", "tls_key", "tls_passwd"] {
                    if try items.string(k).isEmpty {
                        throw items.fail(k, .string(""), "a non-empty path when \(prefix)_tls_enable is true")
                    }
                }
                ep.items.caCert = try items.string("ca_cert")
                ep.items.tlsCert = try items.string("tls_cert")
                ep.items.tlsKey = try items.string("tls_key")
                ep.items.tlsPasswd = try items.string("tls_passwd")
                ep.items.tlsCrl = try items.string("tls_crl")
            } else if let items = t.object[prefix + "_tls_items"] {
                // Not used while disabled: keep what is there, refuse nothing.
                ep.items.caCert = items["ca_cert"]?.stringValue ?? ""
                ep.items.tlsCert = items["tls_cert"]?.stringValue ?? ""
                ep.items.tlsKey = items["tls_key"]?.stringValue ?? ""
                ep.items.tlsPasswd = items["tls_passwd"]?.stringValue ?? ""
                ep.items.tlsCrl = items["tls_crl"]?.stringValue ?? ""
            }
            c.tls[prefix] = ep
        }
        if let w = c.managementExposureWarning(manageIP: c.http.manageIP) { c.warnings.append(w) }

        if r.has("backup_config") {
            let b = try r.section("backup_config")
            c.backup.databaseServerDNS = try b.string("database_server_dns")
            c.backup.databaseServerPort = try b.int("database_server_port", 1024...65535)
            c.backup.functionEnable = try b.bool("function_enable")
            if b.has("lease_ttl_seconds") { c.backup.leaseTTLSeconds = try b.int("lease_ttl_seconds", 2...3600) }
        }
        if r.has("api_config") {
            c.api = try parseAPI(try r.section("api_config"))
        }
        if r.has("EnableDynamicAdjustTimeoutConfig") {
            c.enableDynamicAdjustTimeout = try r.bool("EnableDynamicAdjustTimeoutConfig")
        }
        return c
    }

    /// Accepted `log_level` values.
    public static let logLevels = ["DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL"]

    /// A warning when the management port (instance registration) listens beyond loopback without TLS: anyone who
    /// reaches it can register instances. nil when TLS is on or the address is loopback.
    public func managementExposureWarning(manageIP: String) -> String? {
        if tls["controller_server"]?.enabled == true { return nil }
        if manageIP.hasPrefix("127.") || manageIP == "::1" { return nil }
        return "manage_port \(http.managePort) listens on \(manageIP) without TLS (controller_server_tls_enable is false): "
            + "anyone who reaches it can register or remove instances; enable TLS or listen on loopback"
    }

    /// A request-limit override: non-numeric is fatal, out of range clamps to the maximum (with a warning).
    static func envLimit(
        _ name: String, _ value: String, _ range: ClosedRange<Int>, _ warnings: inout [String]
    ) throws(ConfigError) -> Int {
        let t = value.trimmingSpaces
        let digits = t.hasPrefix("-") || t.hasPrefix("+") ? t.dropFirst() : Substring(t)
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw ConfigError(file: "environment", key: name, value: value, allowed: "an integer \(range.lowerBound)...\(range.upperBound)")
        }
        if let n = Int(t), range.contains(n) { return n }
        warnings.append("\(name)=\(value) is outside \(range.lowerBound)...\(range.upperBound); using \(range.upperBound)")
        return range.upperBound
    }

    /// `MINDIE_LOG_*` overrides. Values may be plain (`debug`) or per component (`ms: debug; llm: info`);
    /// the `ms` entry wins, else an unqualified entry.
    static func applyLogEnvironment(_ env: [String: String], to log: inout Log) throws(ConfigError) {
        func pick(_ name: String) -> String? {
            guard let raw = env[name] else { return nil }
            var plain: String?
            for part in raw.split(separator: ";") {
                let p = String(part).trimmingSpaces
                if let colon = p.firstIndex(of: ":") {
                    let comp = String(p[..<colon]).trimmingSpaces.lowercased()
                    let val = String(p[p.index(after: colon)...]).trimmingSpaces
                    if comp == "ms" || comp == "*" { return val }
                } else if !p.isEmpty {
                    plain = p
                }
            }
            return plain
        }
        func bool(_ name: String) throws(ConfigError) -> Bool? {
            guard let v = pick(name) else { return nil }
            switch v.lowercased() {
            case "1", "true": return true
            case "0", "false": return false
            default: throw ConfigError(file: "environment", key: name, value: v, allowed: "1, 0, true or false")
            }
        }
        if let v = pick("MINDIE_LOG_LEVEL") {
            let up = v.uppercased()
            guard logLevels.contains(up) else {
                throw ConfigError(file: "environment", key: "MINDIE_LOG_LEVEL", value: v,
                                  allowed: "one of " + logLevels.joined(separator: ", "))
            }
            log.logLevel = up
        }
        if let b = try bool("MINDIE_LOG_TO_FILE") { log.toFile = b }
        if let b = try bool("MINDIE_LOG_TO_STDOUT") { log.toStdout = b }
        if let p = pick("MINDIE_LOG_PATH"), !p.isEmpty {
            log.runLogPath = p.hasSuffix("/") ? p + "ms_coordinator_run_log.txt" : p + "/ms_coordinator_run_log.txt"
            log.operationLogPath = p.hasSuffix("/") ? p + "ms_coordinator_operation_log.txt" : p + "/ms_coordinator_operation_log.txt"
        }
    }

    /// `api_config`: every key optional. A pass-through path must be a plain absolute path that no built-in route or
    /// Coordinator endpoint already serves.
    static func parseAccessLog(_ a: ConfigReader) throws(ConfigError) -> Log.AccessLog {
        var log = Log.AccessLog()
        log.enable = try a.bool("enable")
        if a.has("path") || log.enable {
            log.path = try a.string("path")
            if log.enable, log.path.isEmpty || log.path.hasSuffix("/") || log.path.utf8.count > 4096 || log.path.contains("\0") {
                throw a.fail("path", .string(log.path), "the path of a file (not empty, not a directory) when enable is true")
            }
        }
        if a.has("queue_size") { log.queueSize = try a.int("queue_size", 16...1_000_000) }
        return log
    }

    static func parseAPI(_ a: ConfigReader) throws(ConfigError) -> API {
        var api = API()
        if a.has("metrics_on_data_port") { api.metricsOnDataPort = try a.bool("metrics_on_data_port") }
        guard let v = a.object["passthrough_routes"] else { return api }
        let allowed = "an array of at most \(API.maxPassthroughRoutes) paths such as \"/v1/embeddings\" (letters, digits, / _ . - ~; "
            + "not a route the Coordinator already serves)"
        guard let items = v.arrayValue, items.count <= API.maxPassthroughRoutes else { throw a.fail("passthrough_routes", v, allowed) }
        var routes: [String] = []
        for item in items {
            guard let path = item.stringValue, path.hasPrefix("/"), path.utf8.count <= 256, !path.contains("//"),
                  path.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "/_.-~".unicodeScalars.contains($0)) }),
                  RouteTable.route(forPath: Substring(path)) == nil, LocalEndpoint.match(path: path, metrics: true) == nil else {
                throw a.fail("passthrough_routes", item, allowed)
            }
            if !routes.contains(path) { routes.append(path) }
        }
        api.passthroughRoutes = routes
        return api
    }

    static func parseScheduler(_ s: ConfigReader) throws(ConfigError) -> Scheduler {
        var c = Scheduler()
        let mode = try s.choice("deploy_mode", ["single_node", "pd_separate", "pd_disaggregation",
                                                "pd_disaggregation_single_container"], default: "pd_separate")
        c.deployMode = DeployMode(rawValue: mode)!
        let type = try s.choice("scheduler_type", ["digs_scheduler", "default_scheduler"], default: "digs_scheduler")
        c.schedulerType = SchedulerType(rawValue: type)!
        let algos: [String]
        switch (c.deployMode.isPD, c.schedulerType) {
        case (false, .digs):
            throw s.fail("scheduler_type", .string(type), "\"default_scheduler\" when deploy_mode is \"single_node\"")
        case (false, .default): algos = ["cache_affinity", "round_robin", "least_load", "prefix_affinity"]
        case (true, .digs): algos = ["load_balance"]
        case (true, .default): algos = ["round_robin", "least_load", "prefix_affinity"]
        }
        let algo = try s.choice("algorithm_type", algos, default: c.deployMode.isPD && c.schedulerType == .digs ? "load_balance" : nil)
        c.algorithm = Algorithm(rawValue: algo)!

        switch c.algorithm {
        case .cacheAffinity:
            c.cacheSize = try s.stringInt("cache_size", 1...10000, default: 100)
            c.slotsThresh = try s.stringDouble("slots_thresh", 0.0...1.0, default: 0.05)
            c.blockThresh = try s.stringDouble("block_thresh", 0.0...1.0, default: 0.05)
        case .loadBalance:
            c.maxScheduleCount = try s.stringInt("max_schedule_count", 1...90000, default: 10000)
            c.reorderingType = try s.stringInt("reordering_type", 1...3, default: 1)
            c.maxResNum = try s.stringInt("max_res_num", 1...10000, default: 5000)
            c.resLimitRate = try s.stringDouble("res_limit_rate", 0.0...2000.0, default: 1.1)
            let sel = try s.choice("select_type", ["1", "2"], default: "2")
            c.selectType = Int(sel)!
            let lcv = try s.choice("load_cost_values", ["1, 0", "1, 1"], default: "1, 0")
            c.loadCostValues = lcv == "1, 0" ? [1, 0] : [1, 1]
            if let v = s.object["load_cost_coefficient"] {
                let parts = v.stringValue?.split(separator: ",", omittingEmptySubsequences: false)
                    .map { Double(String($0).trimmingSpaces) }
                guard let parts, parts.count == 9, parts.allSatisfy({ $0 != nil && $0!.isFinite && $0! >= 0 }) else {
                    throw s.fail("load_cost_coefficient", v, "a string of 9 non-negative comma-separated numbers")
                }
                c.loadCostCoefficient = parts.map { $0! }
            }
        case .prefixAffinity:
            c.prefixBlockSize = try s.stringInt("prefix_block_size", 16...65536, default: 256)
            c.prefixCacheBlocks = try s.stringInt("prefix_cache_blocks", 1...1_000_000, default: 8192)
            c.prefixLoadMargin = try s.stringInt("prefix_load_margin", 0...100_000, default: 8)
        case .roundRobin, .leastLoad:
            break
        }
        c.pullRequestTimeout = try s.stringInt("pull_request_timeout", 1...3_600_000, default: 500)
        c.resViewUpdateTimeout = try s.stringInt("res_view_update_timeout", 1...3_600_000, default: 500)
        for k in ["pool_type", "block_size", "max_summary_count", "dynamic_max_res",
                  "max_dynamic_res_rate_count", "dynamic_res_rate_unit", "metaResource_names"] {
            if let v = s.object[k] {
                guard let str = v.stringValue else { throw s.fail(k, v, "a string") }
                c.hidden[k] = str
            }
        }
        return c
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
