import Foundation
import MSCore

@testable import Control

/// A kube-apiserver stand-in for the Controller's pod discovery: HTTPS with a test CA, bearer-token
/// authentication (401 `Status` otherwise), `GET /api/v1/namespaces/<ns>/pods` with an equality `labelSelector`
/// (`k=v`, `k!=v`, `k`), a switch that makes every list fail with a given status, and stop/start on the same port
/// (an API-server restart).
final class FakePodAPI: @unchecked Sendable {
    struct State {
        /// Pods by namespace/name.
        var pods: JSON.Object = [:]
        var resourceVersion = 1000
        /// Every request target seen.
        var log: [String] = []
        /// When set, every list answers this status with a `Status` body.
        var failure: (status: Int, reason: String)?
    }

    let state = Locked(State())
    let token: String
    let tls: TLSConfiguration
    private(set) var port = 0
    private var server: HTTPServer?

    init(pki: URL, token: String) throws {
        self.token = token
        tls = TLSConfiguration(
            certificatePath: pki.appendingPathComponent("server.pem").path,
            privateKeyPath: pki.appendingPathComponent("server.key.pem").path, verifyPeer: false)
        // The port is taken below the kernel's ephemeral range (32768-60999 by default): the "API server down"
        // tests stop and restart on the same port, and while it is down any port-0 listener or outgoing connection
        // of the suites running beside them may be given an ephemeral port (this one was, once, on a loaded machine).
        var lastError: (any Error)?
        for _ in 0..<64 {
            port = Int.random(in: 20000..<32000)
            do { try start(); return } catch { lastError = error }
        }
        throw lastError!
    }

    /// Starts listening (again, on the same port after `stop()`).
    func start() throws {
        let state = self.state
        let token = self.token
        let s = try HTTPServer(
            configuration: .init(
                threads: 1, listeners: [HTTPListener(host: "127.0.0.1", port: port, tls: tls)],
                gracefulTimeoutMilliseconds: 200)
        ) { req, res in
            let (status, body) = Self.handle(req, state: state, token: token)
            res.respondJSON(status: status, body.serialized())
        }
        try s.start()
        server = s
        port = s.boundPorts[0]
    }

    func stop() {
        server?.shutdown()
        server?.waitUntilStopped()
        server = nil
    }

    // MARK: pods

    /// Adds or replaces a pod; `ip` nil = not scheduled yet (Pending, no podIP).
    func put(
        _ name: String, role: String, ip: String?, mgmtPort: Int? = nil, app: String = "demo", namespace: String = "mindie",
        phase: String? = nil, npus: Int? = nil
    ) {
        var annotations: JSON.Object = [:]
        if let mgmtPort { annotations[PodDiscovery.portAnnotations.mgmt] = .string(String(mgmtPort)) }
        var status: JSON.Object = ["phase": .string(phase ?? (ip == nil ? "Pending" : "Running"))]
        if let ip {
            status["podIP"] = .string(ip)
            status["hostIP"] = .string("192.168.7.1")
        }
        var resources: JSON.Object = [:]
        if let npus { resources["limits"] = .object(["huawei.com/Ascend910": .string(String(npus))]) }
        state.withLock { s in
            s.resourceVersion += 1
            s.pods["\(namespace)/\(name)"] = .object([
                "apiVersion": .string("v1"), "kind": .string("Pod"),
                "metadata": .object([
                    "name": .string(name), "namespace": .string(namespace),
                    "labels": .object(["app": .string(app), "mindie-ms/role": .string(role)]),
                    "annotations": .object(annotations), "resourceVersion": .string(String(s.resourceVersion)),
                ]),
                "spec": .object(["containers": .array([.object(["name": .string("c"), "resources": .object(resources)])])]),
                "status": .object(status),
            ])
        }
    }

    /// Marks a pod terminating (kubelet is stopping it; it still has its IP).
    func terminate(_ name: String, namespace: String = "mindie") {
        state.withLock { s in
            guard case .object(var o)? = s.pods["\(namespace)/\(name)"], case .object(var m)? = o["metadata"] else { return }
            m["deletionTimestamp"] = .string("2026-01-01T00:00:00Z")
            o["metadata"] = .object(m)
            s.pods["\(namespace)/\(name)"] = .object(o)
        }
    }

    func delete(_ name: String, namespace: String = "mindie") {
        _ = state.withLock { $0.pods.removeValue(forKey: "\(namespace)/\(name)") }
    }

    func fail(_ status: Int?, reason: String = "Expired") {
        state.withLock { $0.failure = status.map { ($0, reason) } }
    }

    var log: [String] { state.withLock { $0.log } }

    // MARK: handling

    static func statusBody(_ code: Int, _ reason: String, _ message: String) -> (Int, JSON) {
        (
            code,
            .object([
                "kind": .string("Status"), "apiVersion": .string("v1"), "status": .string("Failure"), "message": .string(message),
                "reason": .string(reason), "code": .int(Int64(code)),
            ])
        )
    }

    static func handle(_ req: HTTPRequest, state: Locked<State>, token: String) -> (Int, JSON) {
        state.withLock { $0.log.append(req.path + (req.query.map { "?" + $0 } ?? "")) }
        guard req.headers["authorization"] == "Bearer \(token)" else { return statusBody(401, "Unauthorized", "Unauthorized") }
        let parts = req.path.split(separator: "/").map(String.init)
        guard req.method == "GET", parts.count == 5, parts[0] == "api", parts[1] == "v1", parts[2] == "namespaces",
            parts[4] == "pods"
        else { return statusBody(404, "NotFound", "the server could not find the requested resource") }
        if let f = state.withLock({ $0.failure }) { return statusBody(f.status, f.reason, "fake failure \(f.status)") }
        let ns = parts[3]
        var selector = ""
        for pair in (req.query ?? "").split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.first == "labelSelector", kv.count == 2 { selector = (String(kv[1]).removingPercentEncoding ?? "") }
        }
        return state.withLock { s in
            var items = s.pods.filter { $0.key.hasPrefix(ns + "/") }.sorted { $0.key < $1.key }.map(\.value)
            for term in selector.split(separator: ",").map(String.init) where !term.isEmpty {
                func label(_ p: JSON, _ k: String) -> String? {
                    if case .string(let v)? = p["metadata"]?["labels"]?[k] { return v }
                    return nil
                }
                if let r = term.range(of: "!=") {
                    let k = String(term[..<r.lowerBound]), v = String(term[r.upperBound...])
                    items = items.filter { label($0, k) != v }
                } else if let r = term.range(of: "=") {
                    let k = String(term[..<r.lowerBound]), v = String(term[r.upperBound...]).replacingOccurrences(of: "=", with: "")
                    items = items.filter { label($0, k) == v }
                } else {
                    items = items.filter { label($0, term) != nil }
                }
            }
            return (
                200,
                .object([
                    "kind": .string("PodList"), "apiVersion": .string("v1"),
                    "metadata": .object(["resourceVersion": .string(String(s.resourceVersion))]), "items": .array(items),
                ])
            )
        }
    }
}

/// A fresh test PKI from the project's script (CA, server certificate for 127.0.0.1).
func makeTestPKI() throws -> URL {
    let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("pki-\(UUID().uuidString)")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = [Paths.packageRoot.appendingPathComponent("scripts/gen_test_pki.sh").path, dir.path]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    precondition(p.terminationStatus == 0, "gen_test_pki.sh failed")
    return dir
}
