import Foundation
import Testing
import TestSupport
@testable import Control

@Suite struct SpecValidationTests {
    func refusal(_ body: String, mindieTLS: Bool = false, exists: Bool = false) -> DeployerError? {
        do {
            _ = try InferServerSpec.parse(body: Array(body.utf8), mindieTLS: mindieTLS, exists: { _ in exists })
            return nil
        } catch {
            return error
        }
    }

    @Test func referenceOrderAndMessages() {
        #expect(refusal("x") == DeployerError(400, "load config is not a valid json!"))
        #expect(refusal("[1]") == DeployerError(400, "load config is not a valid json!"))
        #expect(refusal(String(repeating: "[", count: 51) + String(repeating: "]", count: 51))?.message == "load config is not a valid json!")
        #expect(refusal("{\"a\":1}") == DeployerError(400, "load config not contain server_name!"))
        #expect(refusal("{\"server_name\":123}") == DeployerError(400, "load config not contain server_name!"))
        #expect(refusal("{\"server_name\":\"a.b\"}")?.message.hasPrefix("server_name must be a DNS-1123 label") == true)
        #expect(refusal("{\"server_name\":\"a\"}", exists: true) == DeployerError(409, "server with same name is already loaded"))
        #expect(refusal("{\"server_name\":\"a\"}") == DeployerError(400, "load config not contain server_type!"))
        #expect(refusal("{\"server_name\":\"a\",\"server_type\":\"foo\"}")?.message.hasPrefix("load config deploy_type is not") == true)
    }

    @Test(arguments: ["Mindie", "mindie_server", "-a", "a-", "9abc", "", String(repeating: "a", count: 49)])
    func serverNameMustBeADNSLabel(_ name: String) {
        #expect(!InferServerSpec.isValidServerName(name))
    }

    @Test func goodNames() {
        #expect(InferServerSpec.isValidServerName("mindie-server"))
        #expect(InferServerSpec.isValidServerName(String(repeating: "a", count: 48)))
        #expect(InferServerSpec.isValidServerName("a1"))
    }

    @Test func acceptsTheReferenceSpecs() throws {
        let single = try spec()
        #expect(single.replicas == 2 && single.maxSurge == "50%" && single.image == "mindie:server")
        let cross = try spec("mindie_cross_node")
        #expect(cross.crossNodeNum == 2)
        let pd = try spec("mindie_pd_cluster")
        #expect(pd.pd?.prefillReplicas == 2 && pd.replicas == 3)
    }

    /// docs/wire/deployer.md §7 cases 17/18: each bad field is refused (400) and named.
    @Test(arguments: [
        ("mindie_cross_node", "replicas", "\"1\""), ("mindie_cross_node", "replicas", "50"), ("mindie_cross_node", "cross_node_num", "3"),
        ("mindie_cross_node", "cross_node_num", "\"1\""), ("mindie_cross_node", "scheduler", "\"volcano\""), ("mindie_single_node", "scheduler", "\"default111\""),
        ("mindie_single_node", "init_delay", "9"), ("mindie_single_node", "init_delay", "1801"), ("mindie_single_node", "service_type", "\"NodePort11\""),
        ("mindie_single_node", "service_port", "50"), ("mindie_single_node", "service_port", "\"5555\""),
        ("mindie_single_node", "resource_requests.memory", "0.25"), ("mindie_single_node", "resource_requests.memory", "999"),
        ("mindie_single_node", "resource_requests.cpu_core", "256001"), ("mindie_single_node", "resource_requests.npu_type", "\"Ascend911\""),
        ("mindie_cross_node", "resource_requests.npu_chip_num", "4"), ("mindie_single_node", "mindie_server_config.infer_port", "1023"),
        ("mindie_single_node", "mindie_server_config.enable_tls", "true"), ("mindie_single_node", "mindie_server_config.mies_install_path", "\"Ascend911\""),
        ("mindie_single_node", "liveness_timeout", "601"), ("mindie_single_node", "readiness_failure_threshold", "11"),
        ("mindie_single_node", "max_surge", "50"), ("mindie_single_node", "max_surge", "\"%50\""), ("mindie_single_node", "max_unavailable", "\"101%\""),
        ("mindie_single_node", "max_unavailable", "\"5x%\""), ("mindie_single_node", "termination_grace_period_seconds", "3601"),
        ("mindie_single_node", "npu_fault_reschedule", "50"), ("mindie_single_node", "mindie_server_config", "null"),
        ("mindie_single_node", "image", "\"bad image\""), ("mindie_pd_cluster", "pd_cluster", "null"),
    ] as [(String, String, String)])
    func refusesABadField(_ type: String, _ key: String, _ valueJSON: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(valueJSON.utf8), options: .fragmentsAllowed)
        let body = specJSON(type, [key: value])
        let e = refusal(body)
        #expect(e?.status == 400, "\(key)=\(value)")
        #expect(e?.message.contains(key.split(separator: ".").last.map(String.init) ?? key) == true || key == "mindie_server_config", "\(e?.message ?? "accepted")")
    }

    @Test func percentEdgesAccepted() throws {
        #expect(try spec("mindie_single_node", ["max_surge": "0%", "max_unavailable": "100%"]).maxSurge == "0%")
    }
}
