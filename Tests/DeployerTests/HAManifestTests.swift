import Foundation
import Gateway
import MSCore
import Testing
import TestSupport

@testable import Control

/// Issue 15 "Deploy": `pd_cluster.ha` renders 2 Controllers and 2 Coordinators wired to one etcd.
@Suite struct HAManifestTests {
    static var ha: [String: Any] { ["etcd_address": "etcd.mindie.svc:2379", "lease_ttl_seconds": 8] }

    func objects(_ overrides: [String: Any] = ["pd_cluster.ha": HAManifestTests.ha]) throws -> [KubeObject] {
        let s = try spec("mindie_pd_cluster", name: "pd", overrides)
        try PDConfigs.check(s, with: startChecks)
        return Manifests.build(s)
    }

    func body(_ objs: [KubeObject], _ ref: String) throws -> MSCore.JSON { try #require(objs.first { $0.ref == ref }?.body) }

    @Test("the rendered configs start HA on the spec's etcd, as the binaries parse them")
    func configs() throws {
        let objs = try objects()
        let coordinator = try CoordinatorConfig.parse(try #require(PDConfigTests.configMap(objs, "pd-coordinator-config")))
        #expect(coordinator.backup.functionEnable && coordinator.backup.databaseServerDNS == "etcd.mindie.svc")
        #expect(coordinator.backup.databaseServerPort == 2379 && coordinator.backup.leaseTTLSeconds == 8)
        let controller = try ControllerConfig(data: Data(try #require(PDConfigTests.configMap(objs, "pd-controller-config"))),
                                              environment: ["POD_IP": "10.1.2.3", "GLOBAL_RANK_TABLE_FILE_PATH": Manifests.rankTablePath])
        #expect(controller.haEnabled && controller.backup.databaseServerDNS == "etcd.mindie.svc")
        #expect(controller.backup.databaseServerPort == 2379 && controller.backup.leaseTTLSeconds == 8)
        // without ha neither is on
        let plain = try objects([:])
        #expect(try CoordinatorConfig.parse(try #require(PDConfigTests.configMap(plain, "pd-coordinator-config"))).backup.functionEnable == false)
    }

    @Test("two Controllers and two Coordinators: one Ready (the standby's readiness is 503), none killed for standing by")
    func deployments() throws {
        let objs = try objects()
        for (role, port) in [("controller", "http"), ("coordinator", "status")] {
            let d = try body(objs, "Deployment/pd-\(role)")
            #expect(d.at("spec", "replicas") == ji(2), "\(role)")
            let c = try #require(d.at("spec", "template", "spec", "containers")?.arrayValue?.first)
            #expect(c.at("readinessProbe", "httpGet") == jo(["path": js("/v1/readiness"), "port": js(port)]), "\(role)")
            #expect(c.at("livenessProbe", "httpGet") == jo(["path": js("/v1/health"), "port": js(port)]), "\(role)")
            // one node's loss must leave a standby
            #expect(d.at("spec", "template", "spec", "affinity", "podAntiAffinity") != nil, "\(role)")
        }
        let env = try body(objs, "Deployment/pd-coordinator").at("spec", "template", "spec", "containers")?.arrayValue?.first?["env"]?.arrayValue ?? []
        #expect(env.contains(Manifests.envField("POD_NAMESPACE", "metadata.namespace")))
        #expect(try objects().contains { $0.ref == "PodDisruptionBudget/pd-prefill" })
    }

    @Test("the rollout of a component with one Ready pod can finish: minAvailable is 0, a new pod starts at once")
    func rollout() throws {
        let objs = try objects()
        for role in ["controller", "coordinator"] {
            let d = try body(objs, "Deployment/pd-\(role)")
            #expect(d.at("spec", "strategy") == jo(["type": js("RollingUpdate"),
                                                    "rollingUpdate": jo(["maxUnavailable": js("100%"), "maxSurge": ji(1)])]), "\(role)")
        }
        // a budget on the master/standby Coordinators would block every drain of the master (1 healthy of 2, 1 desired)
        #expect(!objs.contains { $0.ref == "PodDisruptionBudget/pd-coordinator" })
        // HA off: single, replaced
        let plain = try objects([:])
        for role in ["controller", "coordinator"] {
            let d = try body(plain, "Deployment/pd-\(role)")
            #expect(d.at("spec", "replicas") == ji(1) && d.at("spec", "strategy") == jo(["type": js("Recreate")]), "\(role)")
        }
        #expect(plain.contains { $0.ref == "PodDisruptionBudget/pd-coordinator" })
    }

    @Test("replica counts come from pd_cluster.ha")
    func replicas() throws {
        let objs = try objects(["pd_cluster.ha": ["etcd_address": "10.0.0.5:2379", "controller_replicas": 3, "coordinator_replicas": 4]])
        #expect(try body(objs, "Deployment/pd-controller").at("spec", "replicas") == ji(3))
        #expect(try body(objs, "Deployment/pd-coordinator").at("spec", "replicas") == ji(4))
    }

    @Test("bad HA values are refused, naming the key", arguments: [
        (#"{"etcd_address":"etcd"}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd_address":"etcd:80"}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd_address":"etcd:+2379"}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd_address":"et cd:2379"}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd_address":":2379"}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd_address":2379}"#, "pd_cluster.ha.etcd_address"),
        (#"{}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd_address":"e:2379","lease_ttl_seconds":1}"#, "pd_cluster.ha.lease_ttl_seconds"),
        (#"{"etcd_address":"e:2379","controller_replicas":1}"#, "pd_cluster.ha.controller_replicas"),
        (#"{"etcd_address":"e:2379","coordinator_replicas":1}"#, "pd_cluster.ha.coordinator_replicas"),
        (#"{"etcd_address":"e:2379","etcd_adress":"x"}"#, "did you mean \"etcd_address\""),
        (#""on""#, "pd_cluster.ha must be an object"),
    ])
    func refused(ha: String, key: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(ha.utf8), options: .fragmentsAllowed)
        #expect {
            try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.ha": value])
        } throws: { e in
            guard let e = e as? DeployerError else { return false }
            return e.status == 400 && e.message.contains(key)
        }
    }

    @Test("pd_cluster.ha is the one source of the HA sections and of the Coordinator count")
    func conflicts() throws {
        let cases: [([String: Any], String)] = [
            (["pd_cluster.coordinator_replicas": 2], "pd_cluster.coordinator_replicas"),
            (["pd_cluster.coordinator_config": ["backup_config": ["function_enable": true]]], "coordinator_config.backup_config"),
            (["pd_cluster.controller_config": ["controller_backup_cfg": ["function_sw": false]]], "controller_config.controller_backup_cfg"),
        ]
        for (extra, key) in cases {
            #expect {
                try spec("mindie_pd_cluster", name: "pd", extra.merging(["pd_cluster.ha": Self.ha]) { a, _ in a })
            } throws: { e in
                (e as? DeployerError)?.message.contains(key) == true
            }
        }
    }

    @Test("a replica count written 2.0 is refused, as the API server would")
    func fractional() throws {
        let text = specJSON("mindie_pd_cluster", name: "pd", ["pd_cluster.ha": ["etcd_address": "e:2379", "controller_replicas": 2]])
            .replacingOccurrences(of: "\"controller_replicas\":2", with: "\"controller_replicas\":2.0")
            .replacingOccurrences(of: "\"controller_replicas\" : 2", with: "\"controller_replicas\" : 2.0")
        #expect(text.contains("2.0"))
        #expect {
            try InferServerSpec.parse(body: Array(text.utf8), mindieTLS: false)
        } throws: { e in
            (e as? DeployerError)?.message.contains("pd_cluster.ha.controller_replicas must be an integer") == true
        }
    }
}
