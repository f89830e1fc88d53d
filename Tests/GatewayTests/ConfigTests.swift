import Foundation
import Testing

@testable import Gateway
import MSCore

/// The package root, found from this file's path (Tests/GatewayTests/ConfigTests.swift).
private let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

private func readFile(_ relative: String) throws -> String {
    try String(contentsOf: packageRoot.appendingPathComponent(relative), encoding: .utf8)
}

/// Our shipped conf file, as text.
private func shippedConf() throws -> String { try readFile("conf/ms_coordinator.json") }

/// Replaces one exact occurrence of `old` in `text`, failing the test if it is not there exactly once.
private func replacingOnce(_ text: String, _ old: String, _ new: String,
                           sourceLocation: SourceLocation = #_sourceLocation) -> String {
    let parts = text.components(separatedBy: old)
    #expect(parts.count == 2, "expected exactly one \(old)", sourceLocation: sourceLocation)
    return parts.joined(separator: new)
}

private func parse(_ text: String, env: [String: String] = [:]) throws(ConfigError) -> CoordinatorConfig {
    try CoordinatorConfig.parse(Array(text.utf8), environment: env)
}

private func configError(_ text: String, env: [String: String] = [:]) -> ConfigError? {
    do {
        _ = try parse(text, env: env)
        return nil
    } catch {
        return error
    }
}

/// Flattens a JSON value into dotted key paths.
private func keyPaths(_ v: JSON, _ prefix: String = "") -> Set<String> {
    guard let members = v.objectValue else { return [prefix] }
    var out: Set<String> = []
    for (k, child) in members { out.formUnion(keyPaths(child, prefix.isEmpty ? k : prefix + "." + k)) }
    return out
}

@Suite("CoordinatorConfig")
struct ConfigTests {
    @Test("the reference's shipped ms_coordinator.json loads unchanged (TLS switched off in memory)")
    func referenceFileLoads() throws {
        var text = try readFile("../shared/reference-conf/ms_coordinator.json")
        let switches = text.components(separatedBy: "_tls_enable\": true").count - 1
        #expect(switches == 8)
        text = text.replacingOccurrences(of: "_tls_enable\": true", with: "_tls_enable\": false")
        let c = try parse(text)
        #expect(c.http.predictPort == 1025 && c.http.managePort == 1026 && c.http.alarmPort == 1027)
        #expect(c.http.externalPort == 1028 && c.http.statusPort == 1029)
        #expect(c.requestLimit.maxRequests == 10000 && c.requestLimit.singleNodeMaxRequests == 1000)
        #expect(c.requestLimit.bodyLimitMiB == 1)
        #expect(c.scheduler.deployMode == .pdSeparate && c.scheduler.schedulerType == .digs)
        #expect(c.scheduler.algorithm == .loadBalance)
        #expect(c.scheduler.loadCostValues == [1, 0])
        #expect(c.scheduler.loadCostCoefficient == [0, 0.22, 1024, 24, 6, 0, 1, 0, 1])
        #expect(c.scheduler.resLimitRate == 1.1 && c.scheduler.selectType == 2)
        #expect(c.stringTokenRate == 4.02)
        #expect(c.tls.values.allSatisfy { !$0.enabled })
        #expect(c.tls["controller_server"]?.items.caCert == "./security/controller/security/certs/ca.pem")
        #expect(c.backup.databaseServerPort == 2379 && c.backup.functionEnable == false)
        #expect(c.exceptions.effectiveScheduleTimeout == 580)
    }

    @Test("the reference file with TLS on and its certificate paths also loads")
    func referenceFileWithTLSLoads() throws {
        let c = try parse(try readFile("../shared/reference-conf/ms_coordinator.json"))
        #expect(c.tls.count == 8 && c.tls.values.allSatisfy(\.enabled))
        #expect(c.tls["mindie_mangment"]?.items.tlsKey == "./security/mindie_mgmt/security/keys/cert.key.pem")
    }

    @Test("our conf file has the reference's keys, single_node, TLS off, and loads")
    func shippedConfMatchesReferenceKeys() throws {
        let ours = try JSON.parse(try shippedConf())
        let ref = try JSON.parse(try readFile("../shared/reference-conf/ms_coordinator.json"))
        #expect(keyPaths(ours) == keyPaths(ref))
        let c = try parse(try shippedConf())
        #expect(c.scheduler.deployMode == .singleNode)
        #expect(c.scheduler.schedulerType == .default && c.scheduler.algorithm == .roundRobin)
        #expect(c.tls.values.allSatisfy { !$0.enabled })
        #expect(c.http.predictIP == "127.0.0.1" && c.http.serverName == "MindIE-MS")
        // Same values as the reference apart from the demo switches.
        for path in keyPaths(ref) where !path.contains("_tls_enable")
            && !["digs_scheduler_config.deploy_mode", "digs_scheduler_config.scheduler_type",
                 "digs_scheduler_config.algorithm_type"].contains(path) {
            var a: JSON? = ours, b: JSON? = ref
            for k in path.split(separator: ".") { a = a?[String(k)]; b = b?[String(k)] }
            #expect(a == b, "\(path)")
        }
    }

    @Test("max_requests=0 in the file fails, naming key, value and range (case 40)")
    func maxRequestsZero() throws {
        let text = replacingOnce(try shippedConf(), "\"max_requests\": 10000", "\"max_requests\": 0")
        let e = try #require(configError(text))
        #expect(e == ConfigError(code: .outOfRange, file: "ms_coordinator.json", key: "request_limit.max_requests",
                                 value: "0", allowed: "integer 1...90000"))
        #expect(e.description == "ms_coordinator.json: request_limit.max_requests = 0: allowed integer 1...90000")
    }

    @Test("env MAX_REQ: \"0\" clamps to 90000 with a warning, \"abc\" is fatal, \"500\" applies (case 40)")
    func envOverrides() throws {
        let text = try shippedConf()
        let clamped = try parse(text, env: [CoordinatorConfig.maxReqEnv: "0"])
        #expect(clamped.requestLimit.maxRequests == 90000)
        #expect(clamped.warnings.count == 1)
        let single = try parse(text, env: [CoordinatorConfig.singleNodeMaxReqEnv: "20000"])
        #expect(single.requestLimit.singleNodeMaxRequests == 15000)
        let ok = try parse(text, env: [CoordinatorConfig.maxReqEnv: "500"])
        #expect(ok.requestLimit.maxRequests == 500 && ok.warnings.isEmpty)
        let e = try #require(configError(text, env: [CoordinatorConfig.maxReqEnv: "abc"]))
        #expect(e.file == "environment" && e.key == CoordinatorConfig.maxReqEnv && e.value == "abc")
    }

    @Test("load_cost_values \"1,1\" is rejected; \"1, 1\" is accepted (case 40)")
    func loadCostValues() throws {
        let ref = try readFile("../shared/reference-conf/ms_coordinator.json")
            .replacingOccurrences(of: "_tls_enable\": true", with: "_tls_enable\": false")
        let bad = replacingOnce(ref, "\"load_cost_values\": \"1, 0\"", "\"load_cost_values\": \"1,1\"")
        let e = try #require(configError(bad))
        #expect(e.key == "digs_scheduler_config.load_cost_values" && e.value == "\"1,1\"")
        #expect(e.allowed == "one of \"1, 0\", \"1, 1\"")
        let good = replacingOnce(ref, "\"load_cost_values\": \"1, 0\"", "\"load_cost_values\": \"1, 1\"")
        #expect(try parse(good).scheduler.loadCostValues == [1, 1])
    }

    @Test("binding 0.0.0.0 needs allow_all_zero_ip_listening (case 40)")
    func allZeroIP() throws {
        let text = replacingOnce(try shippedConf(), "\"predict_ip\": \"127.0.0.1\"", "\"predict_ip\": \"0.0.0.0\"")
        let e = try #require(configError(text))
        #expect(e.key == "http_config.predict_ip" && e.value == "\"0.0.0.0\"")
        let allowed = replacingOnce(text, "\"allow_all_zero_ip_listening\": false", "\"allow_all_zero_ip_listening\": true")
        #expect(try parse(allowed).http.predictIP == "0.0.0.0")
        let v6 = replacingOnce(try shippedConf(), "\"manage_ip\": \"127.0.0.1\"", "\"manage_ip\": \"::\"")
        #expect(configError(v6)?.key == "http_config.manage_ip")
        let bad = replacingOnce(try shippedConf(), "\"manage_ip\": \"127.0.0.1\"", "\"manage_ip\": \"1.2.3\"")
        #expect(configError(bad)?.allowed == "an IPv4 or IPv6 address")
        let goodV6 = replacingOnce(try shippedConf(), "\"manage_ip\": \"127.0.0.1\"", "\"manage_ip\": \"fe80::1\"")
        #expect(try parse(goodV6).http.manageIP == "fe80::1")
    }

    @Test("single_node + load_balance is rejected (case 40)")
    func singleNodeLoadBalance() throws {
        let text = replacingOnce(try shippedConf(), "\"algorithm_type\": \"round_robin\"", "\"algorithm_type\": \"load_balance\"")
        let e = try #require(configError(text))
        #expect(e.key == "digs_scheduler_config.algorithm_type")
        #expect(e.allowed.contains("\"round_robin\"") && !e.allowed.contains("load_balance"))
        let digs = replacingOnce(try shippedConf(), "\"scheduler_type\": \"default_scheduler\"", "\"scheduler_type\": \"digs_scheduler\"")
        #expect(configError(digs)?.key == "digs_scheduler_config.scheduler_type")
    }

    @Test("wrong types and ranges name the key", arguments: [
        ("\"predict_port\": \"1025\"", "\"predict_port\": 1025", "http_config.predict_port"),
        ("\"predict_port\": \"1025\"", "\"predict_port\": \"70000\"", "http_config.predict_port"),
        ("\"server_thread_num\": 10", "\"server_thread_num\": true", "http_config.server_thread_num"),
        ("\"server_thread_num\": 10", "\"server_thread_num\": 1.5", "http_config.server_thread_num"),
        ("\"body_limit\": 1", "\"body_limit\": 21", "request_limit.body_limit"),
        ("\"enable\": false", "\"enable\": 0", "metrics_config.enable"),
        ("\"reuse_time\": 3", "\"reuse_time\": 101", "prometheus_metrics_config.reuse_time"),
        ("\"max_retry\": 5", "\"max_retry\": 11", "exception_config.max_retry"),
        ("\"infer_timeout\": 600", "\"infer_timeout\": 65536", "exception_config.infer_timeout"),
        ("\"max_log_str_size\": 4096", "\"max_log_str_size\": 100", "log_info.max_log_str_size"),
        ("\"log_level\": \"INFO\"", "\"log_level\": \"LOUD\"", "log_info.log_level"),
        ("\"string_token_rate\": 4.02", "\"string_token_rate\": 0.5", "string_token_rate"),
        ("\"database_server_port\": 2379", "\"database_server_port\": 80", "backup_config.database_server_port"),
        ("\"cache_size\": \"100\"", "\"cache_size\": \"100\", \"x\": 1", ""),
    ])
    func wrongValues(old: String, new: String, key: String) throws {
        let text = replacingOnce(try shippedConf(), old, new)
        if key.isEmpty {
            #expect(configError(text) == nil)  // unknown extra keys are tolerated
        } else {
            #expect(configError(text)?.key == key)
        }
    }

    @Test("two listeners on one port are a config error naming both keys")
    func equalPorts() throws {
        let same = replacingOnce(try shippedConf(), "\"manage_port\": \"1026\"", "\"manage_port\": \"1025\"")
        let e = try #require(configError(same))
        #expect(e.key == "http_config.manage_port")
        #expect(e.allowed.contains("predict_port"))
        let status = replacingOnce(try shippedConf(), "\"status_port\": \"1029\"", "\"status_port\": \"1028\"")
        #expect(configError(status)?.key == "http_config.external_port")
        // alarm_port is the Controller's (a client port here): it may equal one of ours
        let alarm = replacingOnce(try shippedConf(), "\"alarm_port\": \"1027\"", "\"alarm_port\": \"1025\"")
        #expect(configError(alarm) == nil)
    }

    @Test("per-listener connection caps are read, range-checked and refuse unknown ports")
    func listenerCaps() throws {
        #expect(try parse(try shippedConf()).http.maxConnections.isEmpty)
        let caps = replacingOnce(try shippedConf(), "\"manage_ip\": \"127.0.0.1\"",
                                 "\"manage_ip\": \"127.0.0.1\", \"max_connections\": {\"data\": 5000, \"status\": 16}")
        #expect(try parse(caps).http.maxConnections == ["data": 5000, "status": 16])
        let zero = replacingOnce(try shippedConf(), "\"manage_ip\": \"127.0.0.1\"",
                                 "\"manage_ip\": \"127.0.0.1\", \"max_connections\": {\"management\": 0}")
        #expect(configError(zero)?.key == "http_config.max_connections.management")
        let typo = replacingOnce(try shippedConf(), "\"manage_ip\": \"127.0.0.1\"",
                                 "\"manage_ip\": \"127.0.0.1\", \"max_connections\": {\"metrics\": 10}")
        #expect(configError(typo)?.key == "http_config.max_connections.metrics")
    }

    @Test("a management port beyond loopback without TLS is warned about")
    func exposedManagementPort() throws {
        #expect(try parse(try shippedConf()).warnings.isEmpty)
        let open = replacingOnce(try shippedConf(), "\"manage_ip\": \"127.0.0.1\"", "\"manage_ip\": \"10.1.2.3\"")
        let c = try parse(open)
        #expect(c.warnings.contains { $0.contains("manage_port 1026 listens on 10.1.2.3 without TLS") })
        #expect(c.managementExposureWarning(manageIP: "127.0.0.1") == nil)
        var withTLS = c
        withTLS.tls["controller_server"]?.enabled = true
        #expect(withTLS.managementExposureWarning(manageIP: "10.1.2.3") == nil)
    }

    @Test("a missing mandatory key is reported as <missing>")
    func missingKey() throws {
        let text = replacingOnce(try shippedConf(), "\"user_agent\": \"Coordinator/1.0\"", "\"user_agent_x\": \"a\"")
        #expect(configError(text) == ConfigError(code: .missingKey, file: "ms_coordinator.json", key: "http_config.user_agent",
                                                 value: "<missing>", allowed: "a string"))
    }

    @Test("TLS items are required only when the switch is on")
    func tlsItems() throws {
        let on = replacingOnce(try shippedConf(), "\"status_tls_enable\": false", "\"status_tls_enable\": true")
        #expect(try parse(on).tls["status"]?.enabled == true)
        let empty = replacingOnce(on, "\"ca_cert\": \"./security/status/security/certs/ca.pem\"", "\"ca_cert\": \"\"")
        #expect(configError(empty)?.key == "tls_config.status_tls_items.ca_cert")
        // While the switch is off, the items may be incomplete or absent.
        let offEmpty = replacingOnce(try shippedConf(), "\"ca_cert\": \"./security/status/security/certs/ca.pem\"", "\"ca_cert\": 5")
        #expect(configError(offEmpty) == nil)
        let missingItems = replacingOnce(on, "\"status_tls_items\"", "\"status_tls_items_x\"")
        #expect(configError(missingItems)?.key == "tls_config.status_tls_items")
    }

    @Test("schedule timeout startup rule (case 17)", arguments: [
        (600, 600, 600, 580), (600, 2, 5, 0), (10, 600, 600, 10), (100, 600, 110, 90),
    ])
    func effectiveScheduleTimeout(schedule: Int, firstToken: Int, infer: Int, expected: Int) {
        var e = CoordinatorConfig.Exceptions()
        e.scheduleTimeout = schedule
        e.firstTokenTimeout = firstToken
        e.inferTimeout = infer
        #expect(e.effectiveScheduleTimeout == expected)
    }

    @Test("EnableDynamicAdjustTimeoutConfig is optional; when true the timeouts become 3600/3600/65536")
    func dynamicTimeouts() throws {
        #expect(try parse(try shippedConf()).enableDynamicAdjustTimeout == false)
        let on = replacingOnce(try shippedConf(), "\"string_token_rate\": 4.02", "\"string_token_rate\": 4.02, \"EnableDynamicAdjustTimeoutConfig\": true")
        let c = try parse(on)
        #expect(c.enableDynamicAdjustTimeout)
        let e = c.exceptions.dynamicallyAdjusted()
        #expect(e.scheduleTimeout == 3600 && e.firstTokenTimeout == 3600 && e.inferTimeout == 65536)
        #expect(e.tokenizerTimeout == 300)
        let bad = replacingOnce(try shippedConf(), "\"string_token_rate\": 4.02", "\"string_token_rate\": 4.02, \"EnableDynamicAdjustTimeoutConfig\": 1")
        #expect(configError(bad)?.key == "EnableDynamicAdjustTimeoutConfig")
    }

    @Test("cache_affinity and prefix_affinity keys are read and range-checked")
    func algorithmKeys() throws {
        let ca = replacingOnce(try shippedConf(), "\"algorithm_type\": \"round_robin\"", "\"algorithm_type\": \"cache_affinity\"")
        let c = try parse(ca)
        #expect(c.scheduler.algorithm == .cacheAffinity && c.scheduler.cacheSize == 100 && c.scheduler.slotsThresh == 0.05)
        let badSize = replacingOnce(ca, "\"cache_size\": \"100\"", "\"cache_size\": \"0\"")
        #expect(configError(badSize)?.key == "digs_scheduler_config.cache_size")
        let pa = replacingOnce(try shippedConf(), "\"algorithm_type\": \"round_robin\"",
                               "\"algorithm_type\": \"prefix_affinity\", \"prefix_block_size\": \"64\"")
        let p = try parse(pa)
        #expect(p.scheduler.algorithm == .prefixAffinity && p.scheduler.prefixBlockSize == 64)
        #expect(p.scheduler.prefixCacheBlocks == 8192 && p.scheduler.prefixLoadMargin == 8)
    }

    @Test("MINDIE_LOG_* override log_info")
    func logEnvironment() throws {
        let c = try parse(try shippedConf(), env: ["MINDIE_LOG_LEVEL": "llm: error; ms: debug", "MINDIE_LOG_TO_STDOUT": "0"])
        #expect(c.log.logLevel == "DEBUG" && c.log.toStdout == false)
        #expect(configError(try shippedConf(), env: ["MINDIE_LOG_TO_FILE": "maybe"])?.key == "MINDIE_LOG_TO_FILE")
    }

    @Test("a non-JSON file is a config error, not a crash")
    func notJSON() {
        #expect(configError("{\"http_config\": ")?.key == "<document>")
        #expect(configError("[1]")?.key == "<document>")
    }
}
