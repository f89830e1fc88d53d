import Foundation
import Testing

@testable import Control
import MSCore

/// A MindIE user's existing files must load unchanged (reference-conf/README.md).
@Suite("reference files load unchanged")
struct ReferenceConfTests {
    @Test("the reference ms_controller.json loads, as shipped and with its TLS switches off")
    func referenceControllerConfig() throws {
        let data = try Paths.reference("ms_controller.json")
        let shipped = try ControllerConfig(data: data, environment: [:])
        #expect(shipped.tls.requestCoordinator.enabled && shipped.tls.alarm.enabled)

        var json = try JSON.parse(data)
        for name in ControllerConfig.TLSConfig.requiredNames + ControllerConfig.TLSConfig.optionalNames {
            json = json.setting(["tls_config", name + "_tls_enable"], to: .bool(false))
        }
        let c = try ControllerConfig(data: json.data, environment: [:])
        // Identical to our own conf/ms_controller.json: same keys, same defaults.
        #expect(c == (try loadConfig()))
        #expect(c.tls.alarm.items?.caCert == "./security/alarm_server/security/certs/ca.pem")
        #expect(shipped.tls.httpServer.items?.tlsKey == "./security/http_server/security/keys/cert.key.pem")
    }

    @Test("our conf/ms_controller.json has exactly the reference's keys and values, TLS switches aside")
    func sameKeys() throws {
        func flatten(_ v: JSON, _ prefix: String = "") -> JSON.Object {
            guard let o = v.objectValue else { return [prefix: v] }
            var out: JSON.Object = [:]
            for (k, x) in o { out.merge(flatten(x, prefix.isEmpty ? k : prefix + "." + k)) { a, _ in a } }
            return out
        }
        let ref = flatten(try JSON.parse(try Paths.reference("ms_controller.json")))
        let ours = flatten(try ourControllerJSON())
        #expect(Set(ref.keys) == Set(ours.keys))
        for (k, v) in ref where !k.hasSuffix("_tls_enable") {
            #expect(ours[k] == v, "\(k)")
        }
        for (k, v) in ours where k.hasSuffix("_tls_enable") { #expect(v == .bool(false), "\(k)") }
    }

    static let models = ["llama2-70B", "llama2-7B", "pangupi-7B", "deepseek-v2-16B", "deepseek-v2-236B", "deepseek-tencent-1.4T"]

    @Test("reference and our model files load to the same values", arguments: models)
    func modelFiles(name: String) throws {
        let ref = try DigsModelConfig(data: try Paths.reference("model_config/\(name).json"), file: name)
        let ours = try DigsModelConfig(data: try Paths.ours("model_config/\(name).json"), file: name)
        #expect(ref == ours)
        #expect(ref.initializerRange == 0.02)
    }

    @Test("reference and our machine files load to the same values", arguments: ["800IA2", "800TA2"])
    func machineFiles(name: String) throws {
        let ref = try DigsMachineConfig(data: try Paths.reference("machine_config/\(name).json"), file: name)
        let ours = try DigsMachineConfig(data: try Paths.ours("machine_config/\(name).json"), file: name)
        #expect(ref == ours)
        #expect(ref.bwGB == 392 && ref.staticTransferDelay == 0.00001)
    }

    @Test("shipped model values (role model §6)")
    func shippedValues() throws {
        let m = try DigsModelConfig(data: try Paths.ours("model_config/llama2-70B.json"))
        #expect(m == DigsModelConfig(hiddenSize: 8192, intermediateSize: 28672, maxPositionEmbeddings: 4096,
                                     numAttentionHeads: 64, numHiddenLayers: 80, numKeyValueHeads: 8))
        let a2 = try DigsMachineConfig(data: try Paths.ours("machine_config/800IA2.json"))
        #expect(a2.tflops == 246 && a2.mbwTB == 0.8 && a2.memCapacity == 32 && a2.etaOOM == 0.9)
    }

    @Test("the reference global_rank_table.json loads: 1 coordinator, 2 instances, config ports")
    func referenceRankTable() throws {
        let config = try loadConfig()
        let t = try RankTable(data: try Paths.reference("global_rank_table.json"), options: .init(config: config))
        #expect(t.coordinatorIPs == ["127.0.0.1"])
        #expect(t.instances.map(\.ip) == ["127.0.0.2", "127.0.0.3"])
        #expect(t.instances.map(\.hostID) == ["127.0.0.1", "127.0.0.1"])
        #expect(t.instances.allSatisfy { $0.ports == InstancePorts(predict: 1025, mgmt: 1026, metric: 1027, interComm: nil) })
        #expect(t.instances.map(\.hardwareType) == ["800I A2(64G)", "800I A2(32G)"])
        #expect(t.instances[0].devices == [RankTable.Device(deviceID: 0, deviceIP: "127.0.0.2", deviceLogicalID: 0, rankID: 0)])
        // In heterogeneous mode the hardware types give the roles: 64G → D, 32G → P.
        let het = try RankTable(data: try Paths.reference("global_rank_table.json"),
                                options: .init(isHeterogeneous: true))
        #expect(het.instances.compactMap { $0.hardwareType.flatMap(RoleRatio.heterogeneousRole) } == [.decode, .prefill])
    }

    @Test("the reference files drive the automatic decision for its 2 instances: 1P1D")
    func referenceDecision() throws {
        let c = try loadConfig()
        let model = try DigsModelConfig(data: try Paths.reference("model_config/llama2-70B.json"))
        let machine = try DigsMachineConfig(data: try Paths.reference("machine_config/800IA2.json"))
        let t = try RankTable(data: try Paths.reference("global_rank_table.json"), options: .init(config: c))
        let tp = RoleRatio.tensorParallel(deviceCounts: t.instances.map(\.devices.count))
        let sim = LlamaSimulator(model: model, machine: machine, parameters: .init(
            prefillSLO: Double(c.digsPrefillSLO), decodeSLO: Double(c.digsDecodeSLO), tensorParallel: tp,
            pipelineParallel: c.digsPP))
        let a = sim.abilities(inputLength: c.digsRequestSummaryInputLength, outputLength: c.digsRequestSummaryOutputLength)
        let counts = try RoleRatio.automatic(instanceCount: t.instances.count, abilities: a, inputLength: 3000, outputLength: 200)
        #expect(counts == RoleCounts(prefill: 1, decode: 1))
    }
}

@Suite("elastic scaling rule and HA keys")
struct ElasticScalingAndHATests {
    // docs/wire/controller.md §12 test 31 (template part).
    @Test("the reference elastic_scaling.json gives expected P=2, D=1")
    func referenceElasticScaling() throws {
        let rule = try #require(ElasticScalingRule(data: try Paths.reference("elastic_scaling.json")))
        #expect(rule.expectedPrefill == 2 && rule.expectedDecode == 1)
    }

    @Test("an invalid elastic scaling file is skipped (nil)")
    func invalidElasticScaling() throws {
        let base = try JSON.parse(try Paths.reference("elastic_scaling.json"))
        #expect(ElasticScalingRule(data: base.setting("elastic_scaling_list", to: .array([])).data) == nil)
        #expect(ElasticScalingRule(data: base.setting("elastic_scaling_list", to: nil).data) == nil)
        let oneGroup: JSON = .object(["elastic_scaling_list": .array([.object([
            "group_list": .array([.object(["group_name": "group0", "group_num": "2"])])])])])
        #expect(ElasticScalingRule(data: oneGroup.data) == nil)
        let noNum: JSON = .object(["elastic_scaling_list": .array([.object([
            "group_list": .array([.object(["group_name": "group0"]), .object(["group_num": "1"])])])])])
        #expect(ElasticScalingRule(data: noNum.data) == nil)
    }

    // docs/wire/controller.md §12 test 26 (renew interval).
    @Test("the keepalive interval is clamp(ttl/2, 1, 10): 0→1, 10→5, 20→10, 100→10")
    func renewInterval() {
        #expect([0, 10, 20, 100].map(HAElection.keepaliveInterval(ttl:)) == [1, 5, 10, 10])
    }

    @Test("etcd keys get the /<POD_NAMESPACE> prefix")
    func keys() {
        #expect(HAElection.leaderLockKey(namespace: nil) == "/cluster/leader-lock")
        #expect(HAElection.leaderLockKey(namespace: "mindie") == "/mindie/cluster/leader-lock")
        #expect(HAElection.nodeDataKey(namespace: "") == "/controller/node-data")
        #expect(HAElection.switchFaultsKey(namespace: "ns") == "/ns/controller/switch-faults")
    }
}
