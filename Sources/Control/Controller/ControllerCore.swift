public import Foundation
public import MSCore

/// The Controller's pure core: `transition(state, event, now) -> (state, [effect])` (docs/architecture.md, Controller).
///
/// Covers discovery from rank-table passes, config probes, the initial role decision and posting, status
/// polls, re-posting of UNKNOWN nodes (§7.2, simplified), scale-in with peer re-linking, scale-out admission
/// (DECISIONS 17/19: a returning or new instance fills the missing role), publishability (§5) and the
/// coordinator refresh payload (§3.2). The HTTP calls are effects; their results come back as events.
public enum ControllerCore {
    /// How roles are decided.
    public enum RolePolicy: Sendable, Equatable {
        /// `default_p_rate:default_d_rate` (§6.2).
        case definite(pRate: Int, dRate: Int)
        /// The analytic model (§6.3); t is recomputed from the candidates' device counts.
        case automatic(LlamaSimulator, inputLength: Int, outputLength: Int)
        /// Roles from `hardware_type` (§6.4).
        case heterogeneous
    }

    /// What the core needs from the config.
    public struct Settings: Sendable, Equatable {
        public var policy: RolePolicy
        /// `deploy_mode = single_node`: no roles, published iff healthy.
        public var singleNode: Bool = false
        /// `pd_disaggregation_single_container`.
        public var singleContainer: Bool = false
        public var maxGroupSize: Int = InstanceGrouping.defaultMaxGroupSize
        /// `disappeared_server_waiting_seconds`.
        public var retentionSeconds: TimeInterval = 7200
        /// `digs_periodic_role_decision.auto_pd_role_switching_enable`.
        public var autoSwitching: Bool = false
        /// `digs_periodic_role_decision.tasks_end_wait_seconds`.
        public var tasksEndWaitSeconds: TimeInterval = 300
        /// The analytic model used by the periodic re-decision (it applies even with a definite ratio).
        public var simulator: LlamaSimulator?
        /// How long the initial decision waits for every instance of the table to answer its config probe,
        /// counted from the first table pass (`server_online_attempt_times` × `server_online_wait_seconds`).
        /// Roles follow table order only among the instances decided together, so deciding while one is still
        /// starting would give it a role by arrival order later (P, D, D, P instead of P, P, D, D).
        public var initialProbeWindow: TimeInterval = 180
        /// How long a P may stay dead (status polls failing, or gone from the table) before a healthy D of its group
        /// is switched to P in its place; 0 = never (`prefill_loss_rebalance_seconds`).
        public var prefillLossGrace: TimeInterval = 60

        public init(
            policy: RolePolicy, singleNode: Bool = false, singleContainer: Bool = false,
            maxGroupSize: Int = InstanceGrouping.defaultMaxGroupSize, retentionSeconds: TimeInterval = 7200
        ) {
            self.policy = policy
            self.singleNode = singleNode
            self.singleContainer = singleContainer
            self.maxGroupSize = maxGroupSize
            self.retentionSeconds = retentionSeconds
        }

        /// Settings from a loaded config; `model` and `machine` are needed for the automatic ratio.
        public init(config c: ControllerConfig, model: DigsModelConfig, machine: DigsMachineConfig) {
            let policy: RolePolicy
            if c.isHeterogeneous {
                policy = .heterogeneous
            } else if c.usesDefiniteRatio {
                policy = .definite(pRate: c.defaultPRate, dRate: c.defaultDRate)
            } else {
                let sim = LlamaSimulator(
                    model: model, machine: machine,
                    parameters: .init(
                        prefillSLO: Double(c.digsPrefillSLO), decodeSLO: Double(c.digsDecodeSLO),
                        pipelineParallel: c.digsPP))
                policy = .automatic(
                    sim, inputLength: c.digsRequestSummaryInputLength, outputLength: c.digsRequestSummaryOutputLength)
            }
            self.init(
                policy: policy, singleNode: c.deployMode == .singleNode,
                singleContainer: c.deployMode == .pdDisaggregationSingleContainer,
                retentionSeconds: TimeInterval(c.disappearedServerWaitingSeconds))
            autoSwitching = c.periodicRoleDecision.autoSwitchingEnabled && !c.isHeterogeneous
            initialProbeWindow = TimeInterval(c.serverOnlineAttemptTimes * c.serverOnlineWaitSeconds)
            prefillLossGrace = TimeInterval(c.prefillLossRebalanceSeconds)
            tasksEndWaitSeconds = TimeInterval(c.periodicRoleDecision.tasksEndWaitSeconds)
            simulator = LlamaSimulator(
                model: model, machine: machine,
                parameters: .init(
                    prefillSLO: Double(c.digsPrefillSLO), decodeSLO: Double(c.digsDecodeSLO),
                    pipelineParallel: c.digsPP))
        }
    }

    /// The cluster state owned by the Controller actor.
    public struct State: Sendable, Equatable {
        public var registry = InstanceIdentityRegistry()
        /// Live nodes (not deleted) by id.
        public var nodes: [Int: ControllerNode] = [:]
        public var groups: [InstanceGroup] = []
        /// Coordinator ip → is_healthy (kept across table reloads).
        public var coordinators: [String: Bool] = [:]
        /// The initial role decision was made and posted.
        public var initialAssignmentDone = false
        /// When the first table pass with instances arrived (the start of `initialProbeWindow`).
        public var firstTableAt: Date?
        /// Refreshes are sent (after the initial posts were answered).
        public var refreshEnabled = false
        /// The role switch in progress (one at a time).
        public var activeSwitch: RoleSwitch?
        /// Switches waiting for the active one to finish.
        public var pendingSwitches: [RoleSwitch.Request] = []
        /// P instances that are dead (status polls failing, or gone from the table), by id, with the time the
        /// grace period runs from (docs/decisions.md, re-balancing).
        public var deadPrefill: [Int: Date] = [:]

        public init() {}

        /// The refresh the coordinators would get now.
        public func refreshPayload(settings: Settings) -> RefreshPayload {
            ControllerCore.refreshPayload(self, settings: settings)
        }
    }

    /// Something that happened: a pass, an answer, a tick.
    public enum Event: Sendable, Equatable {
        /// A rank-table pass that validated.
        case rankTable(instances: [DiscoveredInstance], coordinators: [String])
        /// The answer to `GET /v1/config`.
        case serverConfig(id: Int, Result<ServerConfigInfo, ProbeFailure>)
        /// The answer to `GET /v1/status`.
        case serverStatus(id: Int, Result<ServerStatus, ProbeFailure>)
        /// The answer to a role post (200 at init; `"result":"ok"` at runtime — the executor decides).
        case rolePosted(id: Int, succeeded: Bool)
        /// The answer of one coordinator to a refresh.
        case coordinatorRefreshed(ip: String, succeeded: Bool)
        /// `cluster_synchronization_seconds` elapsed.
        case syncTick
        /// Switch one node's role (§6.5), e.g. from the periodic re-decision.
        case switchRole(id: Int, to: InstanceRole)
        /// The periodic re-decision timer fired and `coordinator_info` was read.
        case roleDecisionTimer(CoordinatorInfo)
        /// The answer to `POST /v1/instances/offline`.
        case offlineAnswered(succeeded: Bool)
        /// The answer to `GET /v1/instances/tasks`: the count, or nil on failure.
        case taskCount(Int?)
        /// The answer to `POST /v1/instances/query_tasks` for one D: `is_end`, or nil on failure.
        case queryTasksAnswered(decodeID: Int, isEnd: Bool?)
    }

    /// Work for the effect runner.
    public enum Effect: Sendable, Equatable {
        /// `GET /v1/config` on the node's management address.
        case getConfig(id: Int, key: InstanceKey)
        /// `GET /v1/status` on the node's management address.
        case getStatus(id: Int, key: InstanceKey)
        /// `POST /v1/role/<role>` with the payload.
        case postRole(id: Int, key: InstanceKey, role: InstanceRole, payload: RolePostPayload)
        /// `POST /v1/instances/refresh` to every coordinator.
        case refresh(RefreshPayload)
        /// Event `0xFC001003`: the node became unhealthy (reason 1 no reply, 2 bad response).
        case unhealthyEvent(id: Int, reason: Int)
        /// Persist the identity registry (ids, counter, roles, groups).
        case persistIdentity(InstanceIdentityRegistry)
        /// `POST /v1/instances/offline {"ids":[…]}` to the first coordinator.
        case offline(ids: [Int])
        /// `POST /v1/instances/online {"ids":[…]}` to every coordinator.
        case online(ids: [Int])
        /// `GET /v1/instances/tasks?id=…` after `after` seconds.
        case pollTasks(ids: [Int], after: TimeInterval)
        /// `POST /v1/instances/query_tasks` after `after` seconds.
        case queryTasks(prefillID: Int, decodeID: Int, change: CoordinatorAPI.RoleChange, after: TimeInterval)
    }

    /// The transition function.
    public static func transition(_ s: State, _ event: Event, now: Date, settings: Settings) -> (State, [Effect]) {
        var state = s
        var effects: [Effect] = []
        switch event {
        case .rankTable(let instances, let coordinators):
            onRankTable(&state, &effects, instances, coordinators, now, settings)
        case .serverConfig(let id, let result):
            onServerConfig(&state, &effects, id, result, now, settings)
        case .serverStatus(let id, let result):
            onServerStatus(&state, &effects, id, result, now, settings)
        case .rolePosted(let id, let ok):
            onRolePosted(&state, &effects, id, ok, settings)
        case .coordinatorRefreshed(let ip, let ok):
            if state.coordinators[ip] != nil { state.coordinators[ip] = ok }
        case .syncTick:
            decideInitialRolesIfDue(&state, &effects, now, settings)
            for id in state.nodes.keys.sorted() where state.nodes[id]!.phase == .candidate {
                effects.append(.getStatus(id: id, key: state.nodes[id]!.key))
            }
            if state.refreshEnabled { effects.append(.refresh(refreshPayload(state, settings: settings))) }
            rebalanceLostPrefill(&state, &effects, now, settings)
        case .switchRole(let id, let role):
            requestSwitch(&state, &effects, RoleSwitch.Request(id: id, to: role), now, settings)
        case .roleDecisionTimer(let info):
            onRoleDecisionTimer(&state, &effects, info, now, settings)
        case .offlineAnswered(let ok):
            onOffline(&state, &effects, ok, now, settings)
        case .taskCount(let n):
            onTaskCount(&state, &effects, n, now, settings)
        case .queryTasksAnswered(let d, let isEnd):
            onQueryTasks(&state, &effects, d, isEnd, now, settings)
        }
        return (state, effects)
    }

    // MARK: - Rank table

    static func onRankTable(
        _ state: inout State, _ effects: inout [Effect], _ instances: [DiscoveredInstance], _ coordinators: [String],
        _ now: Date, _ settings: Settings
    ) {
        var coord: [String: Bool] = [:]
        for ip in coordinators { coord[ip] = state.coordinators[ip] ?? false }
        state.coordinators = coord
        if state.firstTableAt == nil && !instances.isEmpty { state.firstTableAt = now }

        let diff = state.registry.reconcile(instances, now: now, retention: settings.retentionSeconds)
        var reposts: Set<Int> = []
        for r in diff.removed {
            if state.nodes[r.id]?.role == .prefill && state.deadPrefill[r.id] == nil { state.deadPrefill[r.id] = now }
            remove(&state, r.id, &reposts)
        }
        // A device or port change is a removal plus a re-admission; the node keeps its id, role and group.
        for c in diff.changed { remove(&state, c.id, &reposts) }
        for r in diff.new + diff.changed + diff.reappeared {
            guard let inst = r.instance else { continue }
            state.deadPrefill[r.id] = nil
            var node = ControllerNode(id: r.id, instance: inst)
            node.role = r.role ?? .undefined  // reappeared or changed: remembered role, applied at admission
            node.groupID = r.groupID
            state.nodes[r.id] = node
            effects.append(.getConfig(id: r.id, key: r.key))
        }
        // Faulty nodes still in the table are probed again as newcomers.
        for id in state.nodes.keys.sorted() where state.nodes[id]!.phase == .faulty {
            state.nodes[id]!.phase = .probing
            effects.append(.getConfig(id: id, key: state.nodes[id]!.key))
        }
        for id in reposts.sorted() { post(&state, &effects, id, settings) }
        if !diff.isEmpty { effects.append(.persistIdentity(state.registry)) }
        if state.refreshEnabled && !(diff.removed.isEmpty && diff.changed.isEmpty) {
            effects.append(.refresh(refreshPayload(state, settings: settings)))
        }
    }

    /// Scale-in of one node: delete it at once, drop it from its group and from every peer list; the peers
    /// that listed it are to be re-posted.
    static func remove(_ state: inout State, _ id: Int, _ reposts: inout Set<Int>) {
        guard state.nodes.removeValue(forKey: id) != nil else { return }
        reposts.remove(id)
        for i in state.groups.indices {
            state.groups[i].prefill.removeAll { $0 == id }
            state.groups[i].decode.removeAll { $0 == id }
            state.groups[i].flex.removeAll { $0 == id }
        }
        for other in state.nodes.keys where state.nodes[other]!.peers.contains(id) {
            state.nodes[other]!.peers.removeAll { $0 == id }
            state.nodes[other]!.activePeers.removeAll { $0 == id }
            if state.nodes[other]!.role != .undefined && state.nodes[other]!.phase == .candidate {
                reposts.insert(other)
            }
        }
    }

    /// Emits a role post of `id` with its current peers.
    static func post(_ state: inout State, _ effects: inout [Effect], _ id: Int, _ settings: Settings) {
        guard var node = state.nodes[id], node.role != .undefined else { return }
        let peers = node.peers.compactMap { state.nodes[$0] }
        node.rolePostPending = true
        state.nodes[id] = node
        effects.append(
            .postRole(
                id: id, key: node.key, role: node.role,
                payload: RolePostPayload(node: node, peers: peers, singleContainer: settings.singleContainer)))
    }

    // MARK: - Probes

    static func onServerConfig(
        _ state: inout State, _ effects: inout [Effect], _ id: Int, _ result: Result<ServerConfigInfo, ProbeFailure>,
        _ now: Date, _ settings: Settings
    ) {
        guard var node = state.nodes[id], node.phase == .probing else { return }
        switch result {
        case .success(let info):
            node.config = info
            node.phase = .candidate
            node.isHealthy = true
        case .failure:
            node.phase = .faulty
            node.isHealthy = false
        }
        state.nodes[id] = node
        if !state.initialAssignmentDone {
            decideInitialRolesIfDue(&state, &effects, now, settings)
        } else if case .success = result {
            admit(&state, &effects, id, settings)
        }
    }

    /// Makes the initial decision once every probe has answered and either every instance of the table is a
    /// candidate or `initialProbeWindow` has passed since the first table pass. Until then an instance whose probe
    /// failed stays faulty and is probed again at each pass, so the roles depend on the table and not on which
    /// server happened to answer first. single_node has no roles to order and decides at once.
    static func decideInitialRolesIfDue(_ state: inout State, _ effects: inout [Effect], _ now: Date, _ settings: Settings) {
        guard !state.initialAssignmentDone, !state.nodes.isEmpty else { return }
        if state.nodes.values.contains(where: { $0.phase == .probing }) { return }
        if !settings.singleNode && state.nodes.values.contains(where: { $0.phase == .faulty }),
            let since = state.firstTableAt, now.timeIntervalSince(since) < settings.initialProbeWindow
        {
            return
        }
        initialAssignment(&state, &effects, settings)
    }

    static func onServerStatus(
        _ state: inout State, _ effects: inout [Effect], _ id: Int, _ result: Result<ServerStatus, ProbeFailure>,
        _ now: Date, _ settings: Settings
    ) {
        guard var node = state.nodes[id], node.phase == .candidate else { return }
        switch result {
        case .failure(let f):
            if node.isHealthy { effects.append(.unhealthyEvent(id: id, reason: f.reasonCode)) }
            if node.role == .prefill && state.deadPrefill[id] == nil { state.deadPrefill[id] = now }
            node.isHealthy = false
            node.roleState = .unknown
            state.nodes[id] = node
        case .success(let st):
            state.deadPrefill[id] = nil
            node.isHealthy = true
            node.roleState = st.roleState
            node.currentRole = st.currentRole
            node.activePeers = st.activePeers
            node.resources = st.resources
            // single_node: any answer gives the totals (a mixed server may report RoleUnknown).
            if node.totalsPending && node.isInitialized
                && (settings.singleNode || (st.roleState != .unknown && st.currentRole == node.role))
            {
                node.totalSlots = st.resources.availSlotsNum
                node.totalBlocks = st.resources.availBlockNum
                node.totalsPending = false
            }
            state.nodes[id] = node
            if !settings.singleNode && node.needsRepost && !node.rolePostPending && state.initialAssignmentDone {
                post(&state, &effects, id, settings)
            }
        }
    }

    static func onRolePosted(_ state: inout State, _ effects: inout [Effect], _ id: Int, _ ok: Bool, _ settings: Settings) {
        guard var node = state.nodes[id] else { return }
        node.rolePostPending = false
        if ok {
            node.isInitialized = true
            node.isHealthy = true
            node.totalsPending = true
        } else {
            node.isHealthy = false
            node.roleState = .unknown
        }
        state.nodes[id] = node
        if !state.refreshEnabled {
            if state.initialAssignmentDone && !state.nodes.values.contains(where: { $0.rolePostPending }) {
                state.refreshEnabled = true
                effects.append(.refresh(refreshPayload(state, settings: settings)))
            }
        } else {
            effects.append(.refresh(refreshPayload(state, settings: settings)))
        }
    }

    // MARK: - Role decision

    /// Counts for `n` instances under the policy; nil when no decision can be made.
    static func counts(_ n: Int, _ deviceCounts: [Int], _ settings: Settings) -> RoleCounts? {
        switch settings.policy {
        case .definite(let p, let d):
            return try? RoleRatio.definite(instanceCount: n, pRate: p, dRate: d)
        case .automatic(var sim, let sIn, let sOut):
            sim.parameters.tensorParallel = RoleRatio.tensorParallel(deviceCounts: deviceCounts)
            let a = sim.abilities(inputLength: sIn, outputLength: sOut)
            return try? RoleRatio.automatic(instanceCount: n, abilities: a, inputLength: sIn, outputLength: sOut)
        case .heterogeneous:
            return nil
        }
    }

    /// The first decision (§6.5 "Initial send"): decide, group, post.
    static func initialAssignment(_ state: inout State, _ effects: inout [Effect], _ settings: Settings) {
        let candidates = state.nodes.keys.sorted().filter { state.nodes[$0]!.phase == .candidate }
        if settings.singleNode {
            guard !candidates.isEmpty else { return }
            for id in candidates { state.nodes[id]!.isInitialized = true }
            state.initialAssignmentDone = true
            state.refreshEnabled = true
            effects.append(.refresh(refreshPayload(state, settings: settings)))
            return
        }
        guard candidates.count >= 2 else { return }
        var decided: [(id: Int, role: InstanceRole)]
        if case .heterogeneous = settings.policy {
            decided = candidates.map { id in
                (id, state.nodes[id]!.instance.hardwareType.flatMap(RoleRatio.heterogeneousRole) ?? .undefined)
            }
        } else {
            let devices = candidates.map { state.nodes[$0]!.instance.devices.count }
            guard let c = counts(candidates.count, devices, settings) else { return }
            decided = InstanceGrouping.assignRoles(candidates, counts: c)
        }
        let groups: [InstanceGroup]
        do {
            groups = try InstanceGrouping.group(decided, maxGroupSize: settings.maxGroupSize)
        } catch {
            for id in candidates { state.nodes[id]!.phase = .faulty }
            return
        }
        state.groups = groups
        for g in groups {
            for id in g.members { assign(&state, id, role: g.role(of: id)!, group: g) }
        }
        state.initialAssignmentDone = true
        for g in groups { for id in g.members { post(&state, &effects, id, settings) } }
        effects.append(.persistIdentity(state.registry))
    }

    static func assign(_ state: inout State, _ id: Int, role: InstanceRole, group: InstanceGroup) {
        state.nodes[id]!.role = role
        state.nodes[id]!.label = InstanceLabel.forRole(role)
        state.nodes[id]!.groupID = group.id
        state.nodes[id]!.peers = group.peers(of: id)
        state.registry.recordAssignment(state.nodes[id]!.key, role: role, groupID: group.id)
    }

    /// Scale-out admission of one probed node after the initial assignment (§7.3, DECISIONS 17/19).
    ///
    /// The role is the remembered one when it came back within the retention; otherwise the role the cluster
    /// lacks (no P → P, no D → D), else the one the policy's counts for N+1 call for. It joins the group with the
    /// fewest nodes of that role; its opposite-role peers get it added and are re-posted.
    static func admit(_ state: inout State, _ effects: inout [Effect], _ id: Int, _ settings: Settings) {
        guard let node = state.nodes[id] else { return }
        if settings.singleNode {
            state.nodes[id]!.isInitialized = true
            if state.refreshEnabled { effects.append(.refresh(refreshPayload(state, settings: settings))) }
            return
        }
        let assigned = state.nodes.values.filter { $0.id != id && $0.groupID != nil && $0.role != .undefined }
        let p = assigned.filter { $0.role == .prefill }.count
        let d = assigned.filter { $0.role == .decode }.count
        var role = node.role
        if role != .prefill && role != .decode {
            if case .heterogeneous = settings.policy {
                role = node.instance.hardwareType.flatMap(RoleRatio.heterogeneousRole) ?? .undefined
            } else if p == 0 {
                role = .prefill
            } else if d == 0 {
                role = .decode
            } else {
                let devices = (assigned.map(\.instance) + [node.instance]).map(\.devices.count)
                let target = counts(p + d + 1, devices, settings)
                role = (target?.prefill ?? 0) > p ? .prefill : .decode
            }
        }
        guard role == .prefill || role == .decode else {
            state.nodes[id]!.phase = .faulty
            return
        }
        if state.groups.isEmpty { state.groups = [InstanceGroup(id: 0, prefill: [], decode: [])] }
        func count(_ g: InstanceGroup) -> Int { role == .prefill ? g.prefill.count : g.decode.count }
        var gi = state.groups.indices.min { count(state.groups[$0]) < count(state.groups[$1]) }!
        if let remembered = node.groupID, let i = state.groups.firstIndex(where: { $0.id == remembered }) { gi = i }
        if role == .prefill { state.groups[gi].prefill.append(id) } else { state.groups[gi].decode.append(id) }
        let group = state.groups[gi]
        assign(&state, id, role: role, group: group)
        post(&state, &effects, id, settings)
        let opposite = role == .prefill ? group.decode : group.prefill
        for other in opposite where state.nodes[other] != nil {
            state.nodes[other]!.peers = group.peers(of: other)
            if state.nodes[other]!.phase == .candidate { post(&state, &effects, other, settings) }
        }
        effects.append(.persistIdentity(state.registry))
    }

    // MARK: - Publishing

    /// The ids that are published, with their filtered peers (§3.2, §5): locally publishable nodes whose
    /// filtered peer list — assigned, active, mutually active and publishable — is non-empty for P and D.
    public static func published(_ state: State, settings: Settings) -> [Int: [Int]] {
        if settings.singleNode {
            var out: [Int: [Int]] = [:]
            // Not before the first status answer gave the totals (the reference's INITIALIZING_STATIC_TOTAL_INFO;
            // a Coordinator refuses zero totals).
            for n in state.nodes.values where n.phase == .candidate && n.isHealthy && !n.totalsPending { out[n.id] = [] }
            return out
        }
        var set = Set(state.nodes.values.filter(\.isLocallyPublishable).map(\.id))
        var filtered: [Int: [Int]] = [:]
        while true {
            filtered = [:]
            for id in set {
                let n = state.nodes[id]!
                filtered[id] = n.peers.filter { peer in
                    set.contains(peer) && n.activePeers.contains(peer) && state.nodes[peer]!.activePeers.contains(id)
                }
            }
            let drop = set.filter { id in
                let r = state.nodes[id]!.role
                return (r == .prefill || r == .decode) && filtered[id]!.isEmpty
            }
            if drop.isEmpty { break }
            set.subtract(drop)
        }
        return filtered
    }

    /// The full refresh body.
    public static func refreshPayload(_ state: State, settings: Settings) -> RefreshPayload {
        let pub = published(state, settings: settings)
        let ids = pub.keys.sorted()
        let instances = ids.map { id -> RefreshPayload.Instance in
            let n = state.nodes[id]!
            let r = n.resources
            return RefreshPayload.Instance(
                id: id, ip: n.instance.ip, port: n.instance.ports.predict, metricPort: n.instance.ports.metric,
                interCommPort: n.instance.ports.interComm ?? 0, modelName: n.config?.modelName ?? "",
                staticInfo: .init(
                    groupID: n.groupID ?? 0, maxSeqLen: n.config?.maxSeqLen ?? 0,
                    maxOutputLen: n.config?.maxOutputLen ?? 0, totalSlotsNum: n.totalSlots,
                    totalBlockNum: n.totalBlocks, blockSize: n.config?.cacheBlockSize ?? 0, label: n.label.rawValue,
                    role: n.role.asciiCode, pPercentage: 0, virtualID: id),
                dynamicInfo: .init(
                    availSlotsNum: r.availSlotsNum, availBlockNum: r.availBlockNum,
                    waitingRequestNum: r.waitingRequestNum, runningRequestNum: r.runningRequestNum,
                    swappedRequestNum: r.swappedRequestNum, freeNpuBlockNums: r.freeNpuBlockNums,
                    freeCpuBlockNums: r.freeCpuBlockNums, totalNpuBlockNums: r.totalNpuBlockNums,
                    totalCpuBlockNums: r.totalCpuBlockNums, peers: pub[id]!))
        }
        return RefreshPayload(ids: ids, instances: instances)
    }
}
