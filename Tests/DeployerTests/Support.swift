import Foundation
import Logging
@testable import Control
import MSCore
import TestSupport

/// A fresh directory (0700) under the system temp dir.
func tempDir(_ tag: String) -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deployer-\(tag)-\(UUID().uuidString.prefix(8))")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    return dir
}

/// A test PKI from the project's script, with every file made 0400 so that the permission checks stay on.
func makePKI() throws -> URL {
    let dir = tempDir("pki")
    let r = try run("/bin/bash", [packageRoot.appendingPathComponent("scripts/gen_test_pki.sh").path, dir.path])
    precondition(r.status == 0, "gen_test_pki.sh failed: \(r.stderr)")
    for f in ["ca.pem", "server.pem", "client.pem", "crl.pem", "server.key.pem", "client.key.pem"] {
        chmod(dir.appendingPathComponent(f).path, 0o400)
    }
    return dir
}

/// Writes `text` with mode `mode`.
@discardableResult
func write(_ text: String, to url: URL, mode: mode_t = 0o640) -> String {
    _ = FileManager.default.createFile(atPath: url.path, contents: Data(text.utf8))
    chmod(url.path, mode)
    return url.path
}

let quietLogger: Logger = {
    var l = Logger(label: "deployer-test")
    l.logLevel = .critical
    return l
}()

/// The reference's infer_server.json as a single-node spec (TLS to MindIE off), with overrides.
func specJSON(_ type: String = "mindie_single_node", name: String = "mindie-server", _ overrides: [String: Any] = [:]) -> String {
    var d: [String: Any] = [
        "server_name": name, "replicas": 2, "service_port": 31005, "cross_node_num": 2, "service_type": "NodePort",
        "server_type": type, "scheduler": "default", "init_delay": 180, "detect_server_inner_error": true,
        "liveness_timeout": 10, "liveness_failure_threshold": 1, "readiness_timeout": 10, "readiness_failure_threshold": 1,
        "resource_requests": ["memory": 256000, "cpu_core": 32000, "npu_type": "Ascend910", "npu_chip_num": 8] as [String: Any],
        "mindie_server_config": ["mies_install_path": "/usr/local/Ascend/mindie/latest/mindie-service", "infer_port": 1025,
                                 "management_port": 1026, "enable_tls": false] as [String: Any],
        "npu_fault_reschedule": true, "termination_grace_period_seconds": 30, "max_unavailable": "50%", "max_surge": "50%",
    ]
    if type == "mindie_cross_node" { d["replicas"] = 1 }
    if type == "mindie_pd_cluster" {
        d["resource_requests"] = ["memory": 65536, "cpu_core": 16000, "npu_type": "Ascend910", "npu_chip_num": 2] as [String: Any]
        d["pd_cluster"] = ["prefill_replicas": 2, "decode_replicas": 1, "coordinator_config": ["http_config": ["port": 1025]],
                           "controller_config": [:] as [String: Any], "server_config": ["ServerConfig": ["port": 1025]]] as [String: Any]
    }
    for (k, v) in overrides {
        let path = k.split(separator: ".").map(String.init)
        if path.count == 2, var inner = d[path[0]] as? [String: Any] {
            if v is NSNull { inner[path[1]] = nil } else { inner[path[1]] = v }
            d[path[0]] = inner
        } else if v is NSNull {
            d[k] = nil
        } else {
            d[k] = v
        }
    }
    return String(decoding: try! JSONSerialization.data(withJSONObject: d, options: [.sortedKeys]), as: UTF8.self)
}

func spec(_ type: String = "mindie_single_node", name: String = "mindie-server", _ overrides: [String: Any] = [:]) throws -> InferServerSpec {
    try InferServerSpec.parse(body: Array(specJSON(type, name: name, overrides).utf8), mindieTLS: false)
}

/// A TCP port with nothing listening on it on any address (bound on 0.0.0.0, then closed).
func deadPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = 0
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    close(fd)
    return Int(UInt16(bigEndian: addr.sin_port))
}
