import Foundation
import Testing
import TestSupport
@testable import Control
import MSCore

/// The Controller's part of a rendered PD cluster (issue 19): it lists its pods itself, with the least RBAC, and no
/// one writes a rank table for it.
@Suite struct DiscoveryManifestTests {
    static func object(_ objs: [KubeObject], _ ref: String) -> JSON? { objs.first { $0.ref == ref }?.body }

    @Test("the rendered Controller config discovers app=<name> pods; the spec's own instance_discovery keys win")
    func controllerConfig() throws {
        let objs = Manifests.build(try spec("mindie_pd_cluster", name: "pd"))
        let text = try #require(Self.object(objs, "ConfigMap/pd-controller-config")?.at("data", "config.json")?.stringValue)
        let cfg = try JSON.parse(Data(text.utf8))
        #expect(cfg["instance_discovery"] == jo(["source": "kubernetes", "label_selector": "app=pd", "role_label": "mindie-ms/role"]))
        #expect(Manifests.controllerDiscoversPods(try spec("mindie_pd_cluster", name: "pd")))
        let own = try spec("mindie_pd_cluster", name: "pd", ["pd_cluster.controller_config": ["instance_discovery": ["source": "rank_table"]]])
        let ownText = Self.object(Manifests.build(own), "ConfigMap/pd-controller-config")?.at("data", "config.json")?.stringValue ?? ""
        #expect(try JSON.parse(Data(ownText.utf8)).at("instance_discovery", "source") == js("rank_table"))
        #expect(!Manifests.controllerDiscoversPods(own))
    }

    @Test("RBAC: the Controller's Role reads pods (get/list/watch) and nothing else; it knows its namespace")
    func rbac() throws {
        let objs = Manifests.build(try spec("mindie_pd_cluster", name: "pd"), namespace: "serving")
        #expect(Self.object(objs, "Role/pd-ms")?["rules"] == ja([
            jo(["apiGroups": ja([js("")]), "resources": ja([js("pods")]), "verbs": ja([js("get"), js("list"), js("watch")])]),
        ]))
        let binding = try #require(Self.object(objs, "RoleBinding/pd-ms"))
        #expect(binding["subjects"] == ja([jo(["kind": "ServiceAccount", "name": "pd-ms", "namespace": "serving"])]))
        let pod = try #require(Self.object(objs, "Deployment/pd-controller")?.at("spec", "template", "spec"))
        #expect(pod["serviceAccountName"] == js("pd-ms") && pod["automountServiceAccountToken"] == jb(true))
        let env = pod["containers"]?.arrayValue?.first?["env"]?.arrayValue ?? []
        #expect(env.contains(jo(["name": js("POD_NAMESPACE"), "valueFrom": jo(["fieldRef": jo(["fieldPath": js("metadata.namespace")])])])))
        // the other pods get no token
        for d in ["Deployment/pd-coordinator", "Deployment/pd-prefill", "Deployment/pd-decode"] {
            #expect(Self.object(objs, d)?.at("spec", "template", "spec", "automountServiceAccountToken") == jb(false))
        }
    }

    @Test("msctl render prints the Namespace first, so kubectl apply works on a fresh cluster")
    func renderNamespace() {
        let f = write(specJSON("mindie_pd_cluster", name: "pd"), to: tempDir("render").appendingPathComponent("pd.json"))
        let o = MsctlClient.render(file: f, namespace: "lab", environment: [:], configChecks: startChecks)
        #expect(o.exitCode == 0)
        let docs = o.stdout.components(separatedBy: "---\n").filter { !$0.isEmpty }
        #expect(docs.first?.contains("kind: Namespace") == true && docs.first?.contains("name: lab") == true)
        #expect(docs.dropFirst().allSatisfy { $0.contains("namespace: lab") })
    }

    @Test("ms_deployer does not write the rank table of a PD cluster whose Controller discovers its pods")
    func deployerLeavesTheTable() async throws {
        let h = try Harness()
        defer { h.stop() }
        let created = await h.msctl(.create(file: h.specFile("p.json", specJSON("mindie_pd_cluster", name: "pd"))))
        #expect(created.exitCode == 0, "\(created)")
        #expect(await h.server.service.reconcile() == [])
        let table = h.fake.object("configmaps", "mindie", "pd-global-ranktable")?.at("data", "global_ranktable.json")?.stringValue
        #expect(table?.contains("initializing") == true)
    }
}
