public import MSCore

/// The Controller's part of a PD cluster's manifests: how it finds its instances (issue 19, README "Instance
/// discovery"). Kept apart from the rest of the manifest building so the two evolve separately.
extension Manifests {
    /// The `instance_discovery` a rendered Controller config gets unless the spec's `controller_config` sets its
    /// own: the pods of its namespace labelled `app=<server_name>`, roles from `mindie-ms/role`.
    public static func controllerDiscovery(_ s: InferServerSpec) -> JSON {
        jo(["source": js("kubernetes"), "label_selector": js("app=\(s.serverName)"), "role_label": js(roleLabel)])
    }

    /// The spec's `controller_config` with `controllerDiscovery` underneath (the spec's own keys win).
    public static func controllerConfigWithDiscovery(_ s: InferServerSpec, _ config: JSON) -> JSON {
        guard case .object(var o) = config else { return config }
        let given = o["instance_discovery"]?.objectValue ?? [:]
        var merged = controllerDiscovery(s).objectValue ?? [:]
        for (k, v) in given { merged[k] = v }
        o["instance_discovery"] = .object(merged)
        return .object(o)
    }

    /// Whether the rendered Controller finds its pods itself (then nothing has to write the global rank table).
    public static func controllerDiscoversPods(_ s: InferServerSpec) -> Bool {
        guard let pd = s.pd else { return false }
        return controllerConfigWithDiscovery(s, pd.controllerConfig).at("instance_discovery", "source")?.stringValue == "kubernetes"
    }

    /// The Controller's Role: read pods of its own namespace, nothing else (the rank table, when used, is a mounted
    /// ConfigMap, not an API read).
    static func controllerRoleRules() -> JSON {
        ja([jo(["apiGroups": ja([js("")]), "resources": ja([js("pods")]), "verbs": ja([js("get"), js("list"), js("watch")])])])
    }

    /// Env of the Controller container for discovery: its namespace through the downward API.
    static func controllerDiscoveryEnv() -> [JSON] {
        [envField("POD_NAMESPACE", "metadata.namespace")]
    }

    /// The `Namespace` object `msctl render` prints first, so that `kubectl apply` works on a fresh cluster
    /// (`ms_deployer` works in its configured namespace, which must exist: creating namespaces would need
    /// cluster-wide rights).
    public static func namespaceObject(_ ns: String) -> JSON {
        jo(["apiVersion": js("v1"), "kind": js("Namespace"),
            "metadata": jo(["name": js(ns), "labels": jo([managedByLabel: managedBy])])])
    }
}
