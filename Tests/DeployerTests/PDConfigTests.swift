import Foundation
import Gateway
import MSCore
import Testing
import TestSupport

@testable import Control

/// The real start-up checks, as ms_deployer and msctl wire them.
let startChecks = ComponentConfigChecks(coordinator: CoordinatorConfig.startRefusal)

/// A `mindie_pd_cluster` spec renders complete component configs that the binaries' own start-up parsers accept.
@Suite struct PDConfigTests {
    static func sample() throws -> [UInt8] {
        Array(try Data(contentsOf: packageRoot.appendingPathComponent("conf/infer_server_pd_cluster.json")))
    }

    static func configMap(_ objs: [KubeObject], _ name: String, _ key: String = "config.json") -> [UInt8]? {
        guard let obj = objs.first(where: { $0.kind == .configMap && $0.name == name }),
              case .string(let text)? = obj.body["data"]?[key] else { return nil }
        return Array(text.utf8)
    }

    @Test("the sample PD spec's ConfigMaps hold configs that ms_coordinator and ms_controller start with")
    func sampleStarts() throws {
        let spec = try InferServerSpec.parse(body: try Self.sample(), mindieTLS: false)
        try PDConfigs.check(spec, with: startChecks)
        let objs = Manifests.build(spec)
        let coordinator = try #require(Self.configMap(objs, "mindie-pd-coordinator-config"))
        #expect(CoordinatorConfig.startRefusal(coordinator) == nil)
        let parsed = try CoordinatorConfig.parse(coordinator)
        #expect(parsed.http.predictPort == Manifests.coordinatorInferPort && parsed.http.managePort == Manifests.coordinatorManagementPort)
        let controller = try #require(Self.configMap(objs, "mindie-pd-controller-config"))
        let c = try ControllerConfig(data: Data(controller), environment: ["POD_IP": "10.1.2.3", "GLOBAL_RANK_TABLE_FILE_PATH": Manifests.rankTablePath])
        #expect(c.deployMode == .pdSeparate)
        #expect(c.digsModelConfigPath == "/mnt/configmap/model_config.json")
        _ = try DigsModelConfig(data: Data(try #require(Self.configMap(objs, "mindie-pd-controller-config", "model_config.json"))))
        _ = try DigsMachineConfig(data: Data(try #require(Self.configMap(objs, "mindie-pd-controller-config", "machine_config.json"))))
        let server = try JSON.parse(Data(try #require(Self.configMap(objs, "mindie-pd-server-config"))))
        #expect(server["ServerConfig"]?["port"] == .int(1025) && server["ServerConfig"]?["managementPort"] == .int(1026))
    }

    @Test("the spec's overrides are merged over the defaults (other keys kept, null removes)")
    func overridesMerge() throws {
        let s = try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.coordinator_config": ["exception_config": ["max_retry": 2]],
                                                          "pd_cluster.controller_config": ["http_retries": 1]])
        let pd = try #require(s.pd)
        #expect(pd.coordinatorConfig["exception_config"]?["max_retry"] == .int(2))
        #expect(pd.coordinatorConfig["exception_config"]?["infer_timeout"] == .int(600))
        #expect(pd.controllerConfig["http_retries"] == .int(1))
        try PDConfigs.check(s, with: startChecks)
    }

    @Test("a config that would not start is refused, naming the section, the key and the rule", arguments: [
        ("pd_cluster.coordinator_config", #"{"request_limit":{"max_requests":0}}"#, "request_limit.max_requests"),
        ("pd_cluster.coordinator_config", #"{"http_config":{"predict_port":"2025"}}"#, "predict_port"),
        ("pd_cluster.coordinator_config", #"{"log_info":null}"#, "log_info"),
        ("pd_cluster.controller_config", #"{"default_p_rate":1000}"#, "default_p_rate"),
        ("pd_cluster.controller_config", #"{"mindie_server_port":2000}"#, "mindie_server_port"),
        ("pd_cluster.server_config", #"{"ServerConfig":{"managementPort":2026}}"#, "managementPort"),
        ("pd_cluster.digs_model_config", #"{"hidden_size":"x"}"#, "hidden_size"),
    ])
    func refused(section: String, override: String, key: String) throws {
        let patch = try JSONSerialization.jsonObject(with: Data(override.utf8))
        let s = try spec("mindie_pd_cluster", name: "pd", [section: patch])
        #expect {
            try PDConfigs.check(s, with: startChecks)
        } throws: { error in
            guard let e = error as? DeployerError else { return false }
            let sectionName = section == "pd_cluster.digs_model_config" ? "pd_cluster.controller_config" : section
            return e.status == 400 && e.message.contains(sectionName) && e.message.contains(key)
        }
    }

    @Test("msctl render refuses a spec whose configs would not start (exit 2, the reason on stderr)")
    func renderRefuses() throws {
        let dir = tempDir("pdcfg")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = write(specJSON("mindie_pd_cluster", name: "pd", ["pd_cluster.controller_config": ["deploy_mode": "nonsense"]]),
                        to: dir.appendingPathComponent("bad.json"))
        let o = MsctlClient.render(file: bad, namespace: "lab", environment: [:], configChecks: startChecks)
        #expect(o.exitCode == 2 && o.stdout.isEmpty && o.stderr.contains("deploy_mode"))
        let good = write(String(decoding: try Self.sample(), as: UTF8.self), to: dir.appendingPathComponent("good.json"))
        #expect(MsctlClient.render(file: good, namespace: "lab", environment: [:], configChecks: startChecks).exitCode == 0)
    }
}
