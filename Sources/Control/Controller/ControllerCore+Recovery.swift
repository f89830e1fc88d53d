import Foundation

extension ControllerCore {
    /// Whether a restart should recover instead of deciding (§9 "Takeover"): some probed server already
    /// reports a role state other than RoleUnknown.
    public static func serversHaveRoles(_ statuses: [InstanceKey: ServerStatus]) -> Bool {
        statuses.values.contains { $0.roleState != .unknown }
    }

    /// Restart recovery (§9 "Takeover"): the state of `file` restricted to `table`, with each server's live
    /// report adopted.
    ///
    /// - A server that answered gets its role state, current role, active peers and counters from `statuses`;
    ///   when it runs P or D and that differs from the record, its actual role is adopted (it moves group side).
    /// - A server that did not answer is unhealthy with RoleUnknown.
    /// - Peers are rebuilt from the groups; instances of the table not in the file are left to the next pass
    ///   (scale-out).
    /// - Parameters:
    ///   - file: the loaded process state.
    ///   - table: the instances of the current rank table.
    ///   - statuses: the status replies by key (missing = no valid reply).
    public static func recover(
        file: ProcessStateFile, table: [DiscoveredInstance], statuses: [InstanceKey: ServerStatus]
    ) -> State {
        var state = file.recover(table: table)
        for id in state.nodes.keys.sorted() {
            var n = state.nodes[id]!
            guard let st = statuses[n.key] else {
                n.isHealthy = false
                n.roleState = .unknown
                state.nodes[id] = n
                continue
            }
            n.isHealthy = true
            n.roleState = st.roleState
            n.currentRole = st.currentRole
            n.activePeers = st.activePeers
            n.resources = st.resources
            if (st.currentRole == .prefill || st.currentRole == .decode) && st.currentRole != n.role,
                let gid = n.groupID, let gi = state.groups.firstIndex(where: { $0.id == gid })
            {
                state.groups[gi].prefill.removeAll { $0 == id }
                state.groups[gi].decode.removeAll { $0 == id }
                state.groups[gi].flex.removeAll { $0 == id }
                if st.currentRole == .prefill {
                    state.groups[gi].prefill.append(id)
                    state.groups[gi].prefill.sort()
                } else {
                    state.groups[gi].decode.append(id)
                    state.groups[gi].decode.sort()
                }
                n.role = st.currentRole
                n.label = InstanceLabel.forRole(st.currentRole)
                state.registry.recordAssignment(n.key, role: n.role, groupID: gid)
            }
            state.nodes[id] = n
        }
        for g in state.groups {
            for id in g.members where state.nodes[id] != nil { state.nodes[id]!.peers = g.peers(of: id) }
        }
        return state
    }

    /// Releases an instance at the Controller's request (`/v1/terminate-service` after a successful
    /// `stopService`): its key is marked expired (ignored while it stays in the table), the node is deleted,
    /// its peers are re-posted without it and the coordinators get a refresh.
    /// - Returns: the new state and effects; unchanged state and no effect when `id` is unknown.
    public static func expire(_ s: State, id: Int, settings: Settings) -> (State, [Effect]) {
        guard let node = s.nodes[id] else { return (s, []) }
        var state = s
        var effects: [Effect] = []
        state.registry.markExpired(node.key)
        var reposts: Set<Int> = []
        remove(&state, id, &reposts)
        for other in reposts.sorted() { post(&state, &effects, other, settings) }
        effects.append(.persistIdentity(state.registry))
        if state.refreshEnabled { effects.append(.refresh(refreshPayload(state, settings: settings))) }
        return (state, effects)
    }
}
