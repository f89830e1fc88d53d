public import Foundation
public import Logging
public import MSCore

/// A reply of the Deployer's REST API: status code and the `{"data"?,"message","status"}` envelope.
public struct DeployerReply: Sendable, Equatable {
    public var status: Int
    public var message: String
    public var data: JSON?

    public init(_ status: Int, _ message: String, data: JSON? = nil) {
        self.status = status
        self.message = message
        self.data = data
    }

    public var json: JSON {
        var o: JSON.Object = ["message": .string(message), "status": .string((200..<300).contains(status) ? "0" : "1")]
        if let data { o["data"] = data }
        return .object(o)
    }

    public var body: String { json.serialized() }
}

/// The Deployer: create, update, get and delete inference services on Kubernetes, remembering them in the
/// status file. One actor serialises all changes.
public actor DeployerService {
    let kube: KubeClient
    let store: StatusStore
    let namespace: String
    let mindieTLS: Bool
    let logger: Logger
    let probe: MindieProbe?
    let configChecks: ComponentConfigChecks
    let now: @Sendable () -> Date
    private(set) var servers: [String: StatusStore.Entry] = [:]
    private var order: [String] = []
    /// Servers with a create, update or delete in flight (the actor is re-entered at every Kubernetes call).
    private var busy: Set<String> = []

    private func claim(_ name: String) -> DeployerReply? {
        if busy.contains(name) { return DeployerReply(409, "server \(name) is busy with another create, update or delete; try again") }
        busy.insert(name)
        return nil
    }

    public init(kube: KubeClient, store: StatusStore, namespace: String, mindieTLS: Bool, configChecks: ComponentConfigChecks,
                logger: Logger, restored: [StatusStore.Entry] = [], probe: MindieProbe? = nil,
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.kube = kube
        self.configChecks = configChecks
        self.probe = probe
        self.store = store
        self.namespace = namespace
        self.mindieTLS = mindieTLS
        self.logger = logger
        self.now = now
        for e in restored {
            servers[e.spec.serverName] = e
            order.append(e.spec.serverName)
        }
    }

    public var serverNames: [String] { order }

    private func persist() throws(DeployerError) {
        do { try store.save(order.compactMap { servers[$0] }) } catch {
            throw DeployerError(500, "failed to write the status file: \(error)")
        }
    }

    private static func kubeStatus(_ e: KubeError) -> Int {
        if case .conflict = e { return 409 }
        return 502
    }

    // MARK: create

    public func create(body: [UInt8]) async -> DeployerReply {
        let spec: InferServerSpec
        do {
            spec = try InferServerSpec.parse(body: body, mindieTLS: mindieTLS, exists: { [servers] in servers[$0] != nil })
            try PDConfigs.check(spec, with: configChecks)
        } catch {
            return DeployerReply(error.status, error.message)
        }
        if let refusal = claim(spec.serverName) { return refusal }
        defer { busy.remove(spec.serverName) }
        // objects left by an earlier create (a deployer killed mid-way, a rollback that failed) would collide one by one
        switch await leftovers(spec.serverName, namespace: namespace) {
        case .failure(let error): return DeployerReply(Self.kubeStatus(error), "Failed to create infer server!: cannot look for leftovers: \(error)")
        case .success(let found) where !found.isEmpty:
            return DeployerReply(409, "objects of an earlier \(spec.serverName) are still in namespace \(namespace) (" +
                                 found.map(\.ref).joined(separator: ", ") + "); remove them with `msctl delete infer_server -n \(spec.serverName)` " +
                                 "(it deletes everything labelled \(Manifests.instanceLabel)=\(spec.serverName)), then create again")
        case .success: break
        }
        // intent first: a deployer killed from here on restarts knowing the server, so delete/update/get work on it
        servers[spec.serverName] = StatusStore.Entry(namespace: namespace, spec: spec)
        order.append(spec.serverName)
        do { try persist() } catch {
            servers[spec.serverName] = nil
            order.removeAll { $0 == spec.serverName }
            return DeployerReply(error.status, error.message)
        }
        var created: [KubeObject] = []
        let root = Manifests.root(spec, namespace: namespace)
        var rootUID: String?
        for var obj in [root] + Manifests.build(spec, namespace: namespace) {
            if let rootUID { obj = Manifests.owned(obj, rootName: root.name, uid: rootUID) }
            do {
                let answer = try await kube.create(obj)
                if obj.name == root.name && obj.kind == root.kind {
                    rootUID = answer.at("metadata", "uid")?.stringValue
                    if rootUID == nil { logger.warning("the API server gave the root object no uid: objects are created without owner references") }
                }
                created.append(obj)
                logger.info("created", metadata: ["server": "\(spec.serverName)", "object": "\(obj.ref)"])
            } catch {
                logger.error("create failed", metadata: ["server": "\(spec.serverName)", "object": "\(obj.ref)", "error": "\(error)"])
                var leftovers: [String] = []
                for c in created.reversed() {
                    do { try await kube.delete(c.kind, namespace: c.namespace, name: c.name) } catch where !error.isNotFound {
                        leftovers.append("\(c.ref) (\(error))")
                    } catch {}
                }
                var msg = "\(Self.createFailure(spec.serverType, obj.kind)): \(obj.ref): \(error)"
                if leftovers.isEmpty {
                    servers[spec.serverName] = nil
                    order.removeAll { $0 == spec.serverName }
                    try? persist()
                } else {
                    // stay registered, so that the leftovers can be removed by name
                    msg += "; could not remove: " + leftovers.joined(separator: ", ") +
                        " (remove them with `msctl delete infer_server -n \(spec.serverName)`)"
                }
                return DeployerReply(Self.kubeStatus(error), msg)
            }
        }
        do { try persist() } catch { return DeployerReply(error.status, error.message) }
        return DeployerReply(200, "Creating the server!")
    }

    /// Objects labelled as this server's, of every kind a server can have.
    func leftovers(_ name: String, namespace ns: String) async -> Result<[KubeObject], KubeError> {
        var found: [KubeObject] = []
        for kind in Manifests.ownedKinds {
            let list: JSON
            do { list = try await kube.list(kind, namespace: ns, labelSelector: Manifests.selector(name)) } catch {
                return .failure(error)
            }
            for item in list["items"]?.arrayValue ?? [] {
                if let n = item.at("metadata", "name")?.stringValue { found.append(KubeObject(kind: kind, namespace: ns, name: n, body: item)) }
            }
        }
        return .success(found)
    }

    static func createFailure(_ type: ServerType, _ kind: KubeObject.Kind) -> String {
        switch (type, kind) {
        case (.singleNode, .deployment): "Deploy deployments failed"
        case (.singleNode, .service): "deploy services failed"
        case (.crossNode, .configMap): "failed to create ranktable ConfigMap!"
        case (.crossNode, .deployment): "failed to create deployment!"
        case (.crossNode, .service): "Failed to create service!"
        default: "Failed to create infer server!"
        }
    }

    // MARK: update

    /// DECISIONS 27: fields in the body are merged over the stored spec; changed objects are patched (a changed pod
    /// template rolls the Deployment); an unchanged spec restarts the pods as the reference does.
    public func update(body: [UInt8]) async -> DeployerReply {
        let doc: JSON
        do { doc = try InferServerSpec.parseDocument(body) } catch { return DeployerReply(error.status, error.message) }
        guard case .string(let name)? = doc["server_name"], !name.isEmpty else {
            return DeployerReply(400, "update json does not include server name.")
        }
        guard servers[name] != nil else { return DeployerReply(404, "server to be updated is not existing") }
        if let refusal = claim(name) { return refusal }
        defer { busy.remove(name) }
        guard let entry = servers[name] else { return DeployerReply(404, "server to be updated is not existing") }
        let old = entry.spec
        // before validation: a changed type would otherwise be reported as the new type's missing fields
        if let t = doc["server_type"], t != .string(old.serverType.rawValue) {
            return DeployerReply(400, "update failed: server_type cannot be changed by update (\(name) is \(old.serverType.rawValue), " +
                                 "the update asks for \(t.rendered)); delete the server and create it again")
        }
        let mergedDoc = old.document.merging(doc)
        let new: InferServerSpec
        do {
            new = try InferServerSpec.validate(mergedDoc, mindieTLS: mindieTLS)
            try PDConfigs.check(new, with: configChecks)
        } catch {
            return DeployerReply(error.status, "update failed: \(error.message)")
        }
        guard new.serverType == old.serverType else { return DeployerReply(400, "update failed: server_type cannot be changed by update") }
        if new.serverType == .crossNode && new != old {
            return DeployerReply(400, "cross node mode does not support update yet")
        }
        let oldObjs = Dictionary(uniqueKeysWithValues: ([Manifests.root(old, namespace: entry.namespace)] + Manifests.build(old, namespace: entry.namespace))
            .map { ("\($0.ref)", $0) })
        let newRoot = Manifests.root(new, namespace: entry.namespace)
        let newObjs = [newRoot] + Manifests.build(new, namespace: entry.namespace)
        var rootUID: String?
        var changed = 0
        var recreated: [String] = []
        for obj in newObjs {
            do {
                guard let before = oldObjs[obj.ref] else {
                    rootUID = try await createOwned(obj, root: newRoot, rootUID: rootUID)
                    changed += 1
                    continue
                }
                let diff = Self.mergeDiff(before.body, obj.body)
                if case .object(let d) = diff, d.isEmpty {
                    // unchanged in the spec, but deleted behind our back: recreate it rather than report success
                    if let current = try await kube.getIfExists(obj.kind, namespace: obj.namespace, name: obj.name) {
                        if obj.ref == newRoot.ref { rootUID = current.at("metadata", "uid")?.stringValue }
                    } else {
                        rootUID = try await createOwned(obj, root: newRoot, rootUID: rootUID)
                        recreated.append(obj.ref)
                        if obj.ref != newRoot.ref { changed += 1 }
                    }
                    continue
                }
                do {
                    let answer = try await kube.patch(obj.kind, namespace: obj.namespace, name: obj.name, patch: diff, strategic: false,
                                                      fieldManager: "ms_deployer")
                    if obj.ref == newRoot.ref { rootUID = answer.at("metadata", "uid")?.stringValue }
                } catch where error.isNotFound {
                    rootUID = try await createOwned(obj, root: newRoot, rootUID: rootUID)  // lost meanwhile: recreate it
                    recreated.append(obj.ref)
                }
                if obj.ref != newRoot.ref { changed += 1 }
            } catch {
                return DeployerReply(Self.kubeStatus(error), "update with model or images changed failed. \(obj.ref): \(error)")
            }
        }
        // objects the new spec no longer renders (pd_cluster.ha drops the Coordinator's PodDisruptionBudget, which would
        // otherwise stay and block every drain of the master)
        let newRefs = Set(newObjs.map(\.ref))
        for obj in oldObjs.values.sorted(by: { ($0.kind.createRank, $0.name) > ($1.kind.createRank, $1.name) }) where !newRefs.contains(obj.ref) {
            do {
                try await kube.delete(obj.kind, namespace: obj.namespace, name: obj.name)
                logger.info("deleted: no longer part of the server", metadata: ["server": "\(name)", "object": "\(obj.ref)"])
            } catch where error.isNotFound {
            } catch {
                return DeployerReply(Self.kubeStatus(error), "update with model or images changed failed. \(obj.ref) (no longer rendered) " +
                                     "could not be removed: \(error)")
            }
            changed += 1
        }
        if changed == 0 {
            // Nothing changed: a rolling restart of every Deployment (the reference's update).
            let stamp = Self.restartStamp(now())
            for obj in newObjs where obj.kind == .deployment {
                let patch = jo(["spec": jo(["template": jo(["metadata": jo(["annotations": jo(["kubectl.kubernetes.io/restartedAt": stamp])])])])])
                do { _ = try await kube.patch(.deployment, namespace: obj.namespace, name: obj.name, patch: patch, fieldManager: "kubectl-rollout") } catch {
                    return DeployerReply(Self.kubeStatus(error), "update with model or images changed failed. \(obj.ref): \(error)")
                }
            }
        }
        servers[name] = StatusStore.Entry(namespace: entry.namespace, spec: new)
        do { try persist() } catch { return DeployerReply(error.status, error.message) }
        if !recreated.isEmpty {
            return DeployerReply(200, "update server success.", data: jo(["recreated": ja(recreated.map(js))]))
        }
        return DeployerReply(200, "update server success.")
    }

    /// Creates `obj`, owned by the root when its uid is known; returns the root's uid (learnt when `obj` is the root).
    private func createOwned(_ obj: KubeObject, root: KubeObject, rootUID: String?) async throws(KubeError) -> String? {
        let answer = try await kube.create(rootUID.map { Manifests.owned(obj, rootName: root.name, uid: $0) } ?? obj)
        return obj.ref == root.ref ? answer.at("metadata", "uid")?.stringValue : rootUID
    }

    static func restartStamp(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        return f.string(from: d)
    }

    /// The RFC 7386 merge patch that turns `old` into `new` (removed keys become null, lists are replaced).
    static func mergeDiff(_ old: JSON, _ new: JSON) -> JSON {
        guard case .object(let o) = old, case .object(let n) = new else { return new }
        var d: JSON.Object = [:]
        for (k, v) in n {
            if let ov = o[k] {
                if ov == v { continue }
                if case .object = ov, case .object = v { d[k] = mergeDiff(ov, v) } else { d[k] = v }
            } else {
                d[k] = v
            }
        }
        for k in o.keys where n[k] == nil { d[k] = .null }
        return .object(d)
    }

    // MARK: get

    public func get(name: String, target: String) async -> DeployerReply {
        guard let entry = servers[name] else { return DeployerReply(404, "Cannot find the resource \(target)") }
        let spec = entry.spec
        let pods: JSON
        do { pods = try await kube.list(.pod, namespace: entry.namespace, labelSelector: "app=\(name)") } catch {
            return DeployerReply(502, "Service is not exist. \(error)")
        }
        guard let items = pods["items"]?.arrayValue else { return DeployerReply(502, "Pod items is invalid") }
        let sorted = items.sorted { ($0.at("metadata", "name")?.stringValue ?? "") < ($1.at("metadata", "name")?.stringValue ?? "") }
        // Ask each running MindIE Server pod's management port, all at once.
        var probes: [String: MindieProbe.Result] = [:]
        if let probe {
            let targets: [(String, String)] = sorted.compactMap { item in
                guard let podName = item.at("metadata", "name")?.stringValue, item.at("status", "phase")?.stringValue == "Running",
                      let ip = item.at("status", "podIP")?.stringValue, IPAddress.isValid(ip) else { return nil }
                let role = item.at("metadata", "labels", Manifests.roleLabel)?.stringValue
                guard role == nil || role == "prefill" || role == "decode" else { return nil }
                return (podName, ip)
            }
            let port = spec.managementPort
            probes = await withTaskGroup(of: (String, MindieProbe.Result).self) { group in
                for (podName, ip) in targets { group.addTask { (podName, await probe.probe(ip: ip, port: port)) } }
                var out: [String: MindieProbe.Result] = [:]
                for await (podName, r) in group { out[podName] = r }
                return out
            }
        }
        var instances: [JSON] = []
        var modelInfo: JSON = .null
        for item in sorted {
            guard let podName = item.at("metadata", "name")?.stringValue else { continue }
            let phase = item.at("status", "phase")?.stringValue ?? "Unknown"
            let conditions = item.at("status", "conditions")?.arrayValue ?? []
            var ready = conditions.contains { $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True" }
            let statuses = item.at("status", "containerStatuses")?.arrayValue ?? []
            var live = phase == "Running" && !statuses.isEmpty && statuses.allSatisfy { $0.at("state", "running") != nil }
            var o: JSON.Object = ["pod_name": js(podName), "phase": js(phase)]
            if let ip = item.at("status", "podIP")?.stringValue { o["pod_ip"] = js(ip) }
            if let role = item.at("metadata", "labels", Manifests.roleLabel)?.stringValue { o["role"] = js(role) }
            var message: String?
            if let r = probes[podName] {
                if let why = r.unreachable {
                    message = "management port not reachable from ms_deployer (\(why)); readiness and liveness from Kubernetes"
                } else {
                    ready = r.ready
                    live = r.live
                    if let info = r.info { modelInfo = info } else { message = "get mindie_server info failed." }
                }
            }
            if phase != "Running" { message = "This server is not Running now." }
            else if !ready { message = "this mindie_server is not ready." }
            else if !live { message = "this mindie_server is not live." }
            o["readiness"] = jb(ready)
            o["liveness"] = jb(live)
            if let message { o["message"] = js(message) }
            instances.append(.object(o))
        }
        let readyCount = instances.filter { $0["readiness"] == .bool(true) }.count
        let state = await rolloutState(entry, pods: sorted.filter { $0.at("metadata", "deletionTimestamp") == nil }, ready: readyCount)
        var data: JSON.Object = [
            "server_name": js(name), "server_type": js(spec.serverType.rawValue), "namespace": js(entry.namespace),
            "replicas": ji(Self.expectedPods(spec)), "ready_replicas": ji(readyCount),
            "instances_status": ja(instances), "model_info": modelInfo,
        ]
        // drift: objects of the spec that are gone from Kubernetes (`update` recreates them)
        state.fill(&data)
        if spec.serverType == .pdCluster {
            let table = GlobalRankTable.build(spec: spec, pods: GlobalRankTable.pods(fromList: pods))
            data["rank_table_status"] = table["status"]
        }
        return DeployerReply(200, "success", data: .object(data))
    }

    /// Pods a server runs when all is well.
    static func expectedPods(_ s: InferServerSpec) -> Int {
        switch s.serverType {
        case .singleNode: s.replicas
        case .crossNode: s.crossNodeNum
        case .pdCluster: (s.pd?.prefillReplicas ?? 0) + (s.pd?.decodeReplicas ?? 0) + (s.pd?.coordinatorReplicas ?? 1) + 1
        }
    }

    /// Every managed server with its summary (no management-port probes: readiness is Kubernetes').
    public func list() async -> DeployerReply {
        var rows: [JSON] = []
        for name in order {
            guard let e = servers[name] else { continue }
            var row: JSON.Object = ["server_name": js(name), "server_type": js(e.spec.serverType.rawValue), "namespace": js(e.namespace),
                                            "replicas": ji(Self.expectedPods(e.spec))]
            do {
                let pods = try await kube.list(.pod, namespace: e.namespace, labelSelector: "app=\(name)")
                let items = (pods["items"]?.arrayValue ?? []).filter { $0.at("metadata", "deletionTimestamp") == nil }
                let ready = items.filter(Self.podIsReady).count
                row["ready_replicas"] = ji(ready)
                await rolloutState(e, pods: items, ready: ready).fill(&row)
            } catch {
                row["status"] = js("Unknown")
                row["reason"] = js("cannot list its pods: \(error)")
            }
            rows.append(.object(row))
        }
        return DeployerReply(200, "success", data: ja(rows))
    }

    static func podIsReady(_ pod: JSON) -> Bool {
        pod.at("status", "phase")?.stringValue == "Running"
            && (pod.at("status", "conditions")?.arrayValue ?? []).contains { $0["type"]?.stringValue == "Ready" && $0["status"]?.stringValue == "True" }
    }

    /// A server's state as a person (and `msctl --wait`) reads it (docs/wire/deployer.md §2 "Status").
    struct RolloutState: Sendable {
        var status: String
        var reason: String?
        var created: String?
        var missing: [String]

        func fill(_ data: inout JSON.Object) {
            data["status"] = js(status)
            if let reason { data["reason"] = js(reason) }
            if let created { data["created"] = js(created) }
            data["missing_objects"] = ja(missing.map(js))
        }
    }

    /// Container waiting reasons that do not heal by waiting (kubelet retries them, but a person has to act).
    static let fatalWaitingReasons: Set<String> = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                                                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff"]

    /// Failed > Degraded > Ready > Progressing, from the spec's objects (missing ones, Deployment rollouts and
    /// conditions) and the pods (`pods` without terminating ones; `ready` as `get` counted them).
    func rolloutState(_ entry: StatusStore.Entry, pods: [JSON], ready: Int) async -> RolloutState {
        let spec = entry.spec
        let root = Manifests.root(spec, namespace: entry.namespace)
        var missing: [String] = [], created: String?, failure: String?, pending: String?
        for obj in [root] + Manifests.build(spec, namespace: entry.namespace) {
            let current: JSON?
            do { current = try await kube.getIfExists(obj.kind, namespace: obj.namespace, name: obj.name) } catch {
                logger.warning("cannot check an object", metadata: ["server": "\(spec.serverName)", "object": "\(obj.ref)", "error": "\(error)"])
                continue
            }
            guard let current else {
                missing.append(obj.ref)
                continue
            }
            if obj.ref == root.ref { created = current.at("metadata", "creationTimestamp")?.stringValue }
            guard obj.kind == .deployment || obj.kind == .statefulSet else { continue }
            for c in current.at("status", "conditions")?.arrayValue ?? [] {
                let type = c["type"]?.stringValue, st = c["status"]?.stringValue
                if (type == "Progressing" && st == "False") || (type == "ReplicaFailure" && st == "True") {
                    failure = failure ?? "\(obj.ref): \(c["reason"]?.stringValue ?? type ?? ""): \(c["message"]?.stringValue ?? "")"
                }
            }
            // kubectl rollout status: the controller has seen this generation and replaced every old pod
            let want = current.at("spec", "replicas")?.intValue ?? 1
            if let status = current["status"], case .object = status {
                let generation = current.at("metadata", "generation")?.intValue ?? 0
                if let seen = status["observedGeneration"]?.intValue, seen < generation {
                    pending = pending ?? "\(obj.ref): rollout not yet observed"
                } else if let updated = status["updatedReplicas"]?.intValue, updated < want {
                    pending = pending ?? "\(obj.ref): \(updated) of \(want) pods updated"
                } else if let total = status["replicas"]?.intValue, total > want {
                    pending = pending ?? "\(obj.ref): \(total - want) old pods terminating"
                }
            }
        }
        var waiting: String?
        for pod in pods {
            let podName = pod.at("metadata", "name")?.stringValue ?? "?"
            if pod.at("status", "phase")?.stringValue == "Failed" {
                failure = failure ?? "pod \(podName): Failed: \(pod.at("status", "reason")?.stringValue ?? "") \(pod.at("status", "message")?.stringValue ?? "")"
            }
            for cs in (pod.at("status", "initContainerStatuses")?.arrayValue ?? []) + (pod.at("status", "containerStatuses")?.arrayValue ?? []) {
                guard let w = cs.at("state", "waiting"), let why = w["reason"]?.stringValue else { continue }
                var text = "pod \(podName): container \(cs["name"]?.stringValue ?? "?"): \(why)"
                if let m = w["message"]?.stringValue, !m.isEmpty { text += ": \(m)" }
                if Self.fatalWaitingReasons.contains(why) { failure = failure ?? text } else { waiting = waiting ?? text }
            }
        }
        let desired = Self.expectedPods(spec)
        if let failure { return RolloutState(status: "Failed", reason: failure, created: created, missing: missing) }
        if !missing.isEmpty {
            return RolloutState(status: "Degraded", reason: "missing objects: \(missing.joined(separator: ", ")) (`msctl update` recreates them)",
                                created: created, missing: missing)
        }
        if ready >= desired && pending == nil { return RolloutState(status: "Ready", reason: nil, created: created, missing: []) }
        return RolloutState(status: "Progressing", reason: pending ?? waiting ?? "\(ready) of \(desired) pods ready", created: created, missing: [])
    }

    // MARK: delete

    /// Removes every object of the server in reverse creation order; a server stays registered if anything is left.
    public func delete(name: String, target: String) async -> DeployerReply {
        guard servers[name] != nil else { return await deleteUnknown(name: name, target: target) }
        if let refusal = claim(name) { return refusal }
        defer { busy.remove(name) }
        guard let entry = servers[name] else { return DeployerReply(404, "Cannot find the resource \(target)") }
        var notRemoved: [JSON] = []
        // the spec's objects, then anything else labelled as this server's (left by an older spec)
        var objects = Manifests.build(entry.spec, namespace: entry.namespace).reversed() + [Manifests.root(entry.spec, namespace: entry.namespace)]
        if case .success(let found) = await leftovers(name, namespace: entry.namespace) {
            objects += found.filter { f in !objects.contains { $0.kind == f.kind && $0.name == f.name } }
        }
        for obj in objects {
            do {
                try await kube.delete(obj.kind, namespace: obj.namespace, name: obj.name)
                logger.info("deleted", metadata: ["server": "\(name)", "object": "\(obj.ref)"])
            } catch where error.isNotFound {
                continue
            } catch {
                notRemoved.append(jo(["kind": js(obj.kind.rawValue), "name": js(obj.name), "error": js(error.description)]))
            }
        }
        guard notRemoved.isEmpty else {
            let what = notRemoved.map { "\($0["kind"]?.stringValue ?? "")/\($0["name"]?.stringValue ?? "")" }.joined(separator: ", ")
            return DeployerReply(502, "unload server failed! could not remove: \(what)", data: jo(["not_removed": ja(notRemoved)]))
        }
        servers[name] = nil
        order.removeAll { $0 == name }
        do { try persist() } catch { return DeployerReply(error.status, error.message) }
        return DeployerReply(200, "succeed to clear resources")
    }

    /// `delete` of a name without a status entry (a create killed before it was recorded, a status file lost):
    /// everything labelled as that server's in the Deployer's namespace is removed; 404 when there is nothing.
    func deleteUnknown(name: String, target: String) async -> DeployerReply {
        guard InferServerSpec.isValidServerName(name) else { return DeployerReply(404, "Cannot find the resource \(target)") }
        if let refusal = claim(name) { return refusal }
        defer { busy.remove(name) }
        let found: [KubeObject]
        switch await leftovers(name, namespace: namespace) {
        case .failure(let error): return DeployerReply(Self.kubeStatus(error), "unload server failed! cannot list its objects: \(error)")
        case .success(let f): found = f
        }
        guard !found.isEmpty else { return DeployerReply(404, "Cannot find the resource \(target)") }
        var notRemoved: [String] = []
        for obj in found {
            do { try await kube.delete(obj.kind, namespace: obj.namespace, name: obj.name) } catch where error.isNotFound {} catch {
                notRemoved.append("\(obj.ref) (\(error))")
            }
        }
        guard notRemoved.isEmpty else { return DeployerReply(502, "unload server failed! could not remove: " + notRemoved.joined(separator: ", ")) }
        logger.info("deleted unrecorded objects by label", metadata: ["server": "\(name)", "objects": "\(found.map(\.ref))"])
        return DeployerReply(200, "succeed to clear resources", data: jo(["removed": ja(found.map { js($0.ref) })]))
    }

    // MARK: background reconciliation

    /// After a restart: which objects of the restored servers are missing in Kubernetes (logged; `get` shows the
    /// pods, `delete` still cleans up what is left, `update` recreates what is missing).
    @discardableResult
    public func verifyRestored() async -> [String] {
        var missing: [String] = []
        for name in order {
            guard let entry = servers[name] else { continue }
            for obj in Manifests.build(entry.spec, namespace: entry.namespace) {
                do {
                    if try await kube.getIfExists(obj.kind, namespace: obj.namespace, name: obj.name) == nil { missing.append(obj.ref) }
                } catch {
                    logger.warning("cannot check a restored object", metadata: ["server": "\(name)", "object": "\(obj.ref)", "error": "\(error)"])
                }
            }
        }
        if !missing.isEmpty { logger.warning("restored servers miss objects", metadata: ["objects": "\(missing.joined(separator: ", "))"]) }
        return missing
    }

    /// Keeps each PD cluster's global rank table in step with its pods, and labels each cross-node server's master
    /// pod once its rank table is complete. Returns the names whose rank table was written.
    @discardableResult
    public func reconcile() async -> [String] {
        var written: [String] = []
        for name in order {
            guard let entry = servers[name] else { continue }
            do {
                switch entry.spec.serverType {
                case .pdCluster:
                    // A Controller that lists its pods itself needs no table (Manifests+Discovery.swift).
                    if Manifests.controllerDiscoversPods(entry.spec) { break }
                    if try await syncRankTable(entry) { written.append(name) }
                case .crossNode:
                    try await labelMaster(entry)
                case .singleNode:
                    break
                }
            } catch {
                logger.warning("reconcile failed", metadata: ["server": "\(name)", "error": "\(error)"])
            }
        }
        return written
    }

    func syncRankTable(_ entry: StatusStore.Entry) async throws(KubeError) -> Bool {
        let names = Manifests.PDNames(entry.spec.serverName)
        let pods = try await kube.list(.pod, namespace: entry.namespace, labelSelector: "app=\(entry.spec.serverName)")
        let table = GlobalRankTable.build(spec: entry.spec, pods: GlobalRankTable.pods(fromList: pods)).serialized(indent: 4)
        let cm = try await kube.get(.configMap, namespace: entry.namespace, name: names.globalRankTable)
        if cm.at("data", "global_ranktable.json")?.stringValue == table { return false }
        _ = try await kube.patch(.configMap, namespace: entry.namespace, name: names.globalRankTable,
                                 patch: jo(["data": jo(["global_ranktable.json": table])]), strategic: false)
        return true
    }

    func labelMaster(_ entry: StatusStore.Entry) async throws(KubeError) {
        let s = entry.spec
        let cm = try await kube.get(.configMap, namespace: entry.namespace, name: Manifests.ringsConfigName(s))
        guard let text = cm.at("data", "hccl.json")?.stringValue, let hccl = try? JSON.parse(Data(text.utf8)),
              hccl["status"]?.stringValue == "completed", let list = hccl["server_list"]?.arrayValue, (2...4).contains(list.count),
              let ip = list[0]["container_ip"]?.stringValue else { return }
        let pods = try await kube.list(.pod, namespace: nil, fieldSelector: "status.podIP=\(ip)")
        guard let pod = pods["items"]?.arrayValue?.first, let podName = pod.at("metadata", "name")?.stringValue,
              let podNS = pod.at("metadata", "namespace")?.stringValue else { return }
        if pod.at("metadata", "labels", "cross-node-app")?.stringValue == Manifests.masterLabelValue(s) { return }
        _ = try await kube.patch(.pod, namespace: podNS, name: podName,
                                 patch: jo(["metadata": jo(["labels": jo(["cross-node-app": Manifests.masterLabelValue(s)])])]))
    }
}
