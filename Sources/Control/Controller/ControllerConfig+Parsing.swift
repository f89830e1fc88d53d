public import Foundation
public import MSCore

extension ControllerConfig {
    static let portRange: ClosedRange<Int> = 1024...65535
    static let commonRange: ClosedRange<Int> = 1...65535
    /// Largest single rate (§6.1).
    public static let maxRate = 767
    /// Largest sum of the two rates (§6.1).
    public static let maxRateSum = 768

    /// Parses and validates `ms_controller.json`, then applies the environment overrides.
    /// - Parameters:
    ///   - data: the file's bytes.
    ///   - environment: the process environment (inject `ProcessInfo.processInfo.environment`).
    ///   - file: the name used in error messages.
    /// - Throws: `ConfigError` naming the first invalid key, its value and the allowed range.
    public init(data: Data, environment: [String: String] = [:], file: String = "ms_controller.json")
        throws(ConfigError)
    {
        let c = try ConfigReader(document: data, file: file)
        try self.init(reader: c, environment: environment)
    }

    init(reader c: ConfigReader, environment env: [String: String]) throws(ConfigError) {
        allowAllZeroIPListening = try c.bool("allow_all_zero_ip_listening")
        isHeterogeneous = try c.bool("is_heterogeneous")

        let modeName = try c.choice("deploy_mode", DeployMode.allCases.map(\.rawValue))
        deployMode = DeployMode(rawValue: modeName)!

        initialDistServerPort = try c.int("initial_dist_server_port", Self.portRange)
        clusterPort = try c.int("cluster_port", Self.portRange, default: 8899)

        func outputFile(_ key: String) throws(ConfigError) -> OutputFile {
            let o = try c.section(key)
            let toFile = try o.bool("to_file")
            if toFile {
                return OutputFile(toFile: true, filePath: try o.string("file_path", length: 1...4096))
            }
            let path = o.has("file_path") ? try o.string("file_path", length: 0...4096) : ""
            return OutputFile(toFile: false, filePath: path)
        }
        processManager = try outputFile("process_manager")
        clusterStatus = try outputFile("cluster_status")

        var backup = BackupConfig()
        if let b = try c.optionalSection("controller_backup_cfg") {
            backup.functionSwitch = try b.bool("function_sw", default: false)
            if backup.functionSwitch {
                // HA asked for with an address that cannot be one is a config error (the reference silently
                // turns HA off); a well-formed address that does not answer is retried at run time, never "off"
                if b.has("database_server_dns") {
                    backup.databaseServerDNS = try b.string("database_server_dns", length: 1...1024)
                    guard let members = EtcdClient.Endpoint.list(backup.databaseServerDNS, defaultPort: 2379),
                          members.allSatisfy({ Self.isValidHostName($0.host) }) else {
                        throw b.fail(
                            "database_server_dns", b.object["database_server_dns"],
                            "a DNS name or an IP address of etcd, or several comma-separated host[:port]", .invalidValue)
                    }
                }
                backup.databaseServerPort = try b.int("database_server_port", 1...65535, default: 2379)
                backup.leaseTTLSeconds = try b.int("lease_ttl_seconds", 2...3600, default: 20)
            } else {
                if case .string(let dns)? = b.object["database_server_dns"] { backup.databaseServerDNS = dns }
                if case .int(let p)? = b.object["database_server_port"] { backup.databaseServerPort = Int(clamping: p) }
            }
        }
        let haEnabled = backup.functionSwitch
        self.backup = backup
        self.haEnabled = haEnabled

        var fr = FaultRecovery()
        if let f = try c.optionalSection("fault_recovery_func_dict") {
            fr.lingquLink = try f.bool("lingqu_link", default: fr.lingquLink)
            fr.oom = try f.bool("oom", default: fr.oom)
            fr.hbm = try f.bool("hbm", default: fr.hbm)
            fr.roce = try f.bool("roce", default: fr.roce)
        }
        faultRecovery = fr

        globalRankTableFilePath = try c.string("global_rank_table_file_path", length: 1...4096)
        scalingRuleFilePath = try c.string("scaling_rule_file_path", length: 1...4096)
        clusterSynchronizationSeconds = try c.int("cluster_synchronization_seconds", Self.commonRange)
        rankTableDetectingSeconds = try c.int("rank_table_detecting_seconds", Self.commonRange)
        disappearedServerWaitingSeconds = try c.int("disappeared_server_waiting_seconds", Self.commonRange)
        prefillLossRebalanceSeconds = try c.int("prefill_loss_rebalance_seconds", 0...65535, default: 60)

        let rateRange: ClosedRange<Int> = 0...Self.maxRate
        defaultPRate = try c.int("default_p_rate", rateRange)
        defaultDRate = try c.int("default_d_rate", rateRange)

        serverOnlineAttemptTimes = try c.int("server_online_attempt_times", Self.commonRange)
        serverOnlineWaitSeconds = try c.int("server_online_wait_seconds", Self.commonRange)
        initRoleAttemptTimes = try c.int("init_role_attempt_times", Self.commonRange)
        checkRoleAttemptTimes = try c.int("check_role_attempt_times", Self.commonRange)
        checkRoleWaitSeconds = try c.int("check_role_wait_seconds", Self.commonRange)

        mindieServerPort = try c.int("mindie_server_port", Self.portRange)
        mindieServerControlPort = try c.int("mindie_server_control_port", Self.portRange)
        mindieServerMetricPort = try c.int("mindie_server_metric_port", Self.portRange)
        controllerAlarmPort = try c.int("controller_alarm_port", Self.portRange)
        mindieMSCoordinatorPort = try c.int("mindie_ms_coordinator_port", Self.portRange)
        mindieMSCoordinatorExternalPort = try c.int("mindie_ms_coordinator_external_port", Self.portRange)
        nodeManagerPort = try c.int("node_manager_port", Self.portRange)

        httpTimeoutSeconds = try c.int("http_timeout_seconds", Self.commonRange)
        httpRetries = try c.int("http_retries", 0...65535)

        roleDecisionMethods = try c.choice("role_decision_methods", ["digs"])
        transferType = try c.choice("transfer_type", ["D2DTransfer"])
        digsRequestSummaryInputLength = try c.int("digs_request_summary_input_length", Self.commonRange)
        digsRequestSummaryOutputLength = try c.int("digs_request_summary_output_length", Self.commonRange)
        digsPrefillSLO = try c.int("digs_prefill_slo", Self.commonRange)
        digsDecodeSLO = try c.int("digs_decode_slo", Self.commonRange)
        digsPP = try c.int("digs_pp", Self.commonRange)
        digsModelConfigPath = try c.string("digs_model_config_path", length: 1...4096)
        digsMachineConfigPath = try c.string("digs_machine_config_path", length: 1...4096)
        modelType = try c.string("model_type", length: 1...4096)

        var mn = MultiNodeConfig()
        if let m = try c.optionalSection("multi_node_infer_config") {
            mn.enabled = try m.bool("multi_node_infer_enable")
            func node(_ key: String) throws(ConfigError) -> NodeConfig {
                let n = try m.section(key)
                var nc = NodeConfig()
                nc.enableDistDPServer = try n.bool("enable_dist_dp_server")
                nc.nodeMachineNum = try n.int("node_machine_num", 1...768)
                nc.tpSize = try n.int("tp_size", 1...16)
                nc.dpSize = try n.int("dp_size", 1...512)
                nc.spSize = try n.int("sp_size", 1...16)
                nc.cpSize = try n.int("cp_size", 1...16, default: 1)
                if nc.dpSize > 1 && nc.cpSize > 1 {
                    throw n.fail("cp_size", .int(Int64(nc.cpSize)), "1 when dp_size > 1 (dp_size is \(nc.dpSize))", .invalidValue)
                }
                return nc
            }
            mn.prefill = try node("p_node_config")
            mn.decode = try node("d_node_config")
        }
        multiNode = mn

        let p = try c.section("digs_periodic_role_decision")
        periodicRoleDecision = PeriodicRoleDecision(
            autoSwitchingEnabled: try p.bool("auto_pd_role_switching_enable"),
            periodSeconds: try p.int("role_decision_time_period", 3600...1_296_000),
            tasksEndWaitSeconds: try p.int("tasks_end_wait_seconds", Self.commonRange))

        let h = try c.section("http_server")
        let allowZero = allowAllZeroIPListening
        let ipAllowed = allowZero ? "an IPv4 or IPv6 address" : "an IPv4 or IPv6 address other than 0.0.0.0 and ::"
        let ipValue = try h.required("ip", ipAllowed)
        guard case .string(let ip) = ipValue else { throw h.fail("ip", ipValue, ipAllowed, .wrongType) }
        guard IPAddress.isValid(ip), allowZero || !IPAddress.isAllZero(ip) else {
            throw h.fail("ip", ipValue, ipAllowed, .invalidValue)
        }
        let port = try h.int("port", Self.portRange)
        var listenIP = ip
        if let pod = env["POD_IP"], IPAddress.isValid(pod), allowZero || !IPAddress.isAllZero(pod) {
            listenIP = pod
        }
        httpServer = HTTPServer(ip: listenIP, configuredIP: ip, port: port)

        hasFlex = try c.bool("has_flex", default: false)
        if hasFlex {
            throw c.fail("has_flex", .bool(true), "false (flex instances are not supported)", .invalidValue)
        }

        if let cc = try c.optionalSection("ccae") {
            var v = CCAE()
            if case .string(let s)? = cc.object["ip"] { v.ip = s }
            if cc.has("port") { v.port = try cc.int("port", Self.portRange) }
            if cc.has("kafka_port") { v.kafkaPort = try cc.int("kafka_port", Self.portRange) }
            ccae = v
        } else {
            ccae = nil
        }

        let t = try c.section("tls_config")
        func tlsSetting(_ name: String, required: Bool) throws(ConfigError) -> TLSSetting {
            let enableKey = name + "_tls_enable"
            let itemsKey = name + "_tls_items"
            let enabled = required ? try t.bool(enableKey) : try t.bool(enableKey, default: false)
            guard enabled || t.has(itemsKey) else { return TLSSetting(enabled: false, items: nil) }
            guard enabled else {
                // Items of a disabled switch are not validated; keep what parses.
                let o = t.object[itemsKey]?.objectValue ?? [:]
                func s(_ k: String) -> String { if case .string(let v)? = o[k] { return v } else { return "" } }
                return TLSSetting(
                    enabled: false,
                    items: TLSItems(
                        caCert: s("ca_cert"), tlsCert: s("tls_cert"), tlsKey: s("tls_key"),
                        tlsPasswd: s("tls_passwd"), tlsCrl: s("tls_crl")))
            }
            let i = try t.section(itemsKey)
            return TLSSetting(
                enabled: true,
                items: TLSItems(
                    caCert: try i.string("ca_cert", length: 1...4096), tlsCert: try i.string("tls_cert", length: 1...4096),
                    tlsKey: try i.string("tls_key", length: 1...4096), tlsPasswd: try i.string("tls_passwd", length: 1...4096),
                    tlsCrl: try i.string("tls_crl", length: 0...4096)))
        }
        tls = TLSConfig(
            requestCoordinator: try tlsSetting("request_coordinator", required: true),
            requestServer: try tlsSetting("request_server", required: true),
            httpServer: try tlsSetting("http_server", required: true),
            externalCoordinator: try tlsSetting("external_coordinator", required: true),
            cluster: try tlsSetting("cluster", required: false),
            etcdServer: try tlsSetting("etcd_server", required: false),
            ccae: try tlsSetting("ccae", required: false),
            alarm: try tlsSetting("alarm", required: false))

        var li = LogInfo()
        if let l = try c.optionalSection("log_info") {
            if l.has("log_level") {
                li.logLevel = try l.choice("log_level", ["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"])
            }
            li.toFile = try l.bool("to_file", default: li.toFile)
            li.toStdout = try l.bool("to_stdout", default: li.toStdout)
            if l.has("run_log_path") { li.runLogPath = try l.string("run_log_path", length: 1...4096) }
            if l.has("operation_log_path") { li.operationLogPath = try l.string("operation_log_path", length: 1...4096) }
            li.maxLogStrSize = try l.int("max_log_str_size", 1...8192, default: li.maxLogStrSize)
            li.maxLogFileSize = try l.int("max_log_file_size", 1...500, default: li.maxLogFileSize)
            li.maxLogFileNum = try l.int("max_log_file_num", 1...64, default: li.maxLogFileNum)
        }
        logInfo = li

        var disc = InstanceDiscovery()
        if let d = try c.optionalSection("instance_discovery") {
            if d.has("source") {
                disc.source = InstanceDiscovery.Source(
                    rawValue: try d.choice("source", InstanceDiscovery.Source.allCases.map(\.rawValue)))!
            }
            if d.has("label_selector") { disc.labelSelector = try d.string("label_selector", length: 0...4096) }
            if d.has("role_label") { disc.roleLabel = try d.string("role_label", length: 1...317) }
            func roles(_ key: String) throws(ConfigError) -> [String]? {
                guard let v = d.object[key] else { return nil }
                let allowed = "non-empty array of non-empty strings"
                guard case .array(let a) = v, !a.isEmpty else { throw d.fail(key, v, allowed, .wrongType) }
                var out: [String] = []
                for e in a {
                    guard case .string(let s) = e, !s.isEmpty else { throw d.fail(key, v, allowed, .invalidValue) }
                    out.append(s)
                }
                return out
            }
            disc.instanceRoles = try roles("instance_roles") ?? disc.instanceRoles
            disc.coordinatorRoles = try roles("coordinator_roles") ?? disc.coordinatorRoles
            if d.has("namespace") { disc.namespace = try d.string("namespace", length: 0...63) }
            disc.timeoutSeconds = try d.int("timeout_seconds", 1...300, default: disc.timeoutSeconds)
        }
        instanceDiscovery = disc

        // Environment overrides.
        if let s = env["MINDIE_MS_P_RATE"], let v = Int(s), (0...Self.maxRate).contains(v) { defaultPRate = v }
        if let s = env["MINDIE_MS_D_RATE"], let v = Int(s), (0...Self.maxRate).contains(v) { defaultDRate = v }
        try Self.validateRates(p: defaultPRate, d: defaultDRate, file: c.file, environment: env)
        if let path = env["GLOBAL_RANK_TABLE_FILE_PATH"], !path.isEmpty { globalRankTableFilePath = path }
        environment = Environment(
            podNamespace: env["POD_NAMESPACE"], modelID: env["MODEL_ID"], mindxTaskID: env["MINDX_TASK_ID"],
            mindxServerIP: env["MINDX_SERVER_IP"])
    }

    /// Rates are valid when both are 0 (automatic ratio), or both are in 1...767 with a sum ≤ 768 (§6.1).
    public static func areValidRates(p: Int, d: Int) -> Bool {
        if p == 0 && d == 0 { return true }
        return (1...maxRate).contains(p) && (1...maxRate).contains(d) && p + d <= maxRateSum
    }

    static func validateRates(p: Int, d: Int, file: String, environment env: [String: String])
        throws(ConfigError)
    {
        guard !areValidRates(p: p, d: d) else { return }
        let fromEnv = env["MINDIE_MS_P_RATE"] != nil || env["MINDIE_MS_D_RATE"] != nil
        throw ConfigError(
            code: .invalidValue, file: file, key: "default_p_rate/default_d_rate",
            value: "\(p)/\(d)" + (fromEnv ? " (after MINDIE_MS_P_RATE/MINDIE_MS_D_RATE)" : ""),
            allowed: "both 0 (automatic), or both in [1, \(maxRate)] with a sum ≤ \(maxRateSum)")
    }

    /// A DNS name (labels of letters, digits and '-') or an IP address.
    static func isValidHostName(_ s: String) -> Bool {
        if IPAddress.isValid(s) { return true }
        guard !s.isEmpty, s.count <= 253 else { return false }
        return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            (1...63).contains(label.count) && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }
}
