import Foundation
public import MSCore

/// The kinds of inference service the Deployer knows.
public enum ServerType: String, Sendable, Equatable, Codable {
    case singleNode = "mindie_single_node"
    case crossNode = "mindie_cross_node"
    /// Beyond the reference (DECISIONS 28): Coordinator, Controller, P and D servers from one spec.
    case pdCluster = "mindie_pd_cluster"
}

/// A spec refusal: the HTTP status it maps to and the message (the reference's text where it has one).
public struct DeployerError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { "\(status): \(message)" }
}

/// The PD-cluster part of a `mindie_pd_cluster` spec (`pd_cluster` object).
public struct PDClusterSpec: Sendable, Equatable {
    public var prefillReplicas: Int
    public var decodeReplicas: Int
    /// Contents of the ConfigMaps (`config.json` of each component): the complete configs, the Deployer's defaults
    /// with the spec's `pd_cluster.*_config` merged over them (`PDConfigs`).
    public var coordinatorConfig: JSON
    public var controllerConfig: JSON
    public var serverConfig: JSON
    /// The Controller's DIGS model and machine files (`pd_cluster.digs_model_config` / `digs_machine_config`).
    public var modelConfig: JSON = .object([:])
    public var machineConfig: JSON = .object([:])
    /// The image of the Coordinator and the Controller (`pd_cluster.ms_image`): the runtime stage of the Dockerfile.
    public var msImage = PDClusterSpec.defaultMSImage
    public static let defaultMSImage = "mindie-ms:latest"
    /// Coordinator replicas (`pd_cluster.coordinator_replicas`, 1–16, default 1). More than one needs the etcd
    /// master/standby of `coordinator_config.backup_config` (a D accepts one `/dresult` link at a time).
    public var coordinatorReplicas = 1
    /// `pd_cluster.priority_class_name` and `pd_cluster.tolerations` (optional), for every pod of the cluster.
    public var priorityClassName: String?
    public var tolerations: JSON?
    /// `pd_cluster.ha` (optional): Controller active/standby and Coordinator master/standby on an etcd.
    public var ha: PDHASpec?
}

/// `pd_cluster.ha`: what the rendered Controller and Coordinator configs and Deployments need for HA on etcd.
public struct PDHASpec: Sendable, Equatable {
    /// The etcd members both locks live on: `etcd_address` ("host:port", or several comma-separated: the binaries
    /// fail over between them), or the members of the rendered StatefulSet (`etcd`).
    public var etcdMembers: [(host: String, port: Int)]
    /// `etcd` (instead of `etcd_address`): an etcd the Deployer renders for this cluster.
    public var etcd: PDEtcdSpec?
    /// `lease_ttl_seconds` (2–3600, default 20 as the reference): both locks' lease; a killed leader or master is
    /// replaced after at most this long.
    public var leaseTTLSeconds = 20
    /// `controller_replicas` (2–5, default 2): one leads, the others stand by.
    public var controllerReplicas = 2

    public init(etcdMembers: [(host: String, port: Int)], etcd: PDEtcdSpec? = nil) {
        self.etcdMembers = etcdMembers
        self.etcd = etcd
    }

    public static func == (a: PDHASpec, b: PDHASpec) -> Bool {
        a.etcdMembers.map { "\($0.host):\($0.port)" } == b.etcdMembers.map { "\($0.host):\($0.port)" } && a.etcd == b.etcd
            && a.leaseTTLSeconds == b.leaseTTLSeconds && a.controllerReplicas == b.controllerReplicas
    }
}

/// `pd_cluster.ha.etcd`: a small etcd rendered with the cluster (a StatefulSet `<name>-etcd` and its headless Service).
public struct PDEtcdSpec: Sendable, Equatable {
    public static let defaultImage = "quay.io/coreos/etcd:v3.5.17"
    public static let clientPort = 2379
    public static let peerPort = 2380
    /// `replicas`: 1 (no quorum to lose, no fault tolerance) or 3 (survives one member's loss); default 3.
    public var replicas = 3
    /// `image` (default `quay.io/coreos/etcd:v3.5.17`).
    public var image = PDEtcdSpec.defaultImage
    /// `storage` (default "1Gi"): each member's PersistentVolumeClaim, so a member keeps its data across restarts.
    public var storage = "1Gi"
}

/// A validated `infer_server.json` (docs/wire/deployer.md §3, DECISIONS 23 and 28).
public struct InferServerSpec: Sendable, Equatable {
    public static let defaultImage = "mindie:server"

    public var serverName: String
    public var serverType: ServerType
    public var replicas: Int
    public var crossNodeNum: Int
    public var serviceType: String
    public var servicePort: Int
    public var scheduler: String
    public var initDelay: Int
    public var detectServerInnerError: Bool
    public var livenessTimeout: Int
    public var livenessFailureThreshold: Int
    public var readinessTimeout: Int
    public var readinessFailureThreshold: Int
    public var memoryMiB: Int
    public var cpuMilli: Int
    public var npuType: String
    public var npuChipNum: Int
    public var miesInstallPath: String
    public var inferPort: Int
    public var managementPort: Int
    public var enableTLS: Bool
    public var npuFaultReschedule: Bool
    public var terminationGracePeriodSeconds: Int
    public var maxUnavailable: String
    public var maxSurge: String
    /// Container image (`image`, optional; the reference hard-codes `mindie:server`).
    public var image: String
    public var pd: PDClusterSpec?
    /// The document as given (kept in the status file so that updates can merge over it).
    public var document: JSON
}

extension InferServerSpec {
    /// DECISIONS 23: a DNS-1123 label of at most 48 characters. It must also start with a letter, because the
    /// single-node Service is named after it and Service names are DNS-1035 labels.
    public static func isValidServerName(_ s: String) -> Bool {
        guard (1...48).contains(s.utf8.count) else { return false }
        let bytes = Array(s.utf8)
        func ok(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D }
        guard bytes.allSatisfy(ok), let f = bytes.first, f >= 0x61, f <= 0x7A, bytes.last != 0x2D else { return false }
        return true
    }

    /// A DNS-1123 subdomain (PriorityClass names).
    static func isValidSubdomain(_ s: String) -> Bool {
        guard (1...253).contains(s.utf8.count) else { return false }
        return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            let b = Array(part.utf8)
            guard let f = b.first, let l = b.last else { return false }
            func an(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) }
            return an(f) && an(l) && b.allSatisfy { an($0) || $0 == 0x2D }
        }
    }

    public static let serverNameRule =
        "server_name must be a DNS-1123 label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, at most 48 characters"

    /// Parses a request body the way the reference's deploy does (§2 checks 2–7), then the per-type fields.
    /// - Parameters:
    ///   - body: the raw request body.
    ///   - mindieTLS: ms_deployer's `client_mindie_server_tls_enable`; `enable_tls` must equal it.
    ///   - exists: whether a server of that name is already managed (409).
    public static func parse(body: [UInt8], mindieTLS: Bool, exists: (String) -> Bool = { _ in false }) throws(DeployerError) -> InferServerSpec {
        let doc = try parseDocument(body)
        guard case .string(let name)? = doc["server_name"], !name.isEmpty else {
            throw DeployerError(400, "load config not contain server_name!")
        }
        guard isValidServerName(name) else { throw DeployerError(400, serverNameRule + " (got \"\(name)\")") }
        if exists(name) { throw DeployerError(409, "server with same name is already loaded") }
        return try validate(doc, mindieTLS: mindieTLS)
    }

    /// JSON object, at most 1 MiB and 50 levels deep, whose integer fields are written as integers.
    public static func parseDocument(_ body: [UInt8]) throws(DeployerError) -> JSON {
        let invalid = DeployerError(400, "load config is not a valid json!")
        guard body.count <= 1 << 20, jsonDepth(body) <= 50, let doc = try? JSON.parse(Data(body)), case .object = doc else {
            throw invalid
        }
        // the decoder reads 2.0 as the integer 2; the reference (and Kubernetes) refuse it, so look at the text
        for (path, literal) in fractionalNumbers(body) where integerFields.contains(path) {
            throw DeployerError(400, "failed to parse load params!: \(path) must be an integer, got \(literal)")
        }
        return doc
    }

    /// The spec's integer fields (dotted paths).
    static let integerFields: Set<String> = [
        "replicas", "cross_node_num", "service_port", "init_delay", "liveness_timeout", "liveness_failure_threshold",
        "readiness_timeout", "readiness_failure_threshold", "termination_grace_period_seconds",
        "resource_requests.memory", "resource_requests.cpu_core", "resource_requests.npu_chip_num",
        "mindie_server_config.infer_port", "mindie_server_config.management_port",
        "pd_cluster.prefill_replicas", "pd_cluster.decode_replicas", "pd_cluster.coordinator_replicas",
        "pd_cluster.ha.lease_ttl_seconds", "pd_cluster.ha.controller_replicas", "pd_cluster.ha.coordinator_replicas",
        "pd_cluster.ha.etcd.replicas",
    ]

    /// Every key a spec may have, per object (dotted path of the object; "" = top level). `namespace`,
    /// `server_image`, `startup_cmd` and `mount_path` are the 10RC2-era keys the reference ignores.
    static let knownKeys: [String: Set<String>] = [
        "": ["server_name", "server_type", "replicas", "cross_node_num", "service_type", "service_port", "scheduler", "init_delay",
             "detect_server_inner_error", "liveness_timeout", "liveness_failure_threshold", "readiness_timeout",
             "readiness_failure_threshold", "resource_requests", "mindie_server_config", "npu_fault_reschedule",
             "termination_grace_period_seconds", "max_unavailable", "max_surge", "image", "pd_cluster",
             "namespace", "server_image", "startup_cmd", "mount_path"],
        "resource_requests": ["memory", "cpu_core", "npu_type", "npu_chip_num"],
        "mindie_server_config": ["mies_install_path", "infer_port", "management_port", "enable_tls"],
        "pd_cluster": ["prefill_replicas", "decode_replicas", "coordinator_config", "controller_config", "server_config",
                       "digs_model_config", "digs_machine_config", "coordinator_replicas", "priority_class_name", "tolerations",
                       "ms_image", "ha"],
        "pd_cluster.ha": ["etcd_address", "etcd", "lease_ttl_seconds", "controller_replicas", "coordinator_replicas"],
        "pd_cluster.ha.etcd": ["replicas", "image", "storage"],
    ]

    /// Refuses a key the spec does not know (a misspelt key would otherwise be silently ignored), naming it and the
    /// closest known key.
    static func checkKnownKeys(_ doc: JSON, prefix: String) throws(DeployerError) {
        for (objectPath, known) in knownKeys.sorted(by: { $0.key < $1.key }) {
            var object: JSON? = doc
            for part in objectPath.split(separator: ".") { object = object?[String(part)] }
            guard case .object(let o)? = object else { continue }
            for key in o.keys.sorted() where !known.contains(key) {
                let full = objectPath.isEmpty ? key : "\(objectPath).\(key)"
                let closest = known.min { editDistance($0, key) < editDistance($1, key) }
                let hint = closest.map { editDistance($0, key) <= max(2, key.count / 3) ? " (did you mean \"\($0)\"?)" : "" } ?? ""
                throw DeployerError(400, "\(prefix): unknown key \"\(full)\"\(hint); known keys\(objectPath.isEmpty ? "" : " of \(objectPath)"): " +
                                    known.sorted().joined(separator: ", "))
            }
        }
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        var prev = Array(0...y.count)
        for i in 1...max(x.count, 1) where !x.isEmpty {
            var cur = [i] + Array(repeating: 0, count: y.count)
            for j in 1...max(y.count, 1) where !y.isEmpty {
                cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return x.isEmpty ? y.count : prev[y.count]
    }

    /// Number literals written with a fraction or an exponent, with the dotted key path of the object members that
    /// hold them (members of arrays are skipped: the spec has no integer lists).
    static func fractionalNumbers(_ b: [UInt8]) -> [(String, String)] {
        struct Frame { var isObject: Bool; var key: String? }
        var stack: [Frame] = [], out: [(String, String)] = []
        var i = 0, lastString: String?
        while i < b.count {
            let c = b[i]
            switch c {
            case 0x22:  // string
                var j = i + 1, escaped = false
                while j < b.count {
                    if escaped { escaped = false } else if b[j] == 0x5C { escaped = true } else if b[j] == 0x22 { break }
                    j += 1
                }
                lastString = String(decoding: b[(i + 1)..<min(j, b.count)], as: UTF8.self)
                i = j + 1
                continue
            case 0x3A: if !stack.isEmpty { stack[stack.count - 1].key = lastString }
            case 0x7B: stack.append(Frame(isObject: true, key: nil))
            case 0x5B: stack.append(Frame(isObject: false, key: nil))
            case 0x7D, 0x5D: if !stack.isEmpty { stack.removeLast() }
            case 0x2D, 0x30...0x39:
                var j = i
                while j < b.count, [0x2B, 0x2D, 0x2E, 0x45, 0x65].contains(b[j]) || (b[j] >= 0x30 && b[j] <= 0x39) { j += 1 }
                let literal = String(decoding: b[i..<j], as: UTF8.self)
                if literal.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), stack.allSatisfy(\.isObject) {
                    out.append((stack.compactMap(\.key).joined(separator: "."), literal))
                }
                i = j
                continue
            default: break
            }
            i += 1
        }
        return out
    }

    /// Maximum nesting of brackets outside strings (a cheap guard before decoding).
    static func jsonDepth(_ b: [UInt8]) -> Int {
        var depth = 0, maxDepth = 0, inString = false, escaped = false
        for c in b {
            if inString {
                if escaped { escaped = false } else if c == 0x5C { escaped = true } else if c == 0x22 { inString = false }
                continue
            }
            switch c {
            case 0x22: inString = true
            case 0x7B, 0x5B: depth += 1; maxDepth = max(maxDepth, depth)
            case 0x7D, 0x5D: depth -= 1
            default: break
            }
        }
        return maxDepth
    }

    /// Validates a whole document (name already checked or not): type, then the type's fields in the reference's order.
    public static func validate(_ doc: JSON, mindieTLS: Bool) throws(DeployerError) -> InferServerSpec {
        guard case .string(let name)? = doc["server_name"], isValidServerName(name) else {
            throw DeployerError(400, serverNameRule)
        }
        guard case .string(let typeText)? = doc["server_type"] else { throw DeployerError(400, "load config not contain server_type!") }
        guard let type = ServerType(rawValue: typeText) else {
            throw DeployerError(400, "load config deploy_type is not mindie_cross_node, mindie_single_node or mindie_pd_cluster!")
        }
        let prefix: String = switch type {
        case .singleNode: "ParseLoadParams failed"
        case .crossNode: "failed to parse load params!"
        case .pdCluster: "failed to parse load params!"
        }
        try checkKnownKeys(doc, prefix: prefix)
        var r = FieldReader(doc: doc, prefix: prefix)
        var s = InferServerSpec(
            serverName: name, serverType: type, replicas: 1, crossNodeNum: 1, serviceType: "NodePort", servicePort: 0,
            scheduler: "default", initDelay: 0, detectServerInnerError: true, livenessTimeout: 0, livenessFailureThreshold: 0,
            readinessTimeout: 0, readinessFailureThreshold: 0, memoryMiB: 0, cpuMilli: 0, npuType: "Ascend910", npuChipNum: 0,
            miesInstallPath: "", inferPort: 0, managementPort: 0, enableTLS: false, npuFaultReschedule: false,
            terminationGracePeriodSeconds: 0, maxUnavailable: "0%", maxSurge: "0%", image: defaultImage, pd: nil, document: doc)
        let schedulers = type == .crossNode ? ["default"] : ["default", "volcano"]
        s.scheduler = try r.string("scheduler", oneOf: schedulers)
        s.serviceType = try r.string("service_type", oneOf: ["NodePort"])
        if type == .singleNode {
            s.npuFaultReschedule = try r.bool("npu_fault_reschedule")
        }
        s.servicePort = try r.int("service_port", 30000...32767)
        s.memoryMiB = try r.int("resource_requests.memory", 1000...256000)
        s.cpuMilli = try r.int("resource_requests.cpu_core", 1000...256000)
        s.npuType = try r.string("resource_requests.npu_type", oneOf: type == .crossNode ? ["Ascend910"] : ["Ascend910", "Ascend310P"])
        s.npuChipNum = try r.int("resource_requests.npu_chip_num", type == .crossNode ? 8...8 : 1...8)
        switch type {
        case .singleNode: s.replicas = try r.int("replicas", 1...256)
        case .crossNode:
            s.replicas = try r.int("replicas", 1...1)
            s.crossNodeNum = try r.int("cross_node_num", 2...4)
            guard s.crossNodeNum != 3 else { throw r.fail("cross_node_num", "must be 2 or 4") }
        case .pdCluster: break
        }
        s.initDelay = try r.int("init_delay", 10...1800)
        s.detectServerInnerError = try r.bool("detect_server_inner_error")
        s.livenessTimeout = try r.int("liveness_timeout", 1...600)
        s.livenessFailureThreshold = try r.int("liveness_failure_threshold", 1...10)
        s.readinessTimeout = try r.int("readiness_timeout", 1...600)
        s.readinessFailureThreshold = try r.int("readiness_failure_threshold", 1...10)
        if type != .crossNode {
            s.terminationGracePeriodSeconds = try r.int("termination_grace_period_seconds", 0...3600)
            s.maxSurge = try r.percent("max_surge")
            s.maxUnavailable = try r.percent("max_unavailable")
            // the API server refuses a rolling update that may neither add nor remove a pod
            if s.maxSurge == "0%" && s.maxUnavailable == "0%" {
                throw r.fail("max_unavailable", "and max_surge cannot both be 0% (a rolling update could never progress)")
            }
        }
        s.miesInstallPath = try r.installPath("mindie_server_config.mies_install_path")
        s.inferPort = try r.int("mindie_server_config.infer_port", 1024...65535)
        s.managementPort = try r.int("mindie_server_config.management_port", 1024...65535)
        s.enableTLS = try r.bool("mindie_server_config.enable_tls")
        guard s.enableTLS == mindieTLS else {
            throw r.fail("mindie_server_config.enable_tls", "must equal ms_deployer's client_mindie_server_tls_enable (\(mindieTLS))")
        }
        func imageRef(_ key: String) throws(DeployerError) -> String? {
            guard let v = r.value(key) else { return nil }
            guard case .string(let img) = v, (1...255).contains(img.utf8.count),
                  img.utf8.allSatisfy({ c in (c >= 0x30 && c <= 0x3A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x2F || c == 0x2D || c == 0x5F || c == 0x40 })
            else { throw r.fail(key, "must be a container image reference ([A-Za-z0-9._/:@-], 1..255 characters)") }
            return img
        }
        if let img = try imageRef("image") { s.image = img }
        if type == .pdCluster {
            guard case .object? = doc["pd_cluster"] else { throw r.fail("pd_cluster", "must be an object") }
            let p = try r.int("pd_cluster.prefill_replicas", 1...64)
            let d = try r.int("pd_cluster.decode_replicas", 1...64)
            let given = PDClusterSpec(prefillReplicas: p, decodeReplicas: d,
                                      coordinatorConfig: try r.object("pd_cluster.coordinator_config"),
                                      controllerConfig: try r.object("pd_cluster.controller_config"),
                                      serverConfig: try r.object("pd_cluster.server_config"),
                                      modelConfig: try r.object("pd_cluster.digs_model_config"),
                                      machineConfig: try r.object("pd_cluster.digs_machine_config"))
            var withOptions = given
            if let img = try imageRef("pd_cluster.ms_image") { withOptions.msImage = img }
            if doc["pd_cluster"]?["ha"] != nil {
                let ha = try parseHA(&r, serverName: s.serverName)
                withOptions.ha = ha.spec
                withOptions.coordinatorReplicas = ha.coordinatorReplicas
            } else if doc["pd_cluster"]?["coordinator_replicas"] != nil {
                withOptions.coordinatorReplicas = try r.int("pd_cluster.coordinator_replicas", 1...16)
                // a D accepts one /dresult link at a time: two active Coordinators would take it from each other
                // (docs/decisions.md), so more than one needs the etcd master/standby of backup_config
                if withOptions.coordinatorReplicas > 1,
                   doc["pd_cluster"]?["coordinator_config"]?["backup_config"]?["function_enable"]?.boolValue != true {
                    throw r.fail("pd_cluster.coordinator_replicas",
                                 "must be 1 unless pd_cluster.ha is set or coordinator_config.backup_config.function_enable is true (etcd master/standby): "
                                 + "a D instance accepts one /dresult link at a time, so two active Coordinators would take it from each other")
                }
            }
            if let v = doc["pd_cluster"]?["priority_class_name"] {
                guard case .string(let pc) = v, isValidSubdomain(pc) else {
                    throw r.fail("pd_cluster.priority_class_name", "must be a DNS-1123 subdomain (the name of a PriorityClass)")
                }
                withOptions.priorityClassName = pc
            }
            if let v = doc["pd_cluster"]?["tolerations"] {
                guard case .array(let items) = v, items.allSatisfy({ if case .object = $0 { true } else { false } }) else {
                    throw r.fail("pd_cluster.tolerations", "must be a list of Kubernetes tolerations (objects)")
                }
                withOptions.tolerations = v
            }
            s.pd = try PDConfigs.complete(s, withOptions)
            s.replicas = p + d
        }
        return s
    }
}

extension InferServerSpec {
    /// `pd_cluster.ha`: the etcd both HA modes use and the replica counts. The HA sections of the component configs
    /// are rendered from it, so the spec may not also set them (two sources of one address would drift apart).
    static func parseHA(_ r: inout FieldReader, serverName: String) throws(DeployerError) -> (spec: PDHASpec, coordinatorReplicas: Int) {
        guard case .object? = r.value("pd_cluster.ha") else { throw r.fail("pd_cluster.ha", "must be an object") }
        if r.value("pd_cluster.coordinator_replicas") != nil {
            throw r.fail("pd_cluster.coordinator_replicas", "must not be set with pd_cluster.ha (use pd_cluster.ha.coordinator_replicas)")
        }
        for (key, section) in [("pd_cluster.coordinator_config.backup_config", "coordinator_config.backup_config"),
                               ("pd_cluster.controller_config.controller_backup_cfg", "controller_config.controller_backup_cfg")]
        where r.value(key) != nil {
            throw r.fail(key, "must not be set with pd_cluster.ha: the Deployer renders \(section) from pd_cluster.ha")
        }
        var ha: PDHASpec
        switch (r.value("pd_cluster.ha.etcd_address"), r.value("pd_cluster.ha.etcd")) {
        case (let address?, nil):
            let addressRule = "must be \"host:port\" or several comma-separated (a DNS name or an IPv4 address of an etcd member, port 1024-65535)"
            guard case .string(let text) = address else { throw r.fail("pd_cluster.ha.etcd_address", addressRule) }
            var members: [(host: String, port: Int)] = []
            for item in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard let colon = item.lastIndex(of: ":") else { throw r.fail("pd_cluster.ha.etcd_address", addressRule) }
                let host = String(item[..<colon]), portText = item[item.index(after: colon)...]
                guard ControllerConfig.isValidHostName(host), !host.contains(":"), let port = Int(portText), (1024...65535).contains(port),
                      portText.allSatisfy({ $0.isASCII && $0.isNumber })
                else { throw r.fail("pd_cluster.ha.etcd_address", addressRule) }
                members.append((host, port))
            }
            ha = PDHASpec(etcdMembers: members)
        case (nil, let e?):
            guard case .object = e else { throw r.fail("pd_cluster.ha.etcd", "must be an object {replicas, image, storage}") }
            var etcd = PDEtcdSpec()
            if r.value("pd_cluster.ha.etcd.replicas") != nil {
                etcd.replicas = try r.int("pd_cluster.ha.etcd.replicas", 1...3)
                // 2 members tolerate no loss and need both for quorum: worse than 1
                if etcd.replicas == 2 { throw r.fail("pd_cluster.ha.etcd.replicas", "must be 1 or 3 (two members need both for a quorum)") }
            }
            if let v = r.value("pd_cluster.ha.etcd.image") {
                guard case .string(let img) = v, (1...255).contains(img.utf8.count), !img.contains(where: { $0 == " " || $0 == "\"" }) else {
                    throw r.fail("pd_cluster.ha.etcd.image", "must be a container image reference (1..255 characters)")
                }
                etcd.image = img
            }
            if let v = r.value("pd_cluster.ha.etcd.storage") {
                guard case .string(let q) = v, let unit = ["Mi", "Gi", "Ti"].first(where: { q.hasSuffix($0) }),
                      let n = Int(q.dropLast(unit.count)), n > 0, q.dropLast(unit.count).allSatisfy({ $0.isASCII && $0.isNumber })
                else { throw r.fail("pd_cluster.ha.etcd.storage", "must be a quantity like \"1Gi\" (Mi, Gi or Ti)") }
                etcd.storage = q
            }
            let svc = Manifests.etcdName(serverName)
            ha = PDHASpec(etcdMembers: (0..<etcd.replicas).map { ("\(svc)-\($0).\(svc)", PDEtcdSpec.clientPort) }, etcd: etcd)
        default:
            throw r.fail("pd_cluster.ha", "needs exactly one of etcd_address (an etcd that runs already) and etcd (one rendered with the cluster)")
        }
        if r.value("pd_cluster.ha.lease_ttl_seconds") != nil { ha.leaseTTLSeconds = try r.int("pd_cluster.ha.lease_ttl_seconds", 2...3600) }
        // one standby is what HA needs; more only add etcd traffic
        if r.value("pd_cluster.ha.controller_replicas") != nil { ha.controllerReplicas = try r.int("pd_cluster.ha.controller_replicas", 2...5) }
        var coordinators = 2
        if r.value("pd_cluster.ha.coordinator_replicas") != nil { coordinators = try r.int("pd_cluster.ha.coordinator_replicas", 2...16) }
        return (ha, coordinators)
    }
}

/// Reads dotted keys of a spec document with the reference's ranges; errors name key, value and rule.
struct FieldReader {
    let doc: JSON
    let prefix: String

    func value(_ key: String) -> JSON? {
        var v: JSON? = doc
        for part in key.split(separator: ".") { v = v?[String(part)] }
        return v
    }

    func fail(_ key: String, _ rule: String) -> DeployerError {
        let got = value(key).map { $0.rendered } ?? "nothing"
        return DeployerError(400, "\(prefix): \(key) \(rule), got \(got)")
    }

    mutating func int(_ key: String, _ range: ClosedRange<Int>) throws(DeployerError) -> Int {
        guard case .int(let i)? = value(key), range.contains(Int(i)) else {
            throw fail(key, "must be an integer in [\(range.lowerBound), \(range.upperBound)]")
        }
        return Int(i)
    }

    mutating func bool(_ key: String) throws(DeployerError) -> Bool {
        guard case .bool(let b)? = value(key) else { throw fail(key, "must be a boolean") }
        return b
    }

    mutating func string(_ key: String, oneOf options: [String]) throws(DeployerError) -> String {
        guard case .string(let s)? = value(key), options.contains(s) else {
            throw fail(key, "must be one of " + options.map { "\"\($0)\"" }.joined(separator: ", "))
        }
        return s
    }

    /// `"N%"` with 0 ≤ N ≤ 100, written `^\d{1,3}%$`.
    mutating func percent(_ key: String) throws(DeployerError) -> String {
        guard case .string(let s)? = value(key), s.hasSuffix("%"), (2...4).contains(s.count),
              s.dropLast().allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(s.dropLast()), n <= 100
        else { throw fail(key, "must be a percentage \"N%\" with 0 <= N <= 100") }
        return s
    }

    mutating func installPath(_ key: String) throws(DeployerError) -> String {
        guard case .string(let s)? = value(key), s.hasPrefix("/"), s.utf8.count <= 4096,
              s.utf8.allSatisfy({ c in (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2F || c == 0x2E }),
              !s.contains("..")
        else { throw fail(key, "must be an absolute path of [A-Za-z0-9-_/.] characters, at most 4096") }
        return s
    }

    mutating func object(_ key: String) throws(DeployerError) -> JSON {
        guard let v = value(key) else { return .object([:]) }
        guard case .object = v else { throw fail(key, "must be an object") }
        return v
    }
}
