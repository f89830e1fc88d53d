import Foundation
import MSCore

/// Parses a component config the way its binary does at start-up; returns the refusal (nil = it would start).
public typealias ConfigStartCheck = @Sendable (_ bytes: [UInt8]) -> String?

/// The start-up checks of the configs a PD cluster deploys. The Controller's parser lives in this target; the
/// Coordinator's lives in Gateway, which Control must not import (architecture.md), so the executables that link
/// both (`ms_deployer`, `msctl`) hand it in — there is no default, so no path can deploy an unchecked config.
public struct ComponentConfigChecks: Sendable {
    public var coordinator: ConfigStartCheck

    public init(coordinator: @escaping ConfigStartCheck) {
        self.coordinator = coordinator
    }
}

/// The complete component configs of a `mindie_pd_cluster`: defaults fitted to the spec (ports, paths inside the
/// pods), with the spec's `pd_cluster.*_config` objects merged over them as JSON merge patches (RFC 7386: objects
/// merge key by key, `null` removes a key, anything else replaces).
public enum PDConfigs {
    /// Where each pod mounts its config ConfigMap.
    public static let configDir = "/mnt/configmap"
    /// The Controller's writable state (process state and cluster status files), an emptyDir.
    public static let controllerStateDir = "/var/lib/mindie-ms"
    public static let modelConfigKey = "model_config.json"
    public static let machineConfigKey = "machine_config.json"

    /// `ms_coordinator.json` for the pod. The data and management listeners take the pod IP from the command line
    /// (`ms_coordinator $(POD_IP) $(POD_IP)`); their ports are the ones the Service and the Controller use.
    static func coordinatorDefaults() -> JSON {
        let off = ["controller_server", "request_server", "mindie_client", "mindie_mangment", "external", "status",
                   "etcd_server", "alarm_client"]
        var tls: JSON.Object = [:]
        for k in off { tls["\(k)_tls_enable"] = .bool(false) }
        return jo([
            "http_config": jo([
                "allow_all_zero_ip_listening": jb(false),
                "predict_ip": js("127.0.0.1"), "predict_port": js(String(Manifests.coordinatorInferPort)),
                "manage_ip": js("127.0.0.1"), "manage_port": js(String(Manifests.coordinatorManagementPort)),
                "alarm_port": js("1027"), "external_port": js("1028"), "status_port": js("1029"),
                "server_thread_num": ji(10), "client_thread_num": ji(10), "http_timeout_seconds": ji(600),
                "keep_alive_seconds": ji(180), "server_name": js("MindIE-MS"), "user_agent": js("Coordinator/1.0"),
            ]),
            "request_limit": jo(["single_node_max_requests": ji(1000), "max_requests": ji(10000), "body_limit": ji(1)]),
            "metrics_config": jo(["enable": jb(false), "trigger_size": ji(100)]),
            "prometheus_metrics_config": jo(["reuse_time": ji(3)]),
            "exception_config": jo(["max_retry": ji(5), "schedule_timeout": ji(600), "first_token_timeout": ji(600),
                                    "infer_timeout": ji(600), "tokenizer_timeout": ji(300)]),
            // logs go to stdout (kubectl logs); the root filesystem is read-only
            "log_info": jo(["log_level": js("INFO"), "to_file": jb(false), "to_stdout": jb(true),
                            "run_log_path": js("/tmp/ms_coordinator_run_log.txt"),
                            "operation_log_path": js("/tmp/ms_coordinator_operation_log.txt"),
                            "max_log_str_size": ji(4096), "max_log_file_size": ji(20), "max_log_file_num": ji(10)]),
            "digs_scheduler_config": jo(["deploy_mode": js("pd_separate"), "scheduler_type": js("digs_scheduler"),
                                         "algorithm_type": js("load_balance")]),
            "string_token_rate": .double(4.02),
            "tls_config": .object(tls),
        ])
    }

    /// `ms_controller.json` for the pod: PD mode, the MindIE Server ports of the spec, the rank table where the
    /// manifests mount it, state files in the Controller's emptyDir, DIGS files in its ConfigMap.
    static func controllerDefaults(_ s: InferServerSpec, prefill: Int, decode: Int) -> JSON {
        let tlsNames = ["request_coordinator", "request_server", "http_server", "cluster", "etcd_server", "ccae", "alarm",
                        "external_coordinator"]
        var tls: JSON.Object = [:]
        for k in tlsNames { tls["\(k)_tls_enable"] = .bool(false) }
        let conf = try? JSON.parse(Data(controllerTemplate.utf8))
        var c = conf ?? .object([:])
        let set: [(String, JSON)] = [
            ("deploy_mode", js("pd_separate")),
            ("default_p_rate", ji(prefill)), ("default_d_rate", ji(decode)),
            ("global_rank_table_file_path", js(Manifests.rankTablePath)),
            ("mindie_server_port", ji(s.inferPort)), ("mindie_server_control_port", ji(s.managementPort)),
            ("mindie_ms_coordinator_port", ji(Manifests.coordinatorManagementPort)),
            ("digs_model_config_path", js("\(configDir)/\(modelConfigKey)")),
            ("digs_machine_config_path", js("\(configDir)/\(machineConfigKey)")),
        ]
        for (k, v) in set { c = c.setting([k], to: v) }
        c = c.setting(["process_manager"], to: jo(["to_file": jb(true), "file_path": js("\(controllerStateDir)/controller_process_status.json")]))
        c = c.setting(["cluster_status"], to: jo(["to_file": jb(true), "file_path": js("\(controllerStateDir)/cluster_status_output.json")]))
        c = c.setting(["tls_config"], to: .object(tls))
        return c
    }

    /// The MindIE Server `config.json` keys the Deployer relies on; the rest is the server's own business.
    static func serverDefaults(_ s: InferServerSpec) -> JSON {
        jo([
            "ServerConfig": jo([
                "ipAddress": js("127.0.0.1"), "managementIpAddress": js("127.0.0.1"),
                "port": ji(s.inferPort), "managementPort": ji(s.managementPort), "metricsPort": ji(s.managementPort + 1),
                "interCommPort": ji(1121), "httpsEnabled": jb(s.enableTLS), "inferMode": js("standard"),
                "tokenTimeout": ji(600), "e2eTimeout": ji(600), "maxRequestLength": ji(40),
            ]),
            "BackendConfig": jo([
                "ModelDeployConfig": jo([
                    "maxSeqLen": ji(2560), "maxInputTokenLen": ji(2048),
                    "ModelConfig": ja([jo(["modelName": js("llama2-70b"), "modelWeightPath": js("/mnt/mindie-service/ms/model")])]),
                ]),
            ]),
        ])
    }

    /// Builds the complete configs from the spec's overrides (`pd` carries them as given).
    static func complete(_ s: InferServerSpec, _ pd: PDClusterSpec) throws(DeployerError) -> PDClusterSpec {
        func merged(_ base: JSON, _ key: String, _ patch: JSON) throws(DeployerError) -> JSON {
            let m = base.merging(patch)
            guard case .object = m else { throw DeployerError(400, "failed to parse load params!: pd_cluster.\(key) must be an object") }
            return m
        }
        var out = pd
        out.coordinatorConfig = try merged(coordinatorDefaults(), "coordinator_config", pd.coordinatorConfig)
        out.controllerConfig = try merged(controllerDefaults(s, prefill: pd.prefillReplicas, decode: pd.decodeReplicas),
                                          "controller_config", pd.controllerConfig)
        if let ha = pd.ha {
            // after the spec's overrides: parseHA refused these sections in the spec, pd_cluster.ha is their one source
            // one member: host and port as the reference has them; several: "host:port,..." (the binaries fail over)
            let dns = ha.etcdMembers.count == 1 ? ha.etcdMembers[0].host : ha.etcdMembers.map { "\($0.host):\($0.port)" }.joined(separator: ",")
            let etcd: JSON.Object = ["database_server_dns": js(dns), "database_server_port": ji(ha.etcdMembers[0].port),
                                             "lease_ttl_seconds": ji(ha.leaseTTLSeconds)]
            out.coordinatorConfig = out.coordinatorConfig.setting(["backup_config"], to: .object(etcd.merging(["function_enable": jb(true)]) { a, _ in a }))
            out.controllerConfig = out.controllerConfig.setting(["controller_backup_cfg"], to: .object(etcd.merging(["function_sw": jb(true)]) { a, _ in a }))
        }
        out.serverConfig = try merged(serverDefaults(s), "server_config", pd.serverConfig)
        out.modelConfig = try merged(.object(modelTemplate), "digs_model_config", pd.modelConfig)
        out.machineConfig = try merged(.object(machineTemplate), "digs_machine_config", pd.machineConfig)
        return out
    }

    /// Refuses a spec whose rendered configs would not start: each one through its binary's start-up parser (with
    /// the environment the manifests give the pod), plus the values the manifests and the other components rely on.
    public static func check(_ s: InferServerSpec, with checks: ComponentConfigChecks) throws(DeployerError) {
        guard s.serverType == .pdCluster, let pd = s.pd else { return }
        func refuse(_ what: String, _ why: String) -> DeployerError {
            DeployerError(400, "failed to parse load params!: pd_cluster.\(what) would not start: \(why)")
        }
        let coordinatorBytes = Array(pd.coordinatorConfig.serialized(indent: 4).utf8)
        if let why = checks.coordinator(coordinatorBytes) { throw refuse("coordinator_config", why) }
        for (key, port) in [("predict_port", Manifests.coordinatorInferPort), ("manage_port", Manifests.coordinatorManagementPort),
                            ("external_port", Manifests.coordinatorMetricsPort), ("status_port", Manifests.coordinatorStatusPort)] {
            let v = pd.coordinatorConfig["http_config"]?[key]
            guard v == .string(String(port)) || v == .int(Int64(port)) else {
                throw refuse("coordinator_config", "http_config.\(key) must stay \(port): the Service, the probes and the Controller use it, got \(v?.rendered ?? "nothing")")
            }
        }
        do {
            let env = ["GLOBAL_RANK_TABLE_FILE_PATH": Manifests.rankTablePath, "POD_IP": "10.0.0.1"]
            let controller = try ControllerConfig(data: Data(pd.controllerConfig.serialized().utf8), environment: env, file: "controller_config")
            // more than one Controller without the election would both assign roles
            if pd.ha != nil, !controller.haEnabled {
                throw DeployerError(400, "controller_backup_cfg.function_sw is off although pd_cluster.ha is set")
            }
            _ = try DigsModelConfig(data: Data(pd.modelConfig.serialized().utf8), file: "digs_model_config")
            _ = try DigsMachineConfig(data: Data(pd.machineConfig.serialized().utf8), file: "digs_machine_config")
        } catch {
            throw refuse("controller_config", "\(error)")
        }
        for (key, want) in [("digs_model_config_path", "\(configDir)/\(modelConfigKey)"), ("digs_machine_config_path", "\(configDir)/\(machineConfigKey)")] {
            guard pd.controllerConfig[key] == .string(want) else {
                throw refuse("controller_config", "\(key) must stay \(want) (the file is rendered from pd_cluster.\(key == "digs_model_config_path" ? "digs_model_config" : "digs_machine_config"))")
            }
        }
        guard pd.controllerConfig["http_server"]?["port"] == .int(Int64(Manifests.controllerPort)),
              pd.controllerConfig["controller_alarm_port"] == .int(Int64(Manifests.controllerAlarmPort)) else {
            throw refuse("controller_config", "http_server.port must stay \(Manifests.controllerPort) and controller_alarm_port " +
                         "\(Manifests.controllerAlarmPort): the probes and the named ports use them")
        }
        for (key, want) in [("mindie_server_port", s.inferPort), ("mindie_server_control_port", s.managementPort),
                            ("mindie_ms_coordinator_port", Manifests.coordinatorManagementPort)] {
            guard pd.controllerConfig[key] == .int(Int64(want)) else {
                throw refuse("controller_config", "\(key) must be \(want) to match the spec's ports, got \(pd.controllerConfig[key]?.rendered ?? "nothing")")
            }
        }
        let sc = pd.serverConfig["ServerConfig"]
        for (key, want) in [("port", s.inferPort), ("managementPort", s.managementPort)] {
            guard sc?[key] == .int(Int64(want)) else {
                throw refuse("server_config", "ServerConfig.\(key) must be \(want) (mindie_server_config), got \(sc?[key]?.rendered ?? "nothing")")
            }
        }
        guard sc?["httpsEnabled"] == .bool(s.enableTLS) else {
            throw refuse("server_config", "ServerConfig.httpsEnabled must equal mindie_server_config.enable_tls (\(s.enableTLS))")
        }
    }

    /// The reference's `ms_controller.json` keys that keep their sample values in a pod.
    static let controllerTemplate = """
    {"allow_all_zero_ip_listening":false,"deploy_mode":"pd_separate","initial_dist_server_port":10000,"cluster_port":8899,
     "controller_backup_cfg":{"function_sw":false,"database_server_dns":"etcd.default.svc.cluster.local","database_server_port":2379},
     "fault_recovery_func_dict":{"lingqu_link":false,"oom":true,"hbm":false,"roce":true},
     "scaling_rule_file_path":"/mnt/configmap/elastic_scaling.json",
     "cluster_synchronization_seconds":1,"rank_table_detecting_seconds":5,"disappeared_server_waiting_seconds":7200,
     "is_heterogeneous":false,"server_online_attempt_times":36,"server_online_wait_seconds":5,
     "init_role_attempt_times":2,"check_role_attempt_times":300,"check_role_wait_seconds":5,
     "mindie_server_metric_port":1027,"controller_alarm_port":1027,"node_manager_port":1028,
     "mindie_ms_coordinator_external_port":1028,"http_timeout_seconds":5,"http_retries":3,"role_decision_methods":"digs",
     "digs_request_summary_input_length":3000,"digs_request_summary_output_length":200,
     "digs_prefill_slo":1000,"digs_decode_slo":50,
     "multi_node_infer_config":{"multi_node_infer_enable":false,
       "p_node_config":{"enable_dist_dp_server":false,"node_machine_num":2,"tp_size":4,"dp_size":4,"sp_size":1,"cp_size":1},
       "d_node_config":{"enable_dist_dp_server":false,"node_machine_num":2,"tp_size":4,"dp_size":4,"sp_size":1,"cp_size":1}},
     "model_type":"llama2-70B","transfer_type":"D2DTransfer","digs_pp":1,
     "digs_periodic_role_decision":{"auto_pd_role_switching_enable":true,"role_decision_time_period":86400,"tasks_end_wait_seconds":300},
     "http_server":{"ip":"127.0.0.1","port":1026},
     "log_info":{"log_level":"INFO","to_file":false,"to_stdout":true,"run_log_path":"/tmp/ms_controller_run_log.txt",
       "operation_log_path":"/tmp/ms_controller_operation_log.txt","max_log_str_size":8192,"max_log_file_size":20,"max_log_file_num":10}}
    """

    /// `conf/model_config/llama2-70B.json` and `conf/machine_config/800IA2.json`, the reference's samples.
    static var modelTemplate: JSON.Object { (try? JSON.parse(Data(modelJSON.utf8)))?.objectValue ?? [:] }
    static var machineTemplate: JSON.Object { (try? JSON.parse(Data(machineJSON.utf8)))?.objectValue ?? [:] }
    static let modelJSON = #"{"hidden_size":"8192","initializer_range":"0.02","intermediate_size":"28672","max_position_embeddings":"4096","num_attention_heads":"64","num_hidden_layers":"80","num_key_value_heads":"8","torch_dtype":"float16"}"#
    static let machineJSON = #"{"BW_GB":"392","BW_RDMA_Gb":"200","BWeff":"0.5","BW_RDMAeff":"0.5","TFLOPS":"246","TFLOPSeff":"0.5","MBW_TB":"0.8","MBW_TBeff":"0.3","alpha":"2","MEMCapacity":"32","eta_OOM":"0.9","staticTransferDelay":"0.00001"}"#
}
