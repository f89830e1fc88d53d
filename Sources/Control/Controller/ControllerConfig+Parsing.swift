public import Foundation
import MSCore

extension ControllerConfig {
    static let portRange: ClosedRange<Int64> = 1024...65535
    static let commonRange: ClosedRange<Int64> = 1...65535
    /// Largest single rate (§6.1).
    public static let maxRate = 767
    /// Largest sum of the two rates (§6.1).
    public static let maxRateSum = 768

    /// Parses and validates `ms_controller.json`, then applies the environment overrides.
    /// - Parameters:
    ///   - data: the file's bytes.
    ///   - environment: the process environment (inject `ProcessInfo.processInfo.environment`).
    ///   - file: the name used in error messages.
    /// - Throws: `ControllerConfigError` naming the first invalid key, its value and the allowed range.
    public init(data: Data, environment: [String: String] = [:], file: String = "ms_controller.json")
        throws(ControllerConfigError)
    {
        let c = try ConfigReader(data: data, file: file)
        try self.init(reader: c, environment: environment)
    }

    init(reader c: ConfigReader, environment env: [String: String]) throws(ControllerConfigError) {
        allowAllZeroIPListening = try c.bool("allow_all_zero_ip_listening")
        isHeterogeneous = try c.bool("is_heterogeneous")

        let modeName = try c.string(
            "deploy_mode", oneOf: DeployMode.allCases.map(\.rawValue))
        deployMode = DeployMode(rawValue: modeName)!

        initialDistServerPort = try c.int("initial_dist_server_port", in: Self.portRange)
        clusterPort = try c.int("cluster_port", in: Self.portRange, default: 8899)

        func outputFile(_ key: String) throws(ControllerConfigError) -> OutputFile {
            let o = try c.object(key)
            let toFile = try o.bool("to_file")
            if toFile {
                return OutputFile(toFile: true, filePath: try o.string("file_path"))
            }
            let path = o.contains("file_path") ? try o.string("file_path", length: 0...4096) : ""
            return OutputFile(toFile: false, filePath: path)
        }
        processManager = try outputFile("process_manager")
        clusterStatus = try outputFile("cluster_status")

        var backup = BackupConfig()
        if let b = try c.optionalObject("controller_backup_cfg") {
            backup.functionSwitch = try b.bool("function_sw", default: false)
            if backup.functionSwitch {
                // HA asked for with an address that cannot be one is a config error (the reference silently
                // turns HA off); a well-formed address that does not answer is retried at run time, never "off"
                if b.contains("database_server_dns") {
                    backup.databaseServerDNS = try b.string("database_server_dns", length: 1...1024)
                    guard let members = EtcdClient.Endpoint.list(backup.databaseServerDNS, defaultPort: 2379),
                          members.allSatisfy({ Self.isValidHostName($0.host) }) else {
                        throw b.error(
                            .invalidValue, "database_server_dns", b.object["database_server_dns"],
                            "a DNS name or an IP address of etcd, or several comma-separated host[:port]")
                    }
                }
                backup.databaseServerPort = try b.int("database_server_port", in: 1...65535, default: 2379)
                backup.leaseTTLSeconds = try b.int("lease_ttl_seconds", in: 2...3600, default: 20)
            } else {
                if case .string(let dns)? = b.object["database_server_dns"] { backup.databaseServerDNS = dns }
                if case .int(let p)? = b.object["database_server_port"] { backup.databaseServerPort = Int(clamping: p) }
            }
        }
        let haEnabled = backup.functionSwitch
        self.backup = backup
        self.haEnabled = haEnabled

        var fr = FaultRecovery()
        if let f = try c.optionalObject("fault_recovery_func_dict") {
            fr.lingquLink = try f.bool("lingqu_link", default: fr.lingquLink)
            fr.oom = try f.bool("oom", default: fr.oom)
            fr.hbm = try f.bool("hbm", default: fr.hbm)
            fr.roce = try f.bool("roce", default: fr.roce)
        }
        faultRecovery = fr

        globalRankTableFilePath = try c.string("global_rank_table_file_path")
        scalingRuleFilePath = try c.string("scaling_rule_file_path")
        clusterSynchronizationSeconds = try c.int("cluster_synchronization_seconds", in: Self.commonRange)
        rankTableDetectingSeconds = try c.int("rank_table_detecting_seconds", in: Self.commonRange)
        disappearedServerWaitingSeconds = try c.int("disappeared_server_waiting_seconds", in: Self.commonRange)
        prefillLossRebalanceSeconds = try c.int("prefill_loss_rebalance_seconds", in: 0...65535, default: 60)

        let rateRange: ClosedRange<Int64> = 0...Int64(Self.maxRate)
        defaultPRate = try c.int("default_p_rate", in: rateRange)
        defaultDRate = try c.int("default_d_rate", in: rateRange)

        serverOnlineAttemptTimes = try c.int("server_online_attempt_times", in: Self.commonRange)
        serverOnlineWaitSeconds = try c.int("server_online_wait_seconds", in: Self.commonRange)
        initRoleAttemptTimes = try c.int("init_role_attempt_times", in: Self.commonRange)
        checkRoleAttemptTimes = try c.int("check_role_attempt_times", in: Self.commonRange)
        checkRoleWaitSeconds = try c.int("check_role_wait_seconds", in: Self.commonRange)

        mindieServerPort = try c.int("mindie_server_port", in: Self.portRange)
        mindieServerControlPort = try c.int("mindie_server_control_port", in: Self.portRange)
        mindieServerMetricPort = try c.int("mindie_server_metric_port", in: Self.portRange)
        controllerAlarmPort = try c.int("controller_alarm_port", in: Self.portRange)
        mindieMSCoordinatorPort = try c.int("mindie_ms_coordinator_port", in: Self.portRange)
        mindieMSCoordinatorExternalPort = try c.int("mindie_ms_coordinator_external_port", in: Self.portRange)
        nodeManagerPort = try c.int("node_manager_port", in: Self.portRange)

        httpTimeoutSeconds = try c.int("http_timeout_seconds", in: Self.commonRange)
        httpRetries = try c.int("http_retries", in: 0...65535)

        roleDecisionMethods = try c.string("role_decision_methods", oneOf: ["digs"])
        transferType = try c.string("transfer_type", oneOf: ["D2DTransfer"])
        digsRequestSummaryInputLength = try c.int("digs_request_summary_input_length", in: Self.commonRange)
        digsRequestSummaryOutputLength = try c.int("digs_request_summary_output_length", in: Self.commonRange)
        digsPrefillSLO = try c.int("digs_prefill_slo", in: Self.commonRange)
        digsDecodeSLO = try c.int("digs_decode_slo", in: Self.commonRange)
        digsPP = try c.int("digs_pp", in: Self.commonRange)
        digsModelConfigPath = try c.string("digs_model_config_path")
        digsMachineConfigPath = try c.string("digs_machine_config_path")
        modelType = try c.string("model_type")

        var mn = MultiNodeConfig()
        if let m = try c.optionalObject("multi_node_infer_config") {
            mn.enabled = try m.bool("multi_node_infer_enable")
            func node(_ key: String) throws(ControllerConfigError) -> NodeConfig {
                let n = try m.object(key)
                var nc = NodeConfig()
                nc.enableDistDPServer = try n.bool("enable_dist_dp_server")
                nc.nodeMachineNum = try n.int("node_machine_num", in: 1...768)
                nc.tpSize = try n.int("tp_size", in: 1...16)
                nc.dpSize = try n.int("dp_size", in: 1...512)
                nc.spSize = try n.int("sp_size", in: 1...16)
                nc.cpSize = try n.int("cp_size", in: 1...16, default: 1)
                if nc.dpSize > 1 && nc.cpSize > 1 {
                    throw n.error(
                        .invalidValue, "cp_size", .int(Int64(nc.cpSize)), "1 when dp_size > 1 (dp_size is \(nc.dpSize))")
                }
                return nc
            }
            mn.prefill = try node("p_node_config")
            mn.decode = try node("d_node_config")
        }
        multiNode = mn

        let p = try c.object("digs_periodic_role_decision")
        periodicRoleDecision = PeriodicRoleDecision(
            autoSwitchingEnabled: try p.bool("auto_pd_role_switching_enable"),
            periodSeconds: try p.int("role_decision_time_period", in: 3600...1_296_000),
            tasksEndWaitSeconds: try p.int("tasks_end_wait_seconds", in: Self.commonRange))

        let h = try c.object("http_server")
        let allowZero = allowAllZeroIPListening
        let ipAllowed = allowZero ? "an IPv4 or IPv6 address" : "an IPv4 or IPv6 address other than 0.0.0.0 and ::"
        let ipValue = try h.required("ip", ipAllowed)
        guard case .string(let ip) = ipValue else { throw h.error(.wrongType, "ip", ipValue, ipAllowed) }
        guard IPAddress.isValid(ip), allowZero || !IPAddress.isAllZero(ip) else {
            throw h.error(.invalidValue, "ip", ipValue, ipAllowed)
        }
        let port = try h.int("port", in: Self.portRange)
        var listenIP = ip
        if let pod = env["POD_IP"], IPAddress.isValid(pod), allowZero || !IPAddress.isAllZero(pod) {
            listenIP = pod
        }
        httpServer = HTTPServer(ip: listenIP, configuredIP: ip, port: port)

        hasFlex = try c.bool("has_flex", default: false)
        if hasFlex {
            throw c.error(.invalidValue, "has_flex", .bool(true), "false (flex instances are not supported)")
        }

        if let cc = try c.optionalObject("ccae") {
            var v = CCAE()
            if case .string(let s)? = cc.object["ip"] { v.ip = s }
            if cc.contains("port") { v.port = try cc.int("port", in: Self.portRange) }
            if cc.contains("kafka_port") { v.kafkaPort = try cc.int("kafka_port", in: Self.portRange) }
            ccae = v
        } else {
            ccae = nil
        }

        let t = try c.object("tls_config")
        func tlsSetting(_ name: String, required: Bool) throws(ControllerConfigError) -> TLSSetting {
            let enableKey = name + "_tls_enable"
            let itemsKey = name + "_tls_items"
            let enabled = required ? try t.bool(enableKey) : try t.bool(enableKey, default: false)
            guard enabled || t.contains(itemsKey) else { return TLSSetting(enabled: false, items: nil) }
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
            let i = try t.object(itemsKey)
            return TLSSetting(
                enabled: true,
                items: TLSItems(
                    caCert: try i.string("ca_cert"), tlsCert: try i.string("tls_cert"),
                    tlsKey: try i.string("tls_key"), tlsPasswd: try i.string("tls_passwd"),
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
        if let l = try c.optionalObject("log_info") {
            if l.contains("log_level") {
                li.logLevel = try l.string(
                    "log_level", oneOf: ["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"])
            }
            li.toFile = try l.bool("to_file", default: li.toFile)
            li.toStdout = try l.bool("to_stdout", default: li.toStdout)
            if l.contains("run_log_path") { li.runLogPath = try l.string("run_log_path") }
            if l.contains("operation_log_path") { li.operationLogPath = try l.string("operation_log_path") }
            li.maxLogStrSize = try l.int("max_log_str_size", in: 1...8192, default: li.maxLogStrSize)
            li.maxLogFileSize = try l.int("max_log_file_size", in: 1...500, default: li.maxLogFileSize)
            li.maxLogFileNum = try l.int("max_log_file_num", in: 1...64, default: li.maxLogFileNum)
        }
        logInfo = li

        var disc = InstanceDiscovery()
        if let d = try c.optionalObject("instance_discovery") {
            if d.contains("source") {
                disc.source = InstanceDiscovery.Source(
                    rawValue: try d.string("source", oneOf: InstanceDiscovery.Source.allCases.map(\.rawValue)))!
            }
            if d.contains("label_selector") { disc.labelSelector = try d.string("label_selector", length: 0...4096) }
            if d.contains("role_label") { disc.roleLabel = try d.string("role_label", length: 1...317) }
            func roles(_ key: String) throws(ControllerConfigError) -> [String]? {
                guard let v = d.object[key] else { return nil }
                let allowed = "non-empty array of non-empty strings"
                guard case .array(let a) = v, !a.isEmpty else { throw d.error(.wrongType, key, v, allowed) }
                var out: [String] = []
                for e in a {
                    guard case .string(let s) = e, !s.isEmpty else { throw d.error(.invalidValue, key, v, allowed) }
                    out.append(s)
                }
                return out
            }
            disc.instanceRoles = try roles("instance_roles") ?? disc.instanceRoles
            disc.coordinatorRoles = try roles("coordinator_roles") ?? disc.coordinatorRoles
            if d.contains("namespace") { disc.namespace = try d.string("namespace", length: 0...63) }
            disc.timeoutSeconds = try d.int("timeout_seconds", in: 1...300, default: disc.timeoutSeconds)
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
        throws(ControllerConfigError)
    {
        guard !areValidRates(p: p, d: d) else { return }
        let fromEnv = env["MINDIE_MS_P_RATE"] != nil || env["MINDIE_MS_D_RATE"] != nil
        throw ControllerConfigError(
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
