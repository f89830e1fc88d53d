import MSCore

/// Pure manifest building: a validated spec in, the Kubernetes objects out (docs/wire/deployer.md §4, DECISIONS 28).
public enum Manifests {
    public static let defaultNamespace = "mindie"
    public static let managedByLabel = "app.kubernetes.io/managed-by"
    public static let managedBy = "ms_deployer"
    public static let roleLabel = "mindie-ms/role"
    static let mount = "/mnt/mindie-service/ms"
    static let rankTableDir = "/user/serverid/devindex/config"
    /// Where the PD pods read the global rank table: through kubelet's `..data` link, so a ConfigMap update (an
    /// atomic swap of `..data`) is seen by the next read (FileCheck follows that layout on purpose).
    public static let rankTablePath = "\(rankTableDir)/..data/global_ranktable.json"

    /// Every object of a server, in creation order.
    public static func build(_ spec: InferServerSpec, namespace: String = defaultNamespace) -> [KubeObject] {
        let objs: [KubeObject] = switch spec.serverType {
        case .singleNode: singleNode(spec, namespace: namespace)
        case .crossNode: crossNode(spec, namespace: namespace)
        case .pdCluster: pdCluster(spec, namespace: namespace)
        }
        return objs.enumerated().sorted { ($0.element.kind.createRank, $0.offset) < ($1.element.kind.createRank, $1.offset) }.map { _, o in
            var o = o
            // every object says who manages it and for which server, so that it can be found (and removed) by label
            // even when nothing else remembers it
            o.body = o.body.setting(["metadata", "labels", managedByLabel], to: js(managedBy))
                .setting(["metadata", "labels", instanceLabel], to: js(spec.serverName))
            return o
        }
    }

    /// The one object every other object of a server is owned by (`ownerReferences`), so that deleting it lets
    /// Kubernetes' garbage collector remove the rest even when no ms_deployer is left: a ConfigMap `<name>-owner`
    /// holding the spec. Only `ms_deployer` creates it (the owners' uid is known only once it exists); `msctl render`
    /// output has neither it nor owner references.
    public static func root(_ spec: InferServerSpec, namespace ns: String = defaultNamespace) -> KubeObject {
        let name = "\(spec.serverName)-owner"
        let body = jo([
            "apiVersion": js("v1"), "kind": js("ConfigMap"),
            "metadata": jo(["name": js(name), "namespace": js(ns),
                            "labels": jo(["app": spec.serverName, managedByLabel: managedBy, instanceLabel: spec.serverName])]),
            "data": jo(["spec.json": spec.document.serialized(indent: 4)]),
        ])
        return KubeObject(kind: .configMap, namespace: ns, name: name, body: body)
    }

    /// `object` owned by the root whose uid is `uid` (deleting the root deletes it; foreground deletion waits).
    public static func owned(_ object: KubeObject, rootName: String, uid: String) -> KubeObject {
        var o = object
        o.body = o.body.setting(["metadata", "ownerReferences"], to: ja([jo([
            "apiVersion": js("v1"), "kind": js("ConfigMap"), "name": js(rootName), "uid": js(uid), "blockOwnerDeletion": jb(true),
        ])]))
        return o
    }

    /// The server an object belongs to.
    public static let instanceLabel = "app.kubernetes.io/instance"

    /// The label selector of every object of a server.
    public static func selector(_ serverName: String) -> String { "\(managedByLabel)=\(managedBy),\(instanceLabel)=\(serverName)" }

    /// The kinds a server's objects can have (for sweeps by label).
    public static let ownedKinds: [KubeObject.Kind] = [.service, .podDisruptionBudget, .deployment, .statefulSet, .configMap, .roleBinding,
                                                       .role, .serviceAccount]

    // MARK: single node

    static func singleNode(_ s: InferServerSpec, namespace ns: String) -> [KubeObject] {
        let name = s.serverName
        var podLabels: [String: String] = ["app": name, "pod-rescheduling": "on",
                                           "ring-controller.atlas": s.npuType == "Ascend910" ? "ascend-910" : "ascend-310P"]
        if s.npuFaultReschedule { podLabels["fault-scheduling"] = "grace" }
        let pod = podSpec(s, container: serverContainer(s, role: nil), extraVolumes: [], extraMounts: [], shm: "1Gi",
                          grace: s.terminationGracePeriodSeconds)
        let deployment = jo([
            "apiVersion": js("apps/v1"), "kind": js("Deployment"),
            "metadata": metadata(name, ns, labels: ["app": name]),
            "spec": jo([
                "replicas": ji(s.replicas),
                "selector": jo(["matchLabels": jo(["app": name])]),
                "strategy": rollingUpdate(s),
                "template": jo(["metadata": jo(["labels": jo(podLabels)]), "spec": pod]),
            ]),
        ])
        let service = jo([
            "apiVersion": js("v1"), "kind": js("Service"),
            "metadata": metadata(name, ns, labels: ["app": name]),
            "spec": jo([
                "type": js(s.serviceType),
                "selector": jo(["app": name]),
                "ports": ja([jo(["name": js("infer"), "protocol": js("TCP"), "port": ji(s.inferPort),
                                 "targetPort": ji(s.inferPort), "nodePort": ji(s.servicePort)])]),
            ]),
        ])
        return [KubeObject(kind: .deployment, namespace: ns, name: name, body: deployment),
                KubeObject(kind: .service, namespace: ns, name: name, body: service)]
    }

    // MARK: cross node

    public static func crossNodeDeploymentName(_ s: InferServerSpec) -> String { "\(s.serverName)-deployment-0" }
    public static func ringsConfigName(_ s: InferServerSpec) -> String { "rings-config-\(crossNodeDeploymentName(s))" }
    public static func masterLabelValue(_ s: InferServerSpec) -> String { "\(s.serverName)-master-node" }

    static func crossNode(_ s: InferServerSpec, namespace ns: String) -> [KubeObject] {
        let name = s.serverName
        let dep = crossNodeDeploymentName(s)
        let cm = jo([
            "apiVersion": js("v1"), "kind": js("ConfigMap"),
            "metadata": metadata(ringsConfigName(s), ns, labels: ["app": name, "ring-controller.atlas": "ascend-910b"]),
            "data": jo(["hccl.json": "{\"status\":\"initializing\"}"]),
        ])
        let labels = ["app": name, "deploy-name": dep, "ring-controller.atlas": "ascend-910b"]
        var container = serverContainer(s, role: nil, probes: false)
        let waitAndRun = "while true; do if grep -q '\"status\": *\"completed\"' \(rankTableDir)/..data/hccl.json 2>/dev/null; then break; fi; sleep 1; done; " +
            "cp \(rankTableDir)/..data/hccl.json \(mount)/writable-data/hccl.json && chmod 640 \(mount)/writable-data/hccl.json && exec \(mount)/run/run.sh"
        container = container.setting(["command"], to: ja([js("/bin/bash"), js("-c"), js(waitAndRun)]))
        container = container.setting(["readinessProbe"], to: jo([
            "exec": jo(["command": ja([js("/bin/bash"), js("-c"), js("$MIES_INSTALL_PATH/scripts/http_client_ctl/probe.sh readiness")])]),
            "periodSeconds": ji(5), "timeoutSeconds": ji(s.readinessTimeout), "failureThreshold": ji(s.readinessFailureThreshold),
        ]))
        let env = (container["env"]?.arrayValue ?? []) + [
            envValue("MINDIE_SERVER_DISTRIBUTE", "1"), envValue("MINDIE_SERVER_PROBE_ONLY", "1"),
            envValue("RANK_TABLE_FILE", "\(mount)/writable-data/hccl.json"), envField("POD_IP", "status.podIP"),
        ]
        container = container.setting(["env"], to: ja(env))
        container = container.setting(["volumeMounts"], to: ja((container["volumeMounts"]?.arrayValue ?? []) + [
            jo(["name": js("ascend-910-config"), "mountPath": js(rankTableDir)]),
        ]))
        var pod = podSpec(s, container: container,
                          extraVolumes: [jo(["name": js("ascend-910-config"),
                                             "configMap": jo(["name": js(ringsConfigName(s)), "defaultMode": ji(0o640)])])],
                          extraMounts: [], shm: "16Gi", grace: 0)
        pod = pod.setting(["nodeSelector"], to: jo(["accelerator": "huawei-Ascend910"]))
        pod = pod.setting(["securityContext"], to: jo(["fsGroup": ji(1001)]))
        pod = pod.setting(["affinity"], to: jo([
            "podAntiAffinity": jo([
                "requiredDuringSchedulingIgnoredDuringExecution": ja([jo([
                    "labelSelector": jo(["matchExpressions": ja([jo(["key": js("deploy-name"), "operator": js("In"), "values": ja([js(dep)])])])]),
                    "topologyKey": js("kubernetes.io/hostname"),
                ])]),
            ]),
        ]))
        let annotations = ["mindie_port": String(s.managementPort), "init_delay": String(s.initDelay),
                           "liveness_timeout": String(s.livenessTimeout), "liveness_failure_threshold": String(s.livenessFailureThreshold),
                           "readiness_timeout": String(s.readinessTimeout), "readiness_failure_threshold": String(s.readinessFailureThreshold)]
        let deployment = jo([
            "apiVersion": js("apps/v1"), "kind": js("Deployment"),
            "metadata": metadata(dep, ns, labels: labels).setting(["annotations"], to: jo(annotations)),
            "spec": jo([
                "replicas": ji(s.crossNodeNum),
                "selector": jo(["matchLabels": jo(["app": name, "deploy-name": dep])]),
                "template": jo(["metadata": jo(["labels": jo(labels)]), "spec": pod]),
            ]),
        ])
        let service = jo([
            "apiVersion": js("v1"), "kind": js("Service"),
            "metadata": metadata("\(name)-service", ns, labels: ["app": name, "k8s-app": name]),
            "spec": jo([
                "type": js(s.serviceType),
                "selector": jo(["cross-node-app": masterLabelValue(s)]),
                "ports": ja([jo(["name": js("infer"), "protocol": js("TCP"), "port": ji(s.inferPort),
                                 "targetPort": ji(s.inferPort), "nodePort": ji(s.servicePort)])]),
            ]),
        ])
        return [KubeObject(kind: .configMap, namespace: ns, name: ringsConfigName(s), body: cm),
                KubeObject(kind: .deployment, namespace: ns, name: dep, body: deployment),
                KubeObject(kind: .service, namespace: ns, name: "\(name)-service", body: service)]
    }

    // MARK: PD cluster

    /// Object names of a PD cluster.
    public struct PDNames: Sendable {
        public let rbac, globalRankTable, coordinatorConfig, controllerConfig, serverConfig: String
        public let coordinator, controller, prefill, decode, inferService: String
        public init(_ n: String) {
            rbac = "\(n)-ms"
            globalRankTable = "\(n)-global-ranktable"
            coordinatorConfig = "\(n)-coordinator-config"
            controllerConfig = "\(n)-controller-config"
            serverConfig = "\(n)-server-config"
            coordinator = "\(n)-coordinator"
            controller = "\(n)-controller"
            prefill = "\(n)-prefill"
            decode = "\(n)-decode"
            inferService = "\(n)-infer"
        }
    }

    public static let coordinatorInferPort = 1025
    public static let coordinatorManagementPort = 1026

    static func pdCluster(_ s: InferServerSpec, namespace ns: String) -> [KubeObject] {
        let name = s.serverName
        let n = PDNames(name)
        guard let pd = s.pd else { return [] }
        /// Whether the role runs several pods of which one acts (etcd lock) and only that one is Ready.
        func oneActive(_ role: String) -> Bool { role == "coordinator" ? pd.coordinatorReplicas > 1 : pd.ha != nil }
        var out: [KubeObject] = []
        func add(_ kind: KubeObject.Kind, _ objName: String, _ body: JSON) {
            out.append(KubeObject(kind: kind, namespace: ns, name: objName, body: body))
        }
        let common = ["app": name]
        // RBAC: the Controller reads pods and the rank table.
        add(.serviceAccount, n.rbac, jo(["apiVersion": js("v1"), "kind": js("ServiceAccount"), "metadata": metadata(n.rbac, ns, labels: common)]))
        add(.role, n.rbac, jo([
            "apiVersion": js("rbac.authorization.k8s.io/v1"), "kind": js("Role"), "metadata": metadata(n.rbac, ns, labels: common),
            "rules": controllerRoleRules(),
        ]))
        add(.roleBinding, n.rbac, jo([
            "apiVersion": js("rbac.authorization.k8s.io/v1"), "kind": js("RoleBinding"), "metadata": metadata(n.rbac, ns, labels: common),
            "roleRef": jo(["apiGroup": js("rbac.authorization.k8s.io"), "kind": js("Role"), "name": js(n.rbac)]),
            "subjects": ja([jo(["kind": js("ServiceAccount"), "name": js(n.rbac), "namespace": js(ns)])]),
        ]))
        // ConfigMaps.
        add(.configMap, n.globalRankTable, jo([
            "apiVersion": js("v1"), "kind": js("ConfigMap"), "metadata": metadata(n.globalRankTable, ns, labels: common),
            "data": jo(["global_ranktable.json": "{\"status\":\"initializing\",\"version\":\"1.0\"}"]),
        ]))
        let controllerFiles = [("config.json", controllerConfigWithDiscovery(s, pd.controllerConfig)), (PDConfigs.modelConfigKey, pd.modelConfig),
                               (PDConfigs.machineConfigKey, pd.machineConfig)]
        for (cmName, files) in [(n.coordinatorConfig, [("config.json", pd.coordinatorConfig)]), (n.controllerConfig, controllerFiles),
                                (n.serverConfig, [("config.json", pd.serverConfig)])] {
            add(.configMap, cmName, jo([
                "apiVersion": js("v1"), "kind": js("ConfigMap"), "metadata": metadata(cmName, ns, labels: common),
                "data": .object(JSON.Object(files.map { ($0.0, JSON.string($0.1.serialized(indent: 4))) })),
            ]))
        }
        // Deployments.
        let rankVolume = jo(["name": js("global-ranktable"), "configMap": jo(["name": js(n.globalRankTable), "defaultMode": ji(0o640)])])
        let rankMount = jo(["name": js("global-ranktable"), "mountPath": js(rankTableDir), "readOnly": jb(true)])
        let rankEnv = envValue("GLOBAL_RANK_TABLE_FILE_PATH", rankTablePath)
        func msDeployment(_ depName: String, role: String, binary: String, configCM: String, configEnv: String,
                          ports: [(String, Int)], probePort: String, request: (String, String), limit: (String, String),
                          account: Bool) -> JSON {
            let labels = ["app": name, roleLabel: role]
            func probe(_ path: String, period: Int, failures: Int) -> JSON {
                jo(["httpGet": jo(["path": js(path), "port": js(probePort)]), "periodSeconds": ji(period), "timeoutSeconds": ji(3),
                    "failureThreshold": ji(failures)])
            }
            var security = containerSecurity()
            // the binaries write nothing outside their emptyDir and log to stdout
            security = security.setting(["readOnlyRootFilesystem"], to: jb(true))
            var container = jo([
                "name": js(role), "image": js(pd.msImage), "imagePullPolicy": js("IfNotPresent"),
                "command": ja([js(binary)]),
                "env": ja([envField("POD_IP", "status.podIP"), envValue(configEnv, "/mnt/configmap/config.json"), rankEnv,
                           envValue("MINDIE_LOG_TO_STDOUT", "1")]),
                "ports": ja(ports.map { jo(["name": js($0.0), "containerPort": ji($0.1), "protocol": js("TCP")]) }),
                "resources": jo(["requests": jo(["memory": request.0, "cpu": request.1]), "limits": jo(["memory": limit.0, "cpu": limit.1])]),
                "securityContext": security,
                "volumeMounts": ja([jo(["name": js("config"), "mountPath": js("/mnt/configmap"), "readOnly": jb(true)]), rankMount]),
                // /v1/startup and /v1/health answer while the process runs; readiness waits for a published instance set
                "startupProbe": probe("/v1/startup", period: 2, failures: 30),
                // a standby answers /v1/health 200 (never killed for standing by) and /v1/readiness 503 (the Service
                // sends it nothing; `kubectl get pods` shows which one leads)
                "livenessProbe": probe("/v1/health", period: 10, failures: 3),
                "readinessProbe": oneActive(role)
                    // a master that lost its lock refuses inference at once: take it out of the endpoints quickly
                    ? probe("/v1/readiness", period: 2, failures: 2) : probe("/v1/readiness", period: 5, failures: 3),
            ])
            if role == "controller" {
                container = container.setting(["env"], to: ja((container["env"]?.arrayValue ?? []) + controllerDiscoveryEnv()))
            } else if pd.ha != nil {
                // the etcd keys are prefixed with the namespace, as the Controller's are (it has POD_NAMESPACE for
                // discovery): clusters in different namespaces may share one etcd
                container = container.setting(["env"], to: ja((container["env"]?.arrayValue ?? []) + [envField("POD_NAMESPACE", "metadata.namespace")]))
            }
            if pd.ha != nil {
                // and then with the server's name (HAKeys): two clusters in one namespace may share one etcd too
                container = container.setting(["env"], to: ja((container["env"]?.arrayValue ?? []) + [envValue(HAKeys.clusterNameVariable, name)]))
            }
            if role == "coordinator" {
                // `ms_coordinator [predict_ip] [manage_ip]`: listen on the pod IP; ports come from its config.
                container = container.setting(["args"], to: ja([js("$(POD_IP)"), js("$(POD_IP)")]))
            }
            var pod = jo([
                "automountServiceAccountToken": jb(account),
                "containers": ja([container]),
                // not root; kubelet's ConfigMap files are root-owned with fsGroup's group read, which FileCheck accepts
                "securityContext": jo(["runAsNonRoot": jb(true), "runAsUser": ji(1001), "runAsGroup": ji(1001), "fsGroup": ji(1001),
                                       "seccompProfile": jo(["type": js("RuntimeDefault")])]),
                "volumes": ja([jo(["name": js("config"), "configMap": jo(["name": js(configCM), "defaultMode": ji(0o640)])]), rankVolume]),
            ])
            if account { pod = pod.setting(["serviceAccountName"], to: js(n.rbac)) }
            if role == "coordinator" {
                // SIGTERM drains: in-flight requests may run for drain_timeout, then the lease is given back and the
                // server stops (up to 10 s more for a proxied request past the drain). No preStop hook: readiness goes
                // 503 at SIGTERM, and a standby cannot take over before the master lets go, so a preStop sleep would
                // only delay the takeover.
                let drain = pd.coordinatorConfig.at("exception_config", "drain_timeout")?.intValue ?? 30
                pod = pod.setting(["terminationGracePeriodSeconds"], to: .int(drain + 15))
            }
            if role == "controller" {
                // process state and cluster status files (PDConfigs.controllerStateDir); they survive a container restart
                pod = pod.setting(["volumes"], to: ja((pod["volumes"]?.arrayValue ?? []) + [jo(["name": js("state"), "emptyDir": jo([:])])]))
                container = container.setting(["volumeMounts"], to: ja((container["volumeMounts"]?.arrayValue ?? []) + [
                    jo(["name": js("state"), "mountPath": js(PDConfigs.controllerStateDir)]),
                ]))
                pod = pod.setting(["containers"], to: ja([container]))
            }
            // replicas of one component on different nodes, so that one node's loss leaves a standby
            pod = scheduling(pod, pd, role: role, spread: role == "coordinator" || pd.ha != nil)
            var template = jo(["metadata": jo(["labels": jo(labels)]), "spec": pod])
            let replicas = role == "coordinator" ? pd.coordinatorReplicas : (pd.ha?.controllerReplicas ?? 1)
            // alone, the Coordinator holds every D's /dresult link (a surge pod would take them from it mid-stream) and
            // the Controller assigns roles (two at once would both assign): replaced, never doubled
            let strategy = oneActive(role) ? oneActiveRollout() : jo(["type": js("Recreate")])
            // deploy/prometheus/scrape-kubernetes.yml keeps annotated pods; the Controller serves /metrics on its REST port
            let metricsPort = role == "coordinator" ? coordinatorMetricsPort : controllerPort
            template = template.setting(["metadata", "annotations"], to: jo([
                "prometheus.io/scrape": "true", "prometheus.io/port": String(metricsPort), "prometheus.io/path": "/metrics",
            ]))
            return jo([
                "apiVersion": js("apps/v1"), "kind": js("Deployment"),
                "metadata": metadata(depName, ns, labels: labels),
                "spec": jo([
                    "replicas": ji(replicas),
                    "selector": jo(["matchLabels": jo(labels)]),
                    "strategy": strategy,
                    "template": template,
                ]),
            ])
        }
        add(.deployment, n.coordinator, msDeployment(n.coordinator, role: "coordinator", binary: "ms_coordinator", configCM: n.coordinatorConfig,
                                                     configEnv: "MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH",
                                                     ports: [("infer", coordinatorInferPort), ("manage", coordinatorManagementPort),
                                                             ("metrics", coordinatorMetricsPort), ("status", coordinatorStatusPort)],
                                                     probePort: "status", request: ("4Gi", "16"), limit: ("8Gi", "64"), account: false))
        add(.deployment, n.controller, msDeployment(n.controller, role: "controller", binary: "ms_controller", configCM: n.controllerConfig,
                                                    configEnv: "MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH",
                                                    ports: [("http", controllerPort), ("alarm", controllerAlarmPort)], probePort: "http",
                                                    request: ("2Gi", "4"), limit: ("4Gi", "8"), account: true))
        for (depName, role, replicas) in [(n.prefill, "prefill", pd.prefillReplicas), (n.decode, "decode", pd.decodeReplicas)] {
            let labels = ["app": name, roleLabel: role, "ring-controller.atlas": s.npuType == "Ascend910" ? "ascend-910" : "ascend-310P"]
            var container = serverContainer(s, role: role)
            container = container.setting(["env"], to: ja((container["env"]?.arrayValue ?? []).map { e in
                e["name"]?.stringValue == "MIES_CONFIG_JSON_PATH" ? envValue("MIES_CONFIG_JSON_PATH", "/mnt/configmap/config.json") : e
            } + [rankEnv, envValue("MINDIE_SERVER_ROLE", role)]))
            container = container.setting(["volumeMounts"], to: ja((container["volumeMounts"]?.arrayValue ?? []).filter {
                $0["mountPath"]?.stringValue != "\(mount)/config/config.json"
            } + [jo(["name": js("config"), "mountPath": js("/mnt/configmap"), "readOnly": jb(true)]), rankMount]))
            var pod = podSpec(s, container: container, extraVolumes: [
                jo(["name": js("config"), "configMap": jo(["name": js(n.serverConfig), "defaultMode": ji(0o640)])]), rankVolume,
            ], extraMounts: [], shm: "4Gi", grace: s.terminationGracePeriodSeconds)
            pod = pod.setting(["volumes"], to: ja((pod["volumes"]?.arrayValue ?? []).filter { $0["name"]?.stringValue != "path-0" }))
            pod = scheduling(pod, pd, role: role, spread: true)
            add(.deployment, depName, jo([
                "apiVersion": js("apps/v1"), "kind": js("Deployment"),
                "metadata": metadata(depName, ns, labels: labels),
                "spec": jo([
                    "replicas": ji(replicas),
                    "selector": jo(["matchLabels": jo(["app": name, roleLabel: role])]),
                    "strategy": rollingUpdate(s),
                    "template": jo(["metadata": jo(["labels": jo(labels)]), "spec": pod]),
                ]),
            ]))
        }
        // voluntary disruptions (node drains) take at most one pod of each component at a time. Not for Coordinators in
        // master/standby: only the master is Ready, so a budget would never let a drain evict it (disruptionsAllowed =
        // 1 healthy - (replicas - 1) desired = 0) although a standby takes over when it goes.
        let budgets = [(n.coordinator, "coordinator"), (n.prefill, "prefill"), (n.decode, "decode")].filter { $0.1 != "coordinator" || pd.coordinatorReplicas == 1 }
        for (comp, role) in budgets {
            add(.podDisruptionBudget, comp, jo([
                "apiVersion": js("policy/v1"), "kind": js("PodDisruptionBudget"),
                "metadata": metadata(comp, ns, labels: ["app": name, roleLabel: role]),
                "spec": jo(["maxUnavailable": ji(1), "selector": jo(["matchLabels": jo(["app": name, roleLabel: role])])]),
            ]))
        }
        if let ha = pd.ha, let etcd = ha.etcd { out += etcdObjects(etcd, s, pd, namespace: ns) }
        add(.service, n.inferService, jo([
            "apiVersion": js("v1"), "kind": js("Service"),
            "metadata": metadata(n.inferService, ns, labels: common),
            "spec": jo([
                "type": js(s.serviceType),
                "selector": jo(["app": name, roleLabel: "coordinator"]),
                "ports": ja([jo(["name": js("infer"), "protocol": js("TCP"), "port": ji(coordinatorInferPort),
                                 "targetPort": js("infer"), "nodePort": ji(s.servicePort)])]),
            ]),
        ]))
        return out
    }

    /// The rendered etcd's StatefulSet and headless Service.
    public static func etcdName(_ serverName: String) -> String { "\(serverName)-etcd" }

    /// `pd_cluster.ha.etcd`: a StatefulSet of 1 or 3 members with stable names (`<name>-etcd-<i>.<name>-etcd`, which the
    /// configs list as the members) through a headless Service, each with its own volume. All members start together
    /// (Parallel): a new 3-member cluster needs a quorum before any member is healthy.
    static func etcdObjects(_ e: PDEtcdSpec, _ s: InferServerSpec, _ pd: PDClusterSpec, namespace ns: String) -> [KubeObject] {
        let name = etcdName(s.serverName)
        let labels = ["app": s.serverName, roleLabel: "etcd"]
        let peers = (0..<e.replicas).map { "\(name)-\($0)=http://\(name)-\($0).\(name):\(PDEtcdSpec.peerPort)" }.joined(separator: ",")
        // the etcd images have no shell: kubelet expands $(POD_NAME) in args itself
        let args = ["--name=$(POD_NAME)", "--data-dir=/var/lib/etcd/data",
                    "--listen-client-urls=http://0.0.0.0:\(PDEtcdSpec.clientPort)",
                    "--advertise-client-urls=http://$(POD_NAME).\(name):\(PDEtcdSpec.clientPort)",
                    "--listen-peer-urls=http://0.0.0.0:\(PDEtcdSpec.peerPort)",
                    "--initial-advertise-peer-urls=http://$(POD_NAME).\(name):\(PDEtcdSpec.peerPort)",
                    "--initial-cluster=\(peers)", "--initial-cluster-state=new", "--initial-cluster-token=\(name)"]
        var security = containerSecurity()
        security = security.setting(["readOnlyRootFilesystem"], to: jb(true))
        let container = jo([
            "name": js("etcd"), "image": js(e.image), "imagePullPolicy": js("IfNotPresent"),
            "command": ja([js("/usr/local/bin/etcd")]), "args": ja(args.map(js)),
            "env": ja([envField("POD_NAME", "metadata.name")]),
            "ports": ja([jo(["name": js("client"), "containerPort": ji(PDEtcdSpec.clientPort), "protocol": js("TCP")]),
                         jo(["name": js("peer"), "containerPort": ji(PDEtcdSpec.peerPort), "protocol": js("TCP")])]),
            "resources": jo(["requests": jo(["memory": "256Mi", "cpu": "250m"]), "limits": jo(["memory": "1Gi", "cpu": "1"])]),
            "securityContext": security,
            "volumeMounts": ja([jo(["name": js("data"), "mountPath": js("/var/lib/etcd")])]),
            // /health is 503 without a leader: right for readiness (the Service lists members that can answer), wrong
            // for liveness (a lost quorum would restart every member), which only checks that the process listens
            "readinessProbe": jo(["httpGet": jo(["path": js("/health"), "port": js("client")]), "periodSeconds": ji(5),
                                  "timeoutSeconds": ji(3), "failureThreshold": ji(3)]),
            "livenessProbe": jo(["tcpSocket": jo(["port": js("client")]), "periodSeconds": ji(10), "timeoutSeconds": ji(3),
                                 "failureThreshold": ji(3)]),
        ])
        var pod = jo([
            "automountServiceAccountToken": jb(false),
            "containers": ja([container]),
            "securityContext": jo(["runAsNonRoot": jb(true), "runAsUser": ji(1001), "runAsGroup": ji(1001), "fsGroup": ji(1001),
                                   "seccompProfile": jo(["type": js("RuntimeDefault")])]),
            "terminationGracePeriodSeconds": ji(30),
        ])
        pod = scheduling(pod, pd, role: "etcd", spread: e.replicas > 1)
        let set = jo([
            "apiVersion": js("apps/v1"), "kind": js("StatefulSet"),
            "metadata": metadata(name, ns, labels: labels),
            "spec": jo([
                "serviceName": js(name), "replicas": ji(e.replicas), "podManagementPolicy": js("Parallel"),
                "selector": jo(["matchLabels": jo(labels)]),
                "updateStrategy": jo(["type": js("RollingUpdate")]),
                "template": jo(["metadata": jo(["labels": jo(labels)]), "spec": pod]),
                "volumeClaimTemplates": ja([jo([
                    "metadata": jo(["name": js("data")]),
                    "spec": jo(["accessModes": ja([js("ReadWriteOnce")]), "resources": jo(["requests": jo(["storage": e.storage])])]),
                ])]),
            ]),
        ])
        // headless, and listing members before they are ready: the members find each other through it while forming
        let service = jo([
            "apiVersion": js("v1"), "kind": js("Service"),
            "metadata": metadata(name, ns, labels: labels),
            "spec": jo([
                "clusterIP": js("None"), "publishNotReadyAddresses": jb(true),
                "selector": jo(labels),
                "ports": ja([jo(["name": js("client"), "protocol": js("TCP"), "port": ji(PDEtcdSpec.clientPort), "targetPort": js("client")]),
                             jo(["name": js("peer"), "protocol": js("TCP"), "port": ji(PDEtcdSpec.peerPort), "targetPort": js("peer")])]),
            ]),
        ])
        var out = [KubeObject(kind: .statefulSet, namespace: ns, name: name, body: set),
                   KubeObject(kind: .service, namespace: ns, name: name, body: service)]
        if e.replicas > 1 {
            // a drain may take one member at a time: the other two keep the quorum
            out.append(KubeObject(kind: .podDisruptionBudget, namespace: ns, name: name, body: jo([
                "apiVersion": js("policy/v1"), "kind": js("PodDisruptionBudget"),
                "metadata": metadata(name, ns, labels: labels),
                "spec": jo(["maxUnavailable": ji(1), "selector": jo(["matchLabels": jo(labels)])]),
            ])))
        }
        return out
    }

    public static let coordinatorMetricsPort = 1028
    public static let coordinatorStatusPort = 1029
    static let controllerPort = 1026
    static let controllerAlarmPort = 1027

    /// Spreads a component's replicas over nodes (preferred, so a small cluster still schedules them) and applies the
    /// spec's priority class and tolerations.
    static func scheduling(_ pod: JSON, _ pd: PDClusterSpec, role: String, spread: Bool) -> JSON {
        var p = pod
        if spread {
            let selector = jo(["matchLabels": jo([roleLabel: role])])
            p = p.setting(["affinity"], to: jo(["podAntiAffinity": jo(["preferredDuringSchedulingIgnoredDuringExecution": ja([jo([
                "weight": ji(100),
                "podAffinityTerm": jo(["labelSelector": selector, "topologyKey": js("kubernetes.io/hostname")]),
            ])])])]))
            p = p.setting(["topologySpreadConstraints"], to: ja([jo([
                "maxSkew": ji(1), "topologyKey": js("topology.kubernetes.io/zone"), "whenUnsatisfiable": js("ScheduleAnyway"),
                "labelSelector": selector,
            ])]))
        }
        if let pc = pd.priorityClassName { p = p.setting(["priorityClassName"], to: js(pc)) }
        if let t = pd.tolerations { p = p.setting(["tolerations"], to: t) }
        return p
    }

    // MARK: parts

    static func metadata(_ name: String, _ ns: String, labels: [String: String]) -> JSON {
        var l = labels
        l[managedByLabel] = managedBy
        return jo(["name": js(name), "namespace": js(ns), "labels": jo(l)])
    }

    /// The rollout of a component with one Ready pod of several (the etcd lock holder; the standbys' readiness is
    /// 503). A rollout that keeps a pod available could never finish: the new pods cannot become Ready while the old
    /// holder lives, so the Deployment controller's minAvailable (replicas - maxUnavailable) would stay unmet and the
    /// old holder would never be removed. So a new pod starts at once (maxSurge 1) and the old pods go at once
    /// (maxUnavailable 100%): the old holder gives its lease back on SIGTERM and a standby takes over, a gap of one
    /// takeover (docs/operations.md "HA on Kubernetes").
    static func oneActiveRollout() -> JSON {
        jo(["type": js("RollingUpdate"), "rollingUpdate": jo(["maxUnavailable": js("100%"), "maxSurge": ji(1)])])
    }

    static func rollingUpdate(_ s: InferServerSpec) -> JSON {
        jo(["type": js("RollingUpdate"), "rollingUpdate": jo(["maxUnavailable": js(s.maxUnavailable), "maxSurge": js(s.maxSurge)])])
    }

    static func envValue(_ name: String, _ value: String) -> JSON { jo(["name": js(name), "value": js(value)]) }
    static func envField(_ name: String, _ path: String) -> JSON {
        jo(["name": js(name), "valueFrom": jo(["fieldRef": jo(["fieldPath": js(path)])])])
    }

    static func containerSecurity() -> JSON {
        jo(["allowPrivilegeEscalation": jb(false), "capabilities": jo(["drop": ja([js("ALL")])]),
            "seccompProfile": jo(["type": js("RuntimeDefault")])])
    }

    /// `/bin/bash -c` running `http_client_ctl` against the pod's management port.
    static func clientCtl(_ s: InferServerSpec, url: String, timeout: Int, prefix: String = "") -> JSON {
        let script = prefix + "export HSECEASY_PATH=$MIES_INSTALL_PATH/lib; export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$MIES_INSTALL_PATH/lib; " +
            "export MINDIE_UTILS_HTTP_CLIENT_CTL_CONFIG_FILE_PATH=$MIES_INSTALL_PATH/conf/http_client_ctl.json; " +
            "$MIES_INSTALL_PATH/bin/http_client_ctl $MIES_CONTAINER_MANAGEMENT_IP \(s.managementPort) \(url) \(timeout) 0"
        return jo(["command": ja([js("/bin/bash"), js("-c"), js(script)])])
    }

    /// The MindIE Server container shared by single-node, cross-node and PD servers.
    static func serverContainer(_ s: InferServerSpec, role: String?, probes: Bool = true) -> JSON {
        let npu = "huawei.com/\(s.npuType)"
        var env: [JSON] = [
            envField("HOST_IP", "status.hostIP"), envField("MIES_CONTAINER_IP", "status.podIP"),
            envField("MIES_CONTAINER_MANAGEMENT_IP", "status.podIP"),
            envValue("MIES_CONFIG_JSON_PATH", "\(mount)/config/config.json"), envValue("MIES_INSTALL_PATH", s.miesInstallPath),
            envValue("MINDIE_USE_HTTPS", s.enableTLS ? "true" : "false"),
        ]
        if s.scheduler == "volcano" { env.append(envField("ASCEND_VISIBLE_DEVICES", "metadata.annotations['\(npu)']")) }
        var c = jo([
            "name": js(role.map { "mindie-server-\($0)" } ?? "mindie-server"),
            "image": js(s.image), "imagePullPolicy": js("IfNotPresent"),
            "command": ja([js("\(mount)/run/run.sh")]),
            "env": ja(env),
            "ports": ja([jo(["containerPort": ji(s.inferPort)])]),
            "resources": jo([
                "requests": jo([npu: String(s.npuChipNum), "memory": "\(s.memoryMiB)Mi", "cpu": "\(s.cpuMilli)m"]),
                "limits": jo([npu: String(s.npuChipNum), "memory": "\(s.memoryMiB * 2)Mi", "cpu": "\(s.cpuMilli * 2)m"]),
            ]),
            "securityContext": containerSecurity(),
            "volumeMounts": ja(hostPaths.enumerated().map { i, p in
                jo(["name": js("path-\(i)"), "mountPath": js(p.path), "readOnly": jb(p.readOnly)])
            } + [jo(["name": js("dshm"), "mountPath": js("/dev/shm")])]),
        ])
        if probes {
            let readyURL = s.detectServerInnerError ? "/health/timed-\(s.readinessTimeout)" : "/v2/health/ready"
            let liveURL = s.detectServerInnerError ? "/health/timed-\(s.livenessTimeout)" : "/v2/health/live"
            c = c.setting(["startupProbe"], to: jo(["exec": clientCtl(s, url: "/v2/health/live", timeout: 3), "periodSeconds": ji(1),
                                                    "failureThreshold": ji(s.initDelay)]))
            c = c.setting(["readinessProbe"], to: jo(["exec": clientCtl(s, url: readyURL, timeout: s.readinessTimeout), "periodSeconds": ji(5),
                                                      "timeoutSeconds": ji(s.readinessTimeout), "failureThreshold": ji(s.readinessFailureThreshold)]))
            c = c.setting(["livenessProbe"], to: jo(["exec": clientCtl(s, url: liveURL, timeout: s.livenessTimeout), "periodSeconds": ji(3),
                                                     "timeoutSeconds": ji(s.livenessTimeout), "failureThreshold": ji(s.livenessFailureThreshold)]))
            c = c.setting(["lifecycle"], to: jo(["preStop": jo(["exec": clientCtl(s, url: "/stopService", timeout: 3, prefix: "sleep 1; ")])]))
        }
        return c
    }

    static let hostPaths: [(path: String, type: String, readOnly: Bool)] = [
        ("\(mount)/config/config.json", "File", true),
        ("\(mount)/model", "Directory", true),
        ("\(mount)/run/run.sh", "File", true),
        ("\(mount)/writable-data", "Directory", false),
    ]

    static func podSpec(_ s: InferServerSpec, container: JSON, extraVolumes: [JSON], extraMounts: [JSON], shm: String,
                        grace: Int) -> JSON {
        let volumes = hostPaths.enumerated().map { i, p in
            jo(["name": js("path-\(i)"), "hostPath": jo(["path": js(p.path), "type": js(p.type)])])
        } + [jo(["name": js("dshm"), "emptyDir": jo(["medium": js("Memory"), "sizeLimit": js(shm)])])] + extraVolumes
        var pod = jo([
            "automountServiceAccountToken": jb(false),
            "containers": ja([container]),
            "nodeSelector": jo(["accelerator": s.npuType == "Ascend910" ? "huawei-Ascend910" : "huawei-Ascend310P"]),
            "terminationGracePeriodSeconds": ji(grace),
            "volumes": ja(volumes),
        ])
        if s.scheduler == "volcano" { pod = pod.setting(["schedulerName"], to: js("volcano")) }
        return pod
    }
}
