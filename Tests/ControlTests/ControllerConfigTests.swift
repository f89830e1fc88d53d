import Foundation
import Testing

@testable import Control
import MSCore

@Suite("ms_controller.json")
struct ControllerConfigTests {
    @Test("our conf/ms_controller.json loads with the reference defaults")
    func ourConfigDefaults() throws {
        let c = try loadConfig()
        #expect(c.deployMode == .pdSeparate)
        #expect(!c.allowAllZeroIPListening)
        #expect(c.initialDistServerPort == 10000 && c.clusterPort == 8899)
        #expect(c.processManager == .init(toFile: true, filePath: "./logs/controller_process_status.json"))
        #expect(c.clusterStatus == .init(toFile: true, filePath: "./logs/cluster_status_output.json"))
        #expect(c.backup == .init(functionSwitch: false, databaseServerDNS: "etcd.default.svc.cluster.local", databaseServerPort: 2379))
        #expect(!c.haEnabled)
        #expect(c.faultRecovery == .init(lingquLink: false, oom: true, hbm: false, roce: true))
        #expect(c.globalRankTableFilePath == "./conf/global_rank_table_file.json")
        #expect(c.scalingRuleFilePath == "./conf/elastic_scaling.json")
        #expect([c.clusterSynchronizationSeconds, c.rankTableDetectingSeconds, c.disappearedServerWaitingSeconds] == [1, 5, 7200] as [Int])
        #expect(c.defaultPRate == 0 && c.defaultDRate == 0 && !c.usesDefiniteRatio)
        #expect(!c.isHeterogeneous)
        #expect([c.serverOnlineAttemptTimes, c.serverOnlineWaitSeconds, c.initRoleAttemptTimes, c.checkRoleAttemptTimes, c.checkRoleWaitSeconds] == [36, 5, 2, 300, 5] as [Int])
        #expect([c.mindieServerPort, c.mindieServerControlPort, c.mindieServerMetricPort] == [1025, 1026, 1027] as [Int])
        #expect([c.controllerAlarmPort, c.mindieMSCoordinatorPort, c.mindieMSCoordinatorExternalPort, c.nodeManagerPort] == [1027, 1026, 1028, 1028] as [Int])
        #expect(c.httpTimeoutSeconds == 5 && c.httpRetries == 3)
        #expect(c.roleDecisionMethods == "digs" && c.transferType == "D2DTransfer")
        #expect([c.digsRequestSummaryInputLength, c.digsRequestSummaryOutputLength, c.digsPrefillSLO, c.digsDecodeSLO, c.digsPP] == [3000, 200, 1000, 50, 1] as [Int])
        #expect(c.digsModelConfigPath == "./conf/model_config/llama2-70B.json")
        #expect(c.digsMachineConfigPath == "./conf/machine_config/800IA2.json")
        #expect(c.modelType == "llama2-70B")
        #expect(!c.multiNode.enabled)
        #expect(c.multiNode.prefill == .init(enableDistDPServer: false, nodeMachineNum: 2, tpSize: 4, dpSize: 4, spSize: 1, cpSize: 1))
        #expect(c.multiNode.decode == c.multiNode.prefill)
        #expect(c.periodicRoleDecision == .init(autoSwitchingEnabled: true, periodSeconds: 86400, tasksEndWaitSeconds: 300))
        #expect(c.httpServer == .init(ip: "127.0.0.1", configuredIP: "127.0.0.1", port: 1026))
        #expect(!c.hasFlex && c.ccae == nil)
        let switches = [c.tls.requestCoordinator, c.tls.requestServer, c.tls.httpServer, c.tls.externalCoordinator,
                        c.tls.cluster, c.tls.etcdServer, c.tls.ccae, c.tls.alarm].map(\.enabled)
        #expect(switches == Array(repeating: false, count: 8))
        #expect(c.logInfo == ControllerConfig.LogInfo())
        #expect(c.defaultInstancePorts == InstancePorts(predict: 1025, mgmt: 1026, metric: 1027, interComm: nil))
    }

    // docs/wire/controller.md §12 test 2.
    @Test("rates (1,1), (15,1), (1,15) pass", arguments: [(1, 1), (15, 1), (1, 15), (0, 0), (384, 384), (767, 1)])
    func validRates(p: Int, d: Int) throws {
        let c = try loadConfig([("default_p_rate", .int(Int64(p))), ("default_d_rate", .int(Int64(d)))])
        #expect(c.defaultPRate == p && c.defaultDRate == d)
        #expect(c.usesDefiniteRatio == (p > 0))
    }

    @Test("rates (1,0), (0,1), (1024,1), (1,768), (2,767), (767,2) fail",
          arguments: [(1, 0), (0, 1), (1024, 1), (1, 768), (2, 767), (767, 2)])
    func invalidRates(p: Int, d: Int) throws {
        let e = try #require(try configError([("default_p_rate", .int(Int64(p))), ("default_d_rate", .int(Int64(d)))]))
        if p > 767 {
            #expect(e.key == "default_p_rate" && e.value == String(p) && e.allowed == "integer 0...767")
        } else if d > 767 {
            #expect(e.key == "default_d_rate" && e.value == String(d))
        } else {
            #expect(e.key == "default_p_rate/default_d_rate" && e.value == "\(p)/\(d)")
        }
    }

    @Test("MINDIE_MS_P_RATE / MINDIE_MS_D_RATE override the file; values outside 0...767 are ignored")
    func rateEnvironment() throws {
        let c = try loadConfig(environment: ["MINDIE_MS_P_RATE": "3", "MINDIE_MS_D_RATE": "2"])
        #expect(c.defaultPRate == 3 && c.defaultDRate == 2 && c.usesDefiniteRatio)
        let ignored = try loadConfig(
            [("default_p_rate", 1), ("default_d_rate", 1)],
            environment: ["MINDIE_MS_P_RATE": "768", "MINDIE_MS_D_RATE": "abc"])
        #expect(ignored.defaultPRate == 1 && ignored.defaultDRate == 1)
        let e = try #require(try configError([], environment: ["MINDIE_MS_P_RATE": "2"]))
        #expect(e.value.contains("MINDIE_MS_P_RATE"))
    }

    @Test("GLOBAL_RANK_TABLE_FILE_PATH overrides the file; env is recorded")
    func rankTableEnvironment() throws {
        let c = try loadConfig(environment: [
            "GLOBAL_RANK_TABLE_FILE_PATH": "/etc/rt.json", "POD_NAMESPACE": "ns1", "MINDX_TASK_ID": "t",
            "MINDX_SERVER_IP": "10.0.0.9", "MODEL_ID": "m",
        ])
        #expect(c.globalRankTableFilePath == "/etc/rt.json")
        #expect(c.environment == .init(podNamespace: "ns1", modelID: "m", mindxTaskID: "t", mindxServerIP: "10.0.0.9"))
        #expect(try loadConfig(environment: ["GLOBAL_RANK_TABLE_FILE_PATH": ""]).globalRankTableFilePath
            == "./conf/global_rank_table_file.json")
    }

    // docs/wire/controller.md §12 test 3.
    @Test("role_decision_methods, transfer_type, deploy_mode only accept their values")
    func enumeratedValues() throws {
        for (key, bad) in [("role_decision_methods", "random"), ("transfer_type", "H2DTransfer"), ("deploy_mode", "pd_mixed")] {
            let e = try #require(try configError([(key, .string(bad))]))
            #expect(e.key == key && e.code == .invalidValue && e.value == "\"\(bad)\"")
        }
        for mode in ControllerConfig.DeployMode.allCases {
            #expect(try loadConfig([("deploy_mode", .string(mode.rawValue))]).deployMode == mode)
        }
        #expect(try loadConfig([("multi_node_infer_config", nil)]).multiNode == .init())
        let e = try #require(try configError([("multi_node_infer_config.p_node_config.node_machine_num", .double(2.5))]))
        #expect(e.key == "multi_node_infer_config.p_node_config.node_machine_num" && e.code == .wrongType)
        let s = try #require(try configError([("multi_node_infer_config.d_node_config.node_machine_num", "2")]))
        #expect(s.code == .wrongType)
    }

    @Test("multi-node limits: machines 1...768, tp 1...16, dp 1...512, sp 1...16, dp>1 with cp>1 invalid")
    func multiNodeLimits() throws {
        let p = "multi_node_infer_config.p_node_config."
        for (k, v) in [("node_machine_num", 769), ("tp_size", 17), ("dp_size", 513), ("sp_size", 0), ("node_machine_num", 0)] {
            let e = try #require(try configError([(p + k, .int(Int64(v)))]))
            #expect(e.code == .outOfRange && e.key == p + k)
        }
        let cp = try #require(try configError([(p + "cp_size", 2)]))
        #expect(cp.key == p + "cp_size")
        let ok = try loadConfig([(p + "cp_size", 2), (p + "dp_size", 1), ("multi_node_infer_config.multi_node_infer_enable", true)])
        #expect(ok.multiNode.enabled && ok.multiNode.prefill.cpSize == 2)
    }

    // docs/wire/controller.md §12 test 4.
    @Test("invalid http_server.ip fails", arguments: [
        .string(".7212.123.163"), "333.333.333.333", "123456", .int(123456), "", nil, "0.0.0.0", "::",
    ] as [JSON?])
    func invalidHTTPServerIP(ip: JSON?) throws {
        let e = try #require(try configError([("http_server.ip", ip)]))
        #expect(e.key == "http_server.ip")
        #expect(e.value == (ip?.compact ?? "<missing>"))
    }

    @Test("http_server: 0.0.0.0 allowed with allow_all_zero_ip_listening; IPv6; port bounds; POD_IP")
    func httpServer() throws {
        #expect(try loadConfig([("allow_all_zero_ip_listening", true), ("http_server.ip", "0.0.0.0")]).httpServer.ip == "0.0.0.0")
        #expect(try loadConfig([("http_server.ip", "fe80::1")]).httpServer.ip == "fe80::1")
        let low = try #require(try configError([("http_server.port", 1023)]))
        #expect(low.code == .outOfRange && low.allowed == "integer 1024...65535" && low.value == "1023")
        #expect(try loadConfig([("http_server.port", 65535)]).httpServer.port == 65535)
        #expect(try configError([("http_server.port", 65536)]) != nil)
        #expect(try loadConfig(environment: ["POD_IP": "10.2.3.4"]).httpServer.ip == "10.2.3.4")
        let fallback = try loadConfig(environment: ["POD_IP": "0.0.0.0"]).httpServer
        #expect(fallback.ip == "127.0.0.1" && fallback.configuredIP == "127.0.0.1")
        #expect(try loadConfig(environment: ["POD_IP": "not-an-ip"]).httpServer.ip == "127.0.0.1")
    }

    @Test("every required key is required, and the error names it")
    func requiredKeys() throws {
        let required = [
            "allow_all_zero_ip_listening", "deploy_mode", "initial_dist_server_port", "process_manager",
            "cluster_status", "global_rank_table_file_path", "scaling_rule_file_path",
            "cluster_synchronization_seconds", "rank_table_detecting_seconds", "disappeared_server_waiting_seconds",
            "default_p_rate", "default_d_rate", "is_heterogeneous", "server_online_attempt_times",
            "server_online_wait_seconds", "init_role_attempt_times", "check_role_attempt_times",
            "check_role_wait_seconds", "mindie_server_port", "mindie_server_control_port", "mindie_server_metric_port",
            "controller_alarm_port", "mindie_ms_coordinator_port", "mindie_ms_coordinator_external_port",
            "node_manager_port", "http_timeout_seconds", "http_retries", "role_decision_methods", "transfer_type",
            "digs_request_summary_input_length", "digs_request_summary_output_length", "digs_prefill_slo",
            "digs_decode_slo", "digs_pp", "digs_model_config_path", "digs_machine_config_path", "model_type",
            "digs_periodic_role_decision", "http_server", "tls_config", "process_manager.to_file",
            "tls_config.request_coordinator_tls_enable", "tls_config.external_coordinator_tls_enable",
            "digs_periodic_role_decision.role_decision_time_period",
        ]
        for key in required {
            let e = try #require(try configError([(key, nil)]), "\(key) should be required")
            #expect(e.code == .missingKey && e.key == key && e.value == "<missing>")
        }
        let optional = ["cluster_port", "controller_backup_cfg", "fault_recovery_func_dict", "multi_node_infer_config",
                        "log_info", "tls_config.cluster_tls_enable", "tls_config.alarm_tls_items", "has_flex"]
        for key in optional { #expect(try configError([(key, nil)]) == nil, "\(key) should be optional") }
    }

    @Test("integer ranges name key, value and range", arguments: [
        ("cluster_synchronization_seconds", 0, "1...65535"), ("disappeared_server_waiting_seconds", 65536, "1...65535"),
        ("http_retries", -1, "0...65535"), ("mindie_server_port", 80, "1024...65535"),
        ("digs_pp", 0, "1...65535"), ("digs_periodic_role_decision.role_decision_time_period", 3599, "3600...1296000"),
        ("digs_periodic_role_decision.role_decision_time_period", 1_296_001, "3600...1296000"),
        ("initial_dist_server_port", 70000, "1024...65535"), ("check_role_attempt_times", 0, "1...65535"),
    ])
    func ranges(key: String, value: Int, range: String) throws {
        let e = try #require(try configError([(key, .int(Int64(value)))]))
        #expect(e.code == .outOfRange && e.key == key && e.value == String(value) && e.allowed == "integer \(range)")
        #expect(e.description == "ms_controller.json: \(key) = \(value): allowed integer \(range)")
        #expect(try configError([(key, .string(String(value)))])?.code == .wrongType)
    }

    @Test("has_flex=true is rejected; a TLS switch that is on needs its items; to_file needs a path")
    func combinations() throws {
        #expect(try configError([("has_flex", true)])?.key == "has_flex")
        #expect(try loadConfig([("has_flex", false)]).hasFlex == false)
        let tls = try #require(try configError([("tls_config.request_server_tls_enable", true), ("tls_config.request_server_tls_items.tls_key", "")]))
        #expect(tls.key == "tls_config.request_server_tls_items.tls_key")
        let on = try loadConfig([("tls_config.alarm_tls_enable", true)])
        #expect(on.tls.alarm.enabled && on.tls.alarm.items?.caCert == "./security/alarm_server/security/certs/ca.pem")
        #expect(try configError([("process_manager.file_path", "")])?.key == "process_manager.file_path")
        #expect(try loadConfig([("process_manager.to_file", false), ("process_manager.file_path", "")]).processManager.toFile == false)
    }

    @Test("HA on with an invalid etcd address is a config error naming the key, never HA silently off")
    func haSwitch() throws {
        #expect(try loadConfig([("controller_backup_cfg.function_sw", true)]).haEnabled)
        #expect(try configError([("controller_backup_cfg.function_sw", true), ("controller_backup_cfg.database_server_dns", "bad name!")])?.key
            == "controller_backup_cfg.database_server_dns")
        #expect(try configError([("controller_backup_cfg.function_sw", true), ("controller_backup_cfg.database_server_port", 0)])?.key
            == "controller_backup_cfg.database_server_port")
        #expect(try configError([("controller_backup_cfg.function_sw", true), ("controller_backup_cfg.database_server_port", "2379")])?.key
            == "controller_backup_cfg.database_server_port")
        // with the switch off the section is not checked (reference configs keep loading)
        #expect(try !loadConfig([("controller_backup_cfg.function_sw", false), ("controller_backup_cfg.database_server_dns", "bad name!")]).haEnabled)
    }

    @Test("not JSON, or not an object, is an invalidJSON error")
    func notJSON() {
        #expect(throws: ConfigError.self) { try ControllerConfig(data: Data("{".utf8)) }
        do {
            _ = try ControllerConfig(data: Data("[1]".utf8))
            Issue.record("should throw")
        } catch {
            #expect(error.code == .invalidJSON && error.key == "<document>" && error.value == "[1]")
        }
    }

    @Test("launcher helpers: config path, permission checks, path resolution")
    func launcherHelpers() throws {
        #expect(ControllerConfig.configFilePath(environment: [:]) == "./conf/ms_controller.json")
        #expect(ControllerConfig.configFilePath(environment: ["MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH": "/x.json"]) == "/x.json")
        #expect(ControllerConfig.permissionChecksEnabled(environment: [:]))
        #expect(!ControllerConfig.permissionChecksEnabled(environment: ["MINDIE_CHECK_INPUTFILES_PERMISSION": "0"]))
        let r = try loadConfig([("scaling_rule_file_path", "/abs/scaling.json")]).resolvingPaths(relativeTo: "/opt/ms")
        #expect(r.globalRankTableFilePath == "/opt/ms/conf/global_rank_table_file.json")
        #expect(r.digsModelConfigPath == "/opt/ms/conf/model_config/llama2-70B.json")
        #expect(r.scalingRuleFilePath == "/abs/scaling.json")
        #expect(r.processManager.filePath == "/opt/ms/logs/controller_process_status.json")
        #expect(r.tls.httpServer.items?.tlsCrl == "")
    }
}
