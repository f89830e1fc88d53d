import Foundation
import Testing
import TestSupport
@testable import Control
import MSCore

/// Golden manifests: `Tests/DeployerTests/Golden/*`. Regenerate with `UPDATE_GOLDEN=1 swift test --filter DeployerTests`
/// and review the diff.
@Suite struct ManifestGoldenTests {
    static let goldenDir = packageRoot.appendingPathComponent("Tests/DeployerTests/Golden")

    func checkGolden(_ name: String, _ text: String) throws {
        let url = Self.goldenDir.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        let golden = try String(contentsOf: url, encoding: .utf8)
        #expect(text == golden, "\(name) differs from its golden file (UPDATE_GOLDEN=1 to regenerate)")
    }

    static func json(_ objs: [KubeObject]) -> String { ja(objs.map(\.body)).serialized(indent: 2) + "\n" }

    @Test func singleNode() throws {
        let s = try spec("mindie_single_node", ["scheduler": "volcano"])
        let objs = Manifests.build(s)
        #expect(objs.map(\.ref) == ["Deployment/mindie-server", "Service/mindie-server"])
        try checkGolden("single_node.json", Self.json(objs))
        try checkGolden("single_node.yaml", YAML.render(objs))
    }

    @Test func crossNode() throws {
        let objs = Manifests.build(try spec("mindie_cross_node"))
        #expect(objs.map(\.ref) == ["ConfigMap/rings-config-mindie-server-deployment-0", "Deployment/mindie-server-deployment-0",
                                    "Service/mindie-server-service"])
        try checkGolden("cross_node.json", Self.json(objs))
    }

    @Test func pdCluster() throws {
        let objs = Manifests.build(try spec("mindie_pd_cluster", name: "pd"))
        #expect(objs.map(\.ref) == [
            "ServiceAccount/pd-ms", "Role/pd-ms", "RoleBinding/pd-ms", "ConfigMap/pd-global-ranktable", "ConfigMap/pd-coordinator-config",
            "ConfigMap/pd-controller-config", "ConfigMap/pd-server-config", "Deployment/pd-coordinator", "Deployment/pd-controller",
            "Deployment/pd-prefill", "Deployment/pd-decode", "PodDisruptionBudget/pd-coordinator", "PodDisruptionBudget/pd-prefill",
            "PodDisruptionBudget/pd-decode", "Service/pd-infer",
        ])
        try checkGolden("pd_cluster.json", Self.json(objs))
        try checkGolden("pd_cluster.yaml", YAML.render(objs))
    }

    /// `pd_cluster.ha`: two Controllers and two Coordinators on one etcd (issue 15 "Deploy").
    @Test func pdClusterHA() throws {
        let objs = Manifests.build(try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.ha": ["etcd_address": "etcd.mindie.svc:2379"]]))
        try checkGolden("pd_cluster_ha.yaml", YAML.render(objs))
    }

    /// `pd_cluster.ha.etcd`: the same with a 3-member etcd StatefulSet rendered beside it.
    @Test func pdClusterHAWithEtcd() throws {
        let objs = Manifests.build(try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.ha": ["etcd": ["replicas": 3]]]))
        try checkGolden("pd_cluster_ha_etcd.yaml", YAML.render(objs))
    }

    /// docs/wire/deployer.md §7 case 19.
    @Test func singleNodeFacts() throws {
        let s = try spec("mindie_single_node", ["scheduler": "volcano"])
        let objs = Manifests.build(s)
        let d = objs[0].body
        let c = d.at("spec", "template", "spec", "containers")?.arrayValue?.first
        #expect(c?.at("resources", "requests", "memory") == js("256000Mi"))
        #expect(c?.at("resources", "limits", "memory") == js("512000Mi"))
        #expect(c?.at("resources", "requests", "cpu") == js("32000m"))
        #expect(c?.at("resources", "limits", "cpu") == js("64000m"))
        #expect(c?.at("resources", "limits", "huawei.com/Ascend910") == js("8"))
        #expect(c?.at("startupProbe", "failureThreshold") == ji(180))
        #expect(d.at("spec", "template", "metadata", "labels", "fault-scheduling") == js("grace"))
        #expect(d.at("spec", "template", "spec", "schedulerName") == js("volcano"))
        #expect(d.at("spec", "strategy", "rollingUpdate", "maxSurge") == js("50%"))
        let mounts = c?["volumeMounts"]?.arrayValue ?? []
        #expect(mounts.prefix(4).map { $0["readOnly"] } == [jb(true), jb(true), jb(true), jb(false)])
        #expect(objs[1].body.at("spec", "ports")?.arrayValue?.first?["nodePort"] == ji(31005))
    }

    @Test func everyDerivedNameFitsKubernetes() throws {
        let long = String(repeating: "a", count: 48)
        for type in ["mindie_single_node", "mindie_cross_node", "mindie_pd_cluster"] {
            for o in Manifests.build(try spec(type, name: long)) {
                #expect(o.name.count <= (o.kind == .service ? 63 : 253), "\(o.ref)")
                for case .object(let labels)? in [o.body.at("metadata", "labels"), o.body.at("spec", "template", "metadata", "labels")] {
                    for (_, v) in labels { #expect((v.stringValue ?? "").count <= 63, "\(o.ref) label \(v.rendered)") }
                }
            }
        }
    }

    @Test func yamlQuotesWhatWouldChangeType() {
        let y = YAML.render(jo(["a": js("true"), "b": js("8"), "c": js("plain-text"), "d": ji(3), "e": js("x: y"), "f": js("line1\nline2\n")]))
        #expect(y == "a: \"true\"\nb: \"8\"\nc: plain-text\nd: 3\ne: \"x: y\"\nf: |\n  line1\n  line2\n")
        #expect(YAML.render(jo(["l": ja([jo(["name": js("x"), "v": ji(1)]), js("s")])])) == "l:\n- name: x\n  v: 1\n- s\n")
    }

    @Test func globalRankTableFollowsPods() throws {
        let s = try spec("mindie_pd_cluster", name: "pd")
        let partial = GlobalRankTable.build(spec: s, pods: [.init(name: "pd-coordinator-1", role: "coordinator", ip: "10.0.0.1")])
        #expect(partial["status"] == js("initializing"))
        let pods: [GlobalRankTable.Pod] = [
            .init(name: "c", role: "coordinator", ip: "10.0.0.1"), .init(name: "k", role: "controller", ip: "10.0.0.2"),
            .init(name: "p1", role: "prefill", ip: "10.0.0.3"), .init(name: "p2", role: "prefill", ip: "10.0.0.4"),
            .init(name: "d1", role: "decode", ip: "10.0.0.5"),
        ]
        let t = GlobalRankTable.build(spec: s, pods: pods)
        #expect(t["status"] == js("completed"))
        let groups = t["server_group_list"]?.arrayValue ?? []
        #expect(groups.map { $0["server_count"] } == [js("1"), js("1"), js("3")])
        #expect(groups[2]["server_list"]?.arrayValue?.first?["device"]?.arrayValue?.count == 2)
    }
}
