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

    @Test("the lock keys are prefixed with the server's name, so two clusters can share one etcd")
    func clusterName() throws {
        let objs = try objects()
        for role in ["controller", "coordinator"] {
            let env = try body(objs, "Deployment/pd-\(role)").at("spec", "template", "spec", "containers")?.arrayValue?.first?["env"]?.arrayValue ?? []
            #expect(env.contains(Manifests.envValue(HAKeys.clusterNameVariable, "pd")), "\(role)")
        }
        // HA off: no name (no etcd)
        let plain = try objects([:])
        let env = try body(plain, "Deployment/pd-coordinator").at("spec", "template", "spec", "containers")?.arrayValue?.first?["env"]?.arrayValue ?? []
        #expect(!env.contains { $0["name"] == js(HAKeys.clusterNameVariable) })
    }

    @Test("the Coordinator's grace period covers its drain: drain_timeout plus the stop, no preStop hook")
    func grace() throws {
        for (drain, want) in [(nil, 45), (60, 75)] as [(Int?, Int)] {
            var o: [String: Any] = ["pd_cluster.ha": Self.ha]
            if let drain { o["pd_cluster.coordinator_config"] = ["exception_config": ["drain_timeout": drain]] }
            let pod = try #require(try body(objects(o), "Deployment/pd-coordinator").at("spec", "template", "spec"))
            #expect(pod["terminationGracePeriodSeconds"] == ji(want))
            #expect(pod["containers"]?.arrayValue?.first?["lifecycle"] == nil)
        }
    }

    @Test("several etcd members: both configs list them, as the binaries parse them")
    func members() throws {
        let objs = try objects(["pd_cluster.ha": ["etcd_address": "etcd-0.etcd:2379,etcd-1.etcd:2379,10.0.0.7:2381"]])
        let coordinator = try CoordinatorConfig.parse(try #require(PDConfigTests.configMap(objs, "pd-coordinator-config")))
        #expect(coordinator.backup.databaseServerDNS == "etcd-0.etcd:2379,etcd-1.etcd:2379,10.0.0.7:2381")
        #expect(EtcdClient.Endpoint.list(coordinator.backup.databaseServerDNS, defaultPort: coordinator.backup.databaseServerPort)
                == [.init(host: "etcd-0.etcd", port: 2379), .init(host: "etcd-1.etcd", port: 2379), .init(host: "10.0.0.7", port: 2381)])
        let controller = try ControllerConfig(data: Data(try #require(PDConfigTests.configMap(objs, "pd-controller-config"))),
                                              environment: ["POD_IP": "10.1.2.3", "GLOBAL_RANK_TABLE_FILE_PATH": Manifests.rankTablePath])
        #expect(controller.backup.databaseServerDNS == coordinator.backup.databaseServerDNS)
    }

    @Test("pd_cluster.ha.etcd renders an etcd StatefulSet whose members the configs name", arguments: [1, 3])
    func renderedEtcd(replicas: Int) throws {
        let objs = try objects(["pd_cluster.ha": ["etcd": ["replicas": replicas, "storage": "2Gi"]]])
        let set = try body(objs, "StatefulSet/pd-etcd")
        #expect(set.at("spec", "replicas") == ji(replicas) && set.at("spec", "serviceName") == js("pd-etcd"))
        #expect(set.at("spec", "podManagementPolicy") == js("Parallel"))
        #expect(set.at("spec", "volumeClaimTemplates")?.arrayValue?.first?.at("spec", "resources", "requests", "storage") == js("2Gi"))
        let args = set.at("spec", "template", "spec", "containers")?.arrayValue?.first?["args"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let peers = (0..<replicas).map { "pd-etcd-\($0)=http://pd-etcd-\($0).pd-etcd:2380" }.joined(separator: ",")
        #expect(args.contains("--initial-cluster=\(peers)"))
        let svc = try body(objs, "Service/pd-etcd")
        #expect(svc.at("spec", "clusterIP") == js("None") && svc.at("spec", "publishNotReadyAddresses") == jb(true))
        #expect(objs.contains { $0.ref == "PodDisruptionBudget/pd-etcd" } == (replicas == 3))
        let coordinator = try CoordinatorConfig.parse(try #require(PDConfigTests.configMap(objs, "pd-coordinator-config")))
        let members = (0..<replicas).map { EtcdClient.Endpoint(host: "pd-etcd-\($0).pd-etcd", port: 2379) }
        #expect(EtcdClient.Endpoint.list(coordinator.backup.databaseServerDNS, defaultPort: coordinator.backup.databaseServerPort) == members)
        // created before the workloads that use it, and swept with the rest
        #expect(objs.firstIndex { $0.ref == "StatefulSet/pd-etcd" }! < objs.firstIndex { $0.ref == "Deployment/pd-controller" }!)
        #expect(Manifests.ownedKinds.contains(.statefulSet))
        #expect(set.at("metadata", "labels", Manifests.instanceLabel) == js("pd"))
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
        (#"{}"#, "pd_cluster.ha needs exactly one of etcd_address"),
        (#"{"etcd_address":"e:2379","etcd":{}}"#, "pd_cluster.ha needs exactly one of etcd_address"),
        (#"{"etcd_address":"e:2379,"}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd_address":"e:2379,f"}"#, "pd_cluster.ha.etcd_address"),
        (#"{"etcd":{"replicas":2}}"#, "pd_cluster.ha.etcd.replicas must be 1 or 3"),
        (#"{"etcd":{"replicas":5}}"#, "pd_cluster.ha.etcd.replicas"),
        (#"{"etcd":{"storage":"1GB"}}"#, "pd_cluster.ha.etcd.storage"),
        (#"{"etcd":{"storage":"Gi"}}"#, "pd_cluster.ha.etcd.storage"),
        (#"{"etcd":{"image":""}}"#, "pd_cluster.ha.etcd.image"),
        (#"{"etcd":{"replica":3}}"#, "did you mean \"replicas\""),
        (#"{"etcd":3}"#, "pd_cluster.ha.etcd must be an object"),
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
