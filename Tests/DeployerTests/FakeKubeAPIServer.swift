import Foundation
import Synchronization
@testable import Control
import MSCore

/// An in-process stand-in for kube-apiserver: objects by resource/namespace/name, label and field selectors,
/// Kubernetes `Status` errors (401/403/404/409/422), merge and strategic-merge patches (strategic approximated
/// by a JSON merge patch), and a tiny controller that keeps each Deployment's pods (Running, Ready, with IPs)
/// in step with its replicas and template.
final class FakeKubeAPIServer: @unchecked Sendable {
    struct Logged: Sendable {
        let method: String
        let path: String
        let query: String?
        let contentType: String?
    }

    struct State {
        var objects: JSON.Object = [:]
        var resourceVersion = 100
        var nextIP = 1
        var log: [Logged] = []
        /// Resources (e.g. "services") whose writes answer 403.
        var forbidden: Set<String> = []
        /// "resource/name" whose create answers 500.
        var failCreate: Set<String> = []
        /// "resource/name" whose delete answers 500.
        var failDelete: Set<String> = []
        /// Deployment name → the waiting reason its new pods' containers show (Pending, not ready) instead of running.
        var podsWaiting: [String: String] = [:]
    }

    let state = Mutex(State())
    let token: String?
    private var server: HTTPServer!
    private(set) var port = 0

    init(tls: TLSConfiguration? = nil, token: String? = nil) throws {
        self.token = token
        server = try HTTPServer(configuration: HTTPServerConfiguration(
            threads: 1, listeners: [HTTPListener(host: "127.0.0.1", port: 0, tls: tls)], gracefulTimeoutMilliseconds: 200),
            handler: { [unowned self] req, res in
                let (status, body) = self.handle(req)
                res.respondJSON(status: status, body.serialized())
            })
        try server.start()
        port = server.boundPorts[0]
    }

    func stop() { server.shutdown() }

    // MARK: inspection helpers for tests

    func object(_ resource: String, _ ns: String, _ name: String) -> JSON? {
        state.withLock { $0.objects["\(resource)/\(ns)/\(name)"] }
    }

    func names(_ resource: String, _ ns: String) -> [String] {
        state.withLock { s in s.objects.keys.filter { $0.hasPrefix("\(resource)/\(ns)/") }.map { String($0.split(separator: "/")[2]) }.sorted() }
    }

    var log: [Logged] { state.withLock { $0.log } }

    /// What kubelet does once a pod's containers start: every pod of the Deployment Running and Ready.
    func startPods(of deployment: String, _ ns: String) {
        state.withLock { s in
            s.podsWaiting[deployment] = nil
            for (k, pod) in s.objects where k.hasPrefix("pods/\(ns)/") && pod.at("metadata", "labels", "fake-owner")?.stringValue == deployment {
                let containers = (pod.at("status", "containerStatuses")?.arrayValue ?? []).map { c in
                    jo(["name": c["name"] ?? js("c"), "ready": jb(true), "state": jo(["running": jo(["startedAt": "2026-01-01T00:00:00Z"])])])
                }
                var p = pod.setting(["status", "phase"], to: js("Running"))
                p = p.setting(["status", "conditions"], to: ja([jo(["type": "Ready", "status": "True"])]))
                s.objects[k] = p.setting(["status", "containerStatuses"], to: ja(containers))
            }
        }
    }

    func set(_ resource: String, _ ns: String, _ name: String, _ value: JSON) {
        state.withLock { $0.objects["\(resource)/\(ns)/\(name)"] = value }
    }

    // MARK: request handling

    static func status(_ code: Int, _ reason: String, _ message: String, kind: String = "", name: String = "") -> (Int, JSON) {
        (code, jo(["kind": js("Status"), "apiVersion": js("v1"), "metadata": jo([:] as [String: String]), "status": js("Failure"),
                   "message": js(message), "reason": js(reason), "details": jo(["name": name, "kind": kind]), "code": ji(code)]))
    }

    static func percentDecode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            if c == 0x25, it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                it = it.dropFirst(2)
            } else if c == 0x2B {
                bytes.append(0x20)
            } else {
                bytes.append(c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static let resourceKinds = ["configmaps": ("ConfigMap", "v1"), "services": ("Service", "v1"), "pods": ("Pod", "v1"),
                                "serviceaccounts": ("ServiceAccount", "v1"), "deployments": ("Deployment", "apps/v1"), "statefulsets": ("StatefulSet", "apps/v1"),
                                "roles": ("Role", "rbac.authorization.k8s.io/v1"),
                                "rolebindings": ("RoleBinding", "rbac.authorization.k8s.io/v1"),
                                "poddisruptionbudgets": ("PodDisruptionBudget", "policy/v1")]

    func handle(_ req: HTTPRequest) -> (Int, JSON) {
        state.withLock { $0.log.append(Logged(method: req.method, path: req.path, query: req.query, contentType: req.headers["content-type"])) }
        if let token, req.headers["authorization"] != "Bearer \(token)" {
            return Self.status(401, "Unauthorized", "Unauthorized")
        }
        let parts = req.path.split(separator: "/").map(String.init)
        var rest: ArraySlice<String>
        var apiVersion: String
        if parts.first == "api", parts.count >= 3 {
            apiVersion = parts[1]
            rest = parts[2...]
        } else if parts.first == "apis", parts.count >= 4 {
            apiVersion = "\(parts[1])/\(parts[2])"
            rest = parts[3...]
        } else {
            return Self.status(404, "NotFound", "the server could not find the requested resource")
        }
        var ns: String?
        if rest.first == "namespaces", rest.count >= 3 {
            ns = rest[rest.startIndex + 1]
            rest = rest.dropFirst(2)
        }
        guard let resource = rest.first, let (kind, version) = Self.resourceKinds[resource], version == apiVersion else {
            return Self.status(404, "NotFound", "the server could not find the requested resource")
        }
        let name = rest.count > 1 ? rest[rest.startIndex + 1] : nil
        let forbidden = state.withLock { $0.forbidden.contains(resource) }
        if forbidden && req.method != "GET" {
            return Self.status(403, "Forbidden", "\(resource) is forbidden: User \"kubeclient\" cannot \(req.method.lowercased()) resource \"\(resource)\"",
                               kind: resource, name: name ?? "")
        }
        let body = req.body.isEmpty ? nil : try? JSON.parse(Data(req.body))
        return state.withLock { s in
            switch (req.method, name) {
            case ("GET", nil):
                return list(&s, resource: resource, kind: kind, version: version, ns: ns, query: req.queryItemsDecoded)
            case ("POST", nil):
                guard let ns else { return Self.status(405, "MethodNotAllowed", "create needs a namespace") }
                return create(&s, resource: resource, kind: kind, version: version, ns: ns, body: body)
            case ("GET", let n?):
                guard let ns, let o = s.objects["\(resource)/\(ns)/\(n)"] else {
                    return Self.status(404, "NotFound", "\(resource) \"\(n)\" not found", kind: resource, name: n)
                }
                return (200, o)
            case ("PATCH", let n?):
                guard let ns, let o = s.objects["\(resource)/\(ns)/\(n)"] else {
                    return Self.status(404, "NotFound", "\(resource) \"\(n)\" not found", kind: resource, name: n)
                }
                let ct = req.headers["content-type"] ?? ""
                guard ct == "application/merge-patch+json" || ct == "application/strategic-merge-patch+json" || ct == "application/json-patch+json" else {
                    return Self.status(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
                }
                guard let body, case .object = body else { return Self.status(400, "BadRequest", "patch body is not a JSON object") }
                var patched = o.merging(body)
                if let err = Self.validate(patched, resource: resource) { return err }
                s.resourceVersion += 1
                patched = patched.setting(["metadata", "resourceVersion"], to: js(String(s.resourceVersion)))
                if resource == "deployments", patched["spec"] != o["spec"] {
                    patched = patched.setting(["metadata", "generation"], to: .int((o.at("metadata", "generation")?.intValue ?? 1) + 1))
                }
                s.objects["\(resource)/\(ns)/\(n)"] = patched
                if resource == "deployments" { reconcilePods(&s, ns: ns, deployment: patched) }
                return (200, patched)
            case ("DELETE", let n?):
                guard let ns, s.objects["\(resource)/\(ns)/\(n)"] != nil else {
                    return Self.status(404, "NotFound", "\(resource) \"\(n)\" not found", kind: resource, name: n)
                }
                if s.failDelete.contains("\(resource)/\(n)") { return Self.status(500, "InternalError", "etcd is sulking") }
                s.objects["\(resource)/\(ns)/\(n)"] = nil
                if resource == "deployments" {
                    for k in s.objects.keys where k.hasPrefix("pods/\(ns)/") && s.objects[k]?.at("metadata", "labels", "fake-owner")?.stringValue == n {
                        s.objects[k] = nil
                    }
                }
                return (200, jo(["kind": js("Status"), "apiVersion": js("v1"), "status": js("Success"),
                                 "details": jo(["name": n, "kind": resource])]))
            default:
                return Self.status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            }
        }
    }

    func create(_ s: inout State, resource: String, kind: String, version: String, ns: String, body: JSON?) -> (Int, JSON) {
        guard let body, case .object = body else { return Self.status(400, "BadRequest", "the body is not a JSON object") }
        guard body["kind"]?.stringValue == kind, body["apiVersion"]?.stringValue == version else {
            return Self.status(400, "BadRequest", "the API version in the data (\(body["apiVersion"]?.rendered ?? "")) does not match the expected API version (\(version))")
        }
        if let bns = body.at("metadata", "namespace")?.stringValue, bns != ns {
            return Self.status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        }
        guard let name = body.at("metadata", "name")?.stringValue else {
            return Self.status(422, "Invalid", "\(kind) \"\" is invalid: metadata.name: Required value", kind: kind)
        }
        if let err = Self.validate(body, resource: resource) { return err }
        if s.failCreate.contains("\(resource)/\(name)") { return Self.status(500, "InternalError", "etcd is sulking") }
        let key = "\(resource)/\(ns)/\(name)"
        if s.objects[key] != nil {
            return Self.status(409, "AlreadyExists", "\(resource) \"\(name)\" already exists", kind: resource, name: name)
        }
        s.resourceVersion += 1
        var o = body.setting(["metadata", "namespace"], to: js(ns))
        o = o.setting(["metadata", "uid"], to: js(UUID().uuidString.lowercased()))
        o = o.setting(["metadata", "resourceVersion"], to: js(String(s.resourceVersion)))
        o = o.setting(["metadata", "creationTimestamp"], to: js("2026-01-01T00:00:00Z"))
        if resource == "deployments" { o = o.setting(["metadata", "generation"], to: ji(1)) }
        if resource == "pods", o.at("status", "podIP") == nil {
            o = o.setting(["status", "podIP"], to: js(nextIP(&s)))
        }
        s.objects[key] = o
        if resource == "deployments" { reconcilePods(&s, ns: ns, deployment: o) }
        return (201, o)
    }

    /// The checks of the real API server that matter here: DNS names, label syntax, required Deployment fields.
    static func validate(_ o: JSON, resource: String) -> (Int, JSON)? {
        let kind = o["kind"]?.stringValue ?? ""
        let name = o.at("metadata", "name")?.stringValue ?? ""
        func invalid(_ m: String) -> (Int, JSON) { status(422, "Invalid", "\(kind) \"\(name)\" is invalid: \(m)", kind: kind, name: name) }
        func label(_ s: String) -> Bool {
            s.count <= 63 && s.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
                && !s.hasPrefix("-") && !s.hasSuffix("-") && !s.isEmpty
        }
        let subdomainOK = name.count <= 253 && name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label(String($0)) }
        if resource == "services" {
            guard label(name), name.first?.isLetter == true else { return invalid("metadata.name: Invalid value: \"\(name)\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character") }
        } else if !subdomainOK {
            return invalid("metadata.name: Invalid value: \"\(name)\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'")
        }
        let labelMaps = [o.at("metadata", "labels"), o.at("spec", "template", "metadata", "labels"), o.at("spec", "selector", "matchLabels")]
        for case .object(let m)? in labelMaps {
            for (k, v) in m {
                guard case .string(let s) = v, s.count <= 63, s.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                    return invalid("metadata.labels: Invalid value: \"\(v.rendered)\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.' (key \(k))")
                }
            }
        }
        if resource == "deployments" {
            guard case .object(let sel)? = o.at("spec", "selector", "matchLabels"), case .object(let tl)? = o.at("spec", "template", "metadata", "labels"),
                  sel.allSatisfy({ tl[$0.key] == $0.value }) else {
                return invalid("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`")
            }
            guard let containers = o.at("spec", "template", "spec", "containers")?.arrayValue, !containers.isEmpty,
                  containers.allSatisfy({ $0["name"]?.stringValue != nil && $0["image"]?.stringValue != nil }) else {
                return invalid("spec.template.spec.containers: Required value")
            }
        }
        return nil
    }

    func nextIP(_ s: inout State) -> String {
        defer { s.nextIP += 1 }
        return "127.1.\(s.nextIP / 250).\(s.nextIP % 250 + 2)"
    }

    /// Pods of a Deployment: `replicas` of them for the current template (older templates' pods are replaced).
    func reconcilePods(_ s: inout State, ns: String, deployment d: JSON) {
        guard let dname = d.at("metadata", "name")?.stringValue else { return }
        let template = d.at("spec", "template") ?? .null
        var h = Hasher()
        h.combine(template.serialized())
        let hash = String(UInt64(bitPattern: Int64(h.finalize())) % 1_000_000_000, radix: 36)
        let want = d.at("spec", "replicas")?.intValue ?? 1
        let mine = s.objects.filter { $0.key.hasPrefix("pods/\(ns)/") && $0.value.at("metadata", "labels", "fake-owner")?.stringValue == dname }
        var current = mine.filter { $0.value.at("metadata", "labels", "pod-template-hash")?.stringValue == hash }.keys.sorted()
        for k in mine.keys where !current.contains(k) { s.objects[k] = nil }
        while current.count > want { s.objects[current.removeLast()] = nil }
        var i = 0
        while current.count < want {
            let podName = "\(dname)-\(hash)-\(i)"
            i += 1
            let key = "pods/\(ns)/\(podName)"
            if s.objects[key] != nil { continue }
            var labels = template.at("metadata", "labels")?.objectValue ?? [:]
            labels["pod-template-hash"] = js(hash)
            labels["fake-owner"] = js(dname)
            let waiting = s.podsWaiting[dname]
            let containers = (template.at("spec", "containers")?.arrayValue ?? []).map { c in
                waiting.map { why in
                    jo(["name": c["name"] ?? js("c"), "ready": jb(false), "state": jo(["waiting": jo(["reason": why, "message": "fake kubelet: \(why)"])])])
                } ?? jo(["name": c["name"] ?? js("c"), "ready": jb(true), "state": jo(["running": jo(["startedAt": "2026-01-01T00:00:00Z"])])])
            }
            s.resourceVersion += 1
            s.objects[key] = jo([
                "apiVersion": js("v1"), "kind": js("Pod"),
                "metadata": jo(["name": js(podName), "namespace": js(ns), "labels": .object(labels),
                                "annotations": template.at("metadata", "annotations") ?? jo([:] as [String: String]),
                                "resourceVersion": js(String(s.resourceVersion))]),
                "spec": template["spec"] ?? .null,
                "status": jo(["phase": js(waiting == nil ? "Running" : "Pending"), "podIP": js(nextIP(&s)), "hostIP": js("192.168.0.10"),
                              "conditions": ja([jo(["type": "Ready", "status": waiting == nil ? "True" : "False"])]), "containerStatuses": ja(containers)]),
            ])
            current.append(key)
        }
    }

    func list(_ s: inout State, resource: String, kind: String, version: String, ns: String?, query: [String: String]) -> (Int, JSON) {
        var items = s.objects.filter { k, _ in k.hasPrefix("\(resource)/") && (ns == nil || k.hasPrefix("\(resource)/\(ns!)/")) }
            .sorted { $0.key < $1.key }.map(\.value)
        if let sel = query["labelSelector"] {
            for term in sel.split(separator: ",").map(String.init) {
                if let r = term.range(of: "!=") {
                    let k = String(term[..<r.lowerBound]), v = String(term[r.upperBound...])
                    items = items.filter { $0.at("metadata", "labels", k)?.stringValue != v }
                } else if let r = term.range(of: "=") {
                    let k = String(term[..<r.lowerBound]), v = String(term[r.upperBound...]).replacingOccurrences(of: "=", with: "")
                    items = items.filter { $0.at("metadata", "labels", k)?.stringValue == v }
                } else {
                    items = items.filter { $0.at("metadata", "labels", term) != nil }
                }
            }
        }
        if let sel = query["fieldSelector"] {
            for term in sel.split(separator: ",") {
                let kv = term.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2 else { return Self.status(400, "BadRequest", "invalid field selector \(term)") }
                let path = kv[0].split(separator: ".").map(String.init)
                guard ["status.podIP", "metadata.name", "metadata.namespace", "status.phase"].contains(kv[0]) else {
                    return Self.status(400, "BadRequest", "field label not supported: \(kv[0])")
                }
                items = items.filter { item in
                    var v: JSON? = item
                    for p in path { v = v?[p] }
                    return v?.stringValue == kv[1]
                }
            }
        }
        return (200, jo(["kind": js("\(kind)List"), "apiVersion": js(version),
                         "metadata": jo(["resourceVersion": String(s.resourceVersion)]), "items": ja(items)]))
    }
}

extension HTTPRequest {
    /// Query items with percent-decoding (the apiserver decodes selectors).
    var queryItemsDecoded: [String: String] {
        guard let query else { return [:] }
        var out: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            out[FakeKubeAPIServer.percentDecode(kv[0])] = kv.count > 1 ? FakeKubeAPIServer.percentDecode(kv[1]) : ""
        }
        return out
    }
}
