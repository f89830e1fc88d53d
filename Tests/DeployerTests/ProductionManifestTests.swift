import Foundation
import Testing
import TestSupport
@testable import Control
import MSCore

/// Issue 14 item 4: the PD manifests follow production practice, with defaults an operator can override.
@Suite struct ProductionManifestTests {
    func objects(_ overrides: [String: Any] = [:]) throws -> [KubeObject] {
        Manifests.build(try spec("mindie_pd_cluster", name: "pd", overrides))
    }

    func body(_ objs: [KubeObject], _ ref: String) throws -> JSON { try #require(objs.first { $0.ref == ref }?.body) }

    @Test("the Coordinator: alone by default (it holds every D's /dresult link) and replaced, probes on its status port, named ports, scrape annotations, not root")
    func coordinator() throws {
        let objs = try objects()
        let d = try body(objs, "Deployment/pd-coordinator")
        #expect(d.at("spec", "replicas") == ji(1))
        #expect(d.at("spec", "strategy") == jo(["type": js("Recreate")]))
        let c = try #require(d.at("spec", "template", "spec", "containers")?.arrayValue?.first)
        for (probe, path) in [("startupProbe", "/v1/startup"), ("livenessProbe", "/v1/health"), ("readinessProbe", "/v1/readiness")] {
            #expect(c.at(probe, "httpGet") == jo(["path": js(path), "port": js("status")]), "\(probe)")
        }
        #expect((c.at("livenessProbe", "failureThreshold")?.intValue ?? 0) >= 3)
        let ports = c["ports"]?.arrayValue?.compactMap { p in p["name"]?.stringValue.map { ($0, p["containerPort"]?.intValue ?? 0) } } ?? []
        #expect(ports.map(\.0) == ["infer", "manage", "metrics", "status"] && ports.map(\.1) == [1025, 1026, 1028, 1029])
        #expect(d.at("spec", "template", "metadata", "annotations", "prometheus.io/scrape") == js("true"))
        #expect(d.at("spec", "template", "spec", "securityContext", "runAsNonRoot") == jb(true))
        #expect(c.at("securityContext", "readOnlyRootFilesystem") == jb(true))
        #expect(try body(objs, "Service/pd-infer").at("spec", "ports")?.arrayValue?.first?["targetPort"] == js("infer"))
    }

    @Test("the Controller has probes on its named port and stays a single Recreate replica")
    func controller() throws {
        let d = try body(try objects(), "Deployment/pd-controller")
        #expect(d.at("spec", "replicas") == ji(1) && d.at("spec", "strategy", "type") == js("Recreate"))
        let c = try #require(d.at("spec", "template", "spec", "containers")?.arrayValue?.first)
        #expect(c.at("livenessProbe", "httpGet", "port") == js("http") && c.at("readinessProbe", "httpGet", "path") == js("/v1/readiness"))
    }

    @Test("PodDisruptionBudgets for the Coordinator, P and D; P and D spread over nodes")
    func disruptionAndSpread() throws {
        let objs = try objects()
        for comp in ["coordinator", "prefill", "decode"] {
            let pdb = try body(objs, "PodDisruptionBudget/pd-\(comp)")
            #expect(pdb.at("spec", "maxUnavailable") == ji(1) && pdb.at("spec", "selector", "matchLabels", Manifests.roleLabel) == js(comp))
        }
        for role in ["prefill", "decode"] {
            let pod = try body(objs, "Deployment/pd-\(role)").at("spec", "template", "spec")
            #expect(pod?.at("affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution") != nil)
            #expect(pod?["topologySpreadConstraints"]?.arrayValue?.first?["labelSelector"] == jo(["matchLabels": jo([Manifests.roleLabel: role])]))
        }
    }

    @Test("priority class, tolerations and the Coordinator's replica count come from the spec")
    func overrides() throws {
        let tol: [[String: Any]] = [["key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"]]
        let backup: [String: Any] = ["backup_config": ["function_enable": true]]
        let objs = try objects(["pd_cluster.priority_class_name": "high-priority", "pd_cluster.tolerations": tol,
                                "pd_cluster.coordinator_replicas": 3, "pd_cluster.coordinator_config": backup])
        for d in objs where d.kind == .deployment {
            #expect(d.body.at("spec", "template", "spec", "priorityClassName") == js("high-priority"), "\(d.ref)")
            #expect(d.body.at("spec", "template", "spec", "tolerations")?.arrayValue?.count == 1, "\(d.ref)")
        }
        #expect(try body(objs, "Deployment/pd-coordinator").at("spec", "replicas") == ji(3))
        // several Coordinators are master/standby through etcd, only the master Ready: a rollout keeping one available
        // could never remove the master (HAManifestTests.rollout)
        #expect(try body(objs, "Deployment/pd-coordinator").at("spec", "strategy")
                == jo(["type": js("RollingUpdate"), "rollingUpdate": jo(["maxUnavailable": js("100%"), "maxSurge": ji(1)])]))
        // without backup mode two active Coordinators would take the D's /dresult links from each other
        #expect {
            try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.coordinator_replicas": 2])
        } throws: { e in
            (e as? DeployerError)?.message.contains("backup_config.function_enable") == true
        }
        #expect(throws: DeployerError.self) { try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.priority_class_name": "High_Priority"]) }
        #expect(throws: DeployerError.self) { try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.tolerations": "x"]) }
        #expect(throws: DeployerError.self) { try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.coordinator_replicas": 0]) }
    }

    @Test("max_surge and max_unavailable both 0% is refused (the API server would refuse the Deployment)", arguments: ["mindie_single_node", "mindie_pd_cluster"])
    func zeroZero(type: String) throws {
        #expect {
            try spec(type, name: "s", ["max_surge": "0%", "max_unavailable": "0%"])
        } throws: { e in
            (e as? DeployerError)?.message.contains("cannot both be 0%") == true
        }
        _ = try spec(type, name: "s", ["max_surge": "0%", "max_unavailable": "100%"])
        _ = try spec(type, name: "s", ["max_surge": "25%", "max_unavailable": "0%"])
    }
}
