import Foundation
public import MSCore

/// The Controller's configuration: every key of `ms_controller.json` (reference names, defaults and ranges,
/// docs/wire/controller.md §11), after the environment overrides have been applied.
///
/// Build it with `init(data:environment:file:)`. Environment variables read:
/// - `MINDIE_MS_P_RATE`, `MINDIE_MS_D_RATE`: override `default_p_rate` / `default_d_rate`; values that are not
///   integers in 0...767 are ignored (§6.1).
/// - `GLOBAL_RANK_TABLE_FILE_PATH`: overrides `global_rank_table_file_path` when non-empty (§8).
/// - `POD_IP`: overrides `http_server.ip` when it is a valid IP (and not all-zero unless
///   `allow_all_zero_ip_listening`); otherwise `http_server.ip` is used (§2).
/// - `POD_NAMESPACE`, `MODEL_ID`, `MINDX_TASK_ID`, `MINDX_SERVER_IP`: recorded in `environment`.
/// `MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH` and `MINDIE_CHECK_INPUTFILES_PERMISSION` are read by the launcher
/// through `configFilePath(environment:)` and `permissionChecksEnabled(environment:)`.
public struct ControllerConfig: Sendable, Equatable {
    /// `deploy_mode`.
    public enum DeployMode: String, Sendable, Equatable, CaseIterable {
        case pdSeparate = "pd_separate"
        case pdDisaggregation = "pd_disaggregation"
        /// 16 instances per pod.
        case pdDisaggregationSingleContainer = "pd_disaggregation_single_container"
        case singleNode = "single_node"

        /// Whether P/D roles are assigned (every mode but `single_node`).
        public var isPDMode: Bool { self != .singleNode }
    }

    /// `process_manager` / `cluster_status`.
    public struct OutputFile: Sendable, Equatable {
        public var toFile: Bool
        /// Required (non-empty) when `toFile`; may be empty otherwise.
        public var filePath: String
    }

    /// `controller_backup_cfg` (HA through etcd).
    public struct BackupConfig: Sendable, Equatable {
        public var functionSwitch: Bool = false
        public var databaseServerDNS: String = "etcd.default.svc.cluster.local"
        public var databaseServerPort: Int = 2379
        /// `lease_ttl_seconds` (ours, optional, 2...3600): the election lease; the reference's is 20 s.
        public var leaseTTLSeconds: Int = 20
    }

    /// `fault_recovery_func_dict`.
    public struct FaultRecovery: Sendable, Equatable {
        public var lingquLink: Bool = false
        public var oom: Bool = true
        public var hbm: Bool = false
        public var roce: Bool = true
    }

    /// One of `multi_node_infer_config.{p,d}_node_config`.
    public struct NodeConfig: Sendable, Equatable {
        public var enableDistDPServer: Bool = false
        /// 1...768.
        public var nodeMachineNum: Int = 2
        /// 1...16.
        public var tpSize: Int = 4
        /// 1...512.
        public var dpSize: Int = 4
        /// 1...16.
        public var spSize: Int = 1
        /// 1...16 (optional key); `dp_size > 1` together with `cp_size > 1` is invalid.
        public var cpSize: Int = 1
    }

    /// `multi_node_infer_config` (optional as a whole).
    public struct MultiNodeConfig: Sendable, Equatable {
        public var enabled: Bool = false
        public var prefill = NodeConfig()
        public var decode = NodeConfig()
    }

    /// `digs_periodic_role_decision`.
    public struct PeriodicRoleDecision: Sendable, Equatable {
        public var autoSwitchingEnabled: Bool = true
        /// Seconds, 3600...1296000.
        public var periodSeconds: Int = 86400
        /// Seconds, 1...65535.
        public var tasksEndWaitSeconds: Int = 300
    }

    /// `http_server` (probe server).
    public struct HTTPServer: Sendable, Equatable {
        /// The address to listen on: `POD_IP` when valid, else the file's `ip`.
        public var ip: String
        /// The file's `http_server.ip`.
        public var configuredIP: String
        public var port: Int
    }

    /// `ccae` (O&M reporting, out of scope; kept so the file loads).
    public struct CCAE: Sendable, Equatable {
        public var ip: String?
        public var port: Int?
        public var kafkaPort: Int?
    }

    /// `<x>_tls_items`.
    public typealias TLSItems = MSCore.TLSItems

    /// One TLS switch and its items (`nil` items when the switch is off and no items are given).
    public struct TLSSetting: Sendable, Equatable {
        public var enabled: Bool
        public var items: TLSItems?
    }

    /// `tls_config`. The first four are required keys, the last four optional (absent = off).
    public struct TLSConfig: Sendable, Equatable {
        public var requestCoordinator: TLSSetting
        public var requestServer: TLSSetting
        public var httpServer: TLSSetting
        public var externalCoordinator: TLSSetting
        public var cluster: TLSSetting
        public var etcdServer: TLSSetting
        public var ccae: TLSSetting
        public var alarm: TLSSetting

        /// The `<x>` names of `tls_config`, required ones first.
        public static let requiredNames = [
            "request_coordinator", "request_server", "http_server", "external_coordinator",
        ]
        public static let optionalNames = ["cluster", "etcd_server", "ccae", "alarm"]
    }

    /// `instance_discovery` (ours, optional): where the Controller finds its instances and coordinators.
    ///
    /// `source` is `rank_table` (default: the global rank table file, as the reference) or `kubernetes` (pods
    /// listed from the API server every `rank_table_detecting_seconds`, docs/decisions.md).
    public struct InstanceDiscovery: Sendable, Equatable {
        public enum Source: String, Sendable, Equatable, CaseIterable {
            case rankTable = "rank_table"
            case kubernetes
        }

        public var source: Source = .rankTable
        /// Selects the cluster's pods (Kubernetes label-selector syntax), e.g. `app=mindie-pd`; empty = every pod of
        /// the namespace.
        public var labelSelector: String = ""
        /// The pod label whose value says what a pod is: `coordinatorRoles` / `instanceRoles`.
        public var roleLabel: String = "mindie-ms/role"
        /// Role-label values of MindIE Server pods, in table order (P before D, as the deployer's table).
        public var instanceRoles: [String] = ["prefill", "decode"]
        /// Role-label values of Coordinator pods.
        public var coordinatorRoles: [String] = ["coordinator"]
        /// The namespace; empty = `POD_NAMESPACE`, else the ServiceAccount's `namespace` file.
        public var namespace: String = ""
        /// Per-request timeout of the API calls, seconds.
        public var timeoutSeconds: Int = 5
    }

    /// `log_info` (optional).
    public struct LogInfo: Sendable, Equatable {
        public var logLevel: String = "INFO"
        public var toFile: Bool = true
        public var toStdout: Bool = true
        public var runLogPath: String = "./logs/ms_controller_run_log.txt"
        public var operationLogPath: String = "./logs/ms_controller_operation_log.txt"
        public var maxLogStrSize: Int = 8192
        /// MB.
        public var maxLogFileSize: Int = 20
        public var maxLogFileNum: Int = 10
    }

    /// Environment values recorded at load time.
    public struct Environment: Sendable, Equatable {
        /// `POD_NAMESPACE`: etcd key prefix `/<ns>`.
        public var podNamespace: String?
        /// `MODEL_ID` (alarms).
        public var modelID: String?
        /// `MINDX_TASK_ID` and `MINDX_SERVER_IP`: the ClusterD client runs only when both are set.
        public var mindxTaskID: String?
        public var mindxServerIP: String?
    }

    public var allowAllZeroIPListening: Bool
    public var deployMode: DeployMode
    public var initialDistServerPort: Int
    public var clusterPort: Int
    public var processManager: OutputFile
    public var clusterStatus: OutputFile
    public var backup: BackupConfig
    /// `controller_backup_cfg.function_sw`: active/standby through etcd. Never silently off: with the switch on, a
    /// malformed etcd address is a config error and an unreachable one is retried (the process stays not ready).
    public var haEnabled: Bool
    public var faultRecovery: FaultRecovery
    /// After `GLOBAL_RANK_TABLE_FILE_PATH`.
    public var globalRankTableFilePath: String
    public var scalingRuleFilePath: String
    public var clusterSynchronizationSeconds: Int
    public var rankTableDetectingSeconds: Int
    public var disappearedServerWaitingSeconds: Int
    /// `prefill_loss_rebalance_seconds` (ours, optional, default 60, 0 = off): how long a P may stay dead before a
    /// D of its group becomes P in its place (docs/decisions.md).
    public var prefillLossRebalanceSeconds: Int = 60
    /// After `MINDIE_MS_P_RATE`. 0 with `defaultDRate` 0 = automatic ratio.
    public var defaultPRate: Int
    /// After `MINDIE_MS_D_RATE`.
    public var defaultDRate: Int
    public var isHeterogeneous: Bool
    public var serverOnlineAttemptTimes: Int
    public var serverOnlineWaitSeconds: Int
    public var initRoleAttemptTimes: Int
    public var checkRoleAttemptTimes: Int
    public var checkRoleWaitSeconds: Int
    public var mindieServerPort: Int
    public var mindieServerControlPort: Int
    public var mindieServerMetricPort: Int
    public var controllerAlarmPort: Int
    public var mindieMSCoordinatorPort: Int
    public var mindieMSCoordinatorExternalPort: Int
    public var nodeManagerPort: Int
    public var httpTimeoutSeconds: Int
    public var httpRetries: Int
    /// Always `digs`.
    public var roleDecisionMethods: String
    /// Always `D2DTransfer`.
    public var transferType: String
    public var digsRequestSummaryInputLength: Int
    public var digsRequestSummaryOutputLength: Int
    public var digsPrefillSLO: Int
    public var digsDecodeSLO: Int
    public var digsPP: Int
    public var digsModelConfigPath: String
    public var digsMachineConfigPath: String
    public var modelType: String
    public var multiNode: MultiNodeConfig
    public var periodicRoleDecision: PeriodicRoleDecision
    public var httpServer: HTTPServer
    /// `has_flex`; `true` is rejected, so this is always false.
    public var hasFlex: Bool
    public var ccae: CCAE?
    public var tls: TLSConfig
    public var logInfo: LogInfo
    public var environment: Environment
    /// `instance_discovery` (default: the rank table file).
    public var instanceDiscovery = InstanceDiscovery()

    /// Whether the definite ratio (§6.2) applies; otherwise the automatic one (§6.3).
    public var usesDefiniteRatio: Bool { defaultPRate > 0 && defaultDRate > 0 }

    /// The default instance ports, overridden per server by the rank table.
    public var defaultInstancePorts: InstancePorts {
        InstancePorts(
            predict: mindieServerPort, mgmt: mindieServerControlPort, metric: mindieServerMetricPort,
            interComm: nil)
    }

    /// The config file path: `MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH` or `./conf/ms_controller.json`.
    public static func configFilePath(environment: [String: String]) -> String {
        if let p = environment["MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH"], !p.isEmpty { return p }
        return "./conf/ms_controller.json"
    }

    /// Permission checks on input files are on unless `MINDIE_CHECK_INPUTFILES_PERMISSION=0`.
    public static func permissionChecksEnabled(environment: [String: String]) -> Bool {
        environment["MINDIE_CHECK_INPUTFILES_PERMISSION"] != "0"
    }

    /// A copy whose relative file paths (rank table, scaling rule, model and machine files, output files, log
    /// files, TLS items) are resolved against `directory`. Absolute paths are kept.
    public func resolvingPaths(relativeTo directory: String) -> ControllerConfig {
        func r(_ p: String) -> String {
            if p.isEmpty || p.hasPrefix("/") { return p }
            var rel = Substring(p)
            while rel.hasPrefix("./") { rel = rel.dropFirst(2) }
            return directory.hasSuffix("/") ? directory + rel : directory + "/" + rel
        }
        func r(_ s: TLSSetting) -> TLSSetting {
            guard var items = s.items else { return s }
            items.caCert = r(items.caCert)
            items.tlsCert = r(items.tlsCert)
            items.tlsKey = r(items.tlsKey)
            items.tlsPasswd = r(items.tlsPasswd)
            items.tlsCrl = r(items.tlsCrl)
            return TLSSetting(enabled: s.enabled, items: items)
        }
        var c = self
        c.globalRankTableFilePath = r(globalRankTableFilePath)
        c.scalingRuleFilePath = r(scalingRuleFilePath)
        c.digsModelConfigPath = r(digsModelConfigPath)
        c.digsMachineConfigPath = r(digsMachineConfigPath)
        c.processManager.filePath = r(processManager.filePath)
        c.clusterStatus.filePath = r(clusterStatus.filePath)
        c.logInfo.runLogPath = r(logInfo.runLogPath)
        c.logInfo.operationLogPath = r(logInfo.operationLogPath)
        c.tls.requestCoordinator = r(tls.requestCoordinator)
        c.tls.requestServer = r(tls.requestServer)
        c.tls.httpServer = r(tls.httpServer)
        c.tls.externalCoordinator = r(tls.externalCoordinator)
        c.tls.cluster = r(tls.cluster)
        c.tls.etcdServer = r(tls.etcdServer)
        c.tls.ccae = r(tls.ccae)
        c.tls.alarm = r(tls.alarm)
        return c
    }
}

/// The ports of one instance (one MindIE Server).
public struct InstancePorts: Sendable, Hashable, Codable {
    /// Data port (`predict_port`, default `mindie_server_port`).
    public var predict: Int
    /// Management port (`mgmt_port`, default `mindie_server_control_port`).
    public var mgmt: Int
    /// `metric_port`, default `mindie_server_metric_port`.
    public var metric: Int
    /// `inter_comm_port`: only from the rank table.
    public var interComm: Int?

    public init(predict: Int, mgmt: Int, metric: Int, interComm: Int?) {
        self.predict = predict
        self.mgmt = mgmt
        self.metric = metric
        self.interComm = interComm
    }
}
