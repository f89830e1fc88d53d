public import Foundation
public import MSCore

/// A role switch in progress (§6.5 "Switch X from P to D"; D→P is the same without the query_tasks step).
public struct RoleSwitch: Sendable, Equatable {
    /// A switch to perform.
    public struct Request: Sendable, Equatable {
        public var id: Int
        public var to: InstanceRole
        /// A D→P switch that replaces this dead P (re-balancing): when it completes, the dead P's assignment
        /// becomes D, so that on its return the group is back to its decided shape instead of one P too many.
        public var replacing: Int?

        public init(id: Int, to: InstanceRole, replacing: Int? = nil) {
            self.id = id
            self.to = to
            self.replacing = replacing
        }
    }

    public enum Phase: Sendable, Equatable {
        /// Waiting for the offline answer.
        case offline
        /// Polling the task count until ≤ 0 or `tasks_end_wait_seconds`.
        case draining(since: Date)
        /// P→D only: waiting for `is_end` from each remaining D.
        case queryingTasks(remaining: [Int])
    }

    public var request: Request
    public var phase: Phase

    var change: CoordinatorAPI.RoleChange { request.to == .decode ? .prefillToDecode : .decodeToPrefill }
}

extension ControllerCore {
    static func requestSwitch(
        _ state: inout State, _ effects: inout [Effect], _ r: RoleSwitch.Request, _ now: Date, _ settings: Settings
    ) {
        guard state.activeSwitch == nil else {
            state.pendingSwitches.append(r)
            return
        }
        // Unhealthy, unknown, already-matching or non-P/D nodes are skipped.
        guard let n = state.nodes[r.id], n.isHealthy, n.groupID != nil, r.to == .prefill || r.to == .decode,
            n.role == r.to.opposite
        else {
            startNextSwitch(&state, &effects, now, settings)
            return
        }
        state.activeSwitch = RoleSwitch(request: r, phase: .offline)
        effects.append(.offline(ids: [r.id]))
    }

    static func startNextSwitch(_ state: inout State, _ effects: inout [Effect], _ now: Date, _ settings: Settings) {
        guard state.activeSwitch == nil, !state.pendingSwitches.isEmpty else { return }
        let next = state.pendingSwitches.removeFirst()
        requestSwitch(&state, &effects, next, now, settings)
    }

    /// Ends the active switch without changing roles: online again (if it went offline) and refresh.
    static func abortSwitch(
        _ state: inout State, _ effects: inout [Effect], online: Bool, _ now: Date, _ settings: Settings
    ) {
        guard let s = state.activeSwitch else { return }
        state.activeSwitch = nil
        if online { effects.append(.online(ids: [s.request.id])) }
        if state.refreshEnabled { effects.append(.refresh(refreshPayload(state, settings: settings))) }
        startNextSwitch(&state, &effects, now, settings)
    }

    static func onOffline(_ state: inout State, _ effects: inout [Effect], _ ok: Bool, _ now: Date, _ settings: Settings) {
        guard let s = state.activeSwitch, s.phase == .offline else { return }
        guard ok else { return abortSwitch(&state, &effects, online: false, now, settings) }
        state.activeSwitch!.phase = .draining(since: now)
        effects.append(.pollTasks(ids: [s.request.id], after: 0))
    }

    static func onTaskCount(_ state: inout State, _ effects: inout [Effect], _ n: Int?, _ now: Date, _ settings: Settings) {
        guard let s = state.activeSwitch, case .draining(let since) = s.phase else { return }
        if let n, n <= 0 {
            if s.request.to == .decode, let g = state.groups.first(where: { $0.id == state.nodes[s.request.id]?.groupID }) {
                let ds = g.decode.filter { state.nodes[$0] != nil }
                if !ds.isEmpty {
                    state.activeSwitch!.phase = .queryingTasks(remaining: ds)
                    for d in ds {
                        effects.append(.queryTasks(prefillID: s.request.id, decodeID: d, change: s.change, after: 0))
                    }
                    return
                }
            }
            return completeSwitch(&state, &effects, now, settings)
        }
        if now.timeIntervalSince(since) >= settings.tasksEndWaitSeconds {
            return abortSwitch(&state, &effects, online: true, now, settings)
        }
        effects.append(.pollTasks(ids: [s.request.id], after: 1))
    }

    static func onQueryTasks(
        _ state: inout State, _ effects: inout [Effect], _ d: Int, _ isEnd: Bool?, _ now: Date, _ settings: Settings
    ) {
        guard let s = state.activeSwitch, case .queryingTasks(var remaining) = s.phase, remaining.contains(d) else { return }
        guard let isEnd else { return abortSwitch(&state, &effects, online: true, now, settings) }
        guard isEnd else {
            effects.append(.queryTasks(prefillID: s.request.id, decodeID: d, change: s.change, after: 1))
            return
        }
        remaining.removeAll { $0 == d }
        state.activeSwitch!.phase = .queryingTasks(remaining: remaining)
        if remaining.isEmpty { completeSwitch(&state, &effects, now, settings) }
    }

    /// Steps 4–7: give X its new role, re-link the group, post everyone, refresh.
    static func completeSwitch(_ state: inout State, _ effects: inout [Effect], _ now: Date, _ settings: Settings) {
        guard let s = state.activeSwitch, let gid = state.nodes[s.request.id]?.groupID,
            let gi = state.groups.firstIndex(where: { $0.id == gid })
        else { return abortSwitch(&state, &effects, online: true, now, settings) }
        let x = s.request.id
        state.groups[gi].prefill.removeAll { $0 == x }
        state.groups[gi].decode.removeAll { $0 == x }
        if s.request.to == .decode { state.groups[gi].decode.append(x) } else { state.groups[gi].prefill.append(x) }
        state.groups[gi].prefill.sort()
        state.groups[gi].decode.sort()
        let g = state.groups[gi]
        assign(&state, x, role: s.request.to, group: g)
        state.nodes[x]!.roleState = .switching
        state.nodes[x]!.isHealthy = false
        state.nodes[x]!.isInitialized = false
        for id in g.members where id != x && state.nodes[id] != nil {
            state.nodes[id]!.peers = g.peers(of: id)
        }
        if let dead = s.request.replacing { demoteReplacedPrefill(&state, dead, group: gi) }
        for id in state.groups[gi].members where state.nodes[id] != nil { post(&state, &effects, id, settings) }
        state.activeSwitch = nil
        effects.append(.persistIdentity(state.registry))
        if state.refreshEnabled { effects.append(.refresh(refreshPayload(state, settings: settings))) }
        startNextSwitch(&state, &effects, now, settings)
    }

    /// Re-balancing beyond the reference (docs/decisions.md): a P dead for `prefillLossGrace` is replaced by a
    /// healthy D of its group through the normal D→P switch, provided the group keeps at least one healthy D.
    /// One replacement at a time, never during another switch; a switch that aborts is tried again one grace
    /// period later.
    static func rebalanceLostPrefill(_ state: inout State, _ effects: inout [Effect], _ now: Date, _ settings: Settings) {
        guard settings.prefillLossGrace > 0, !settings.singleNode, state.initialAssignmentDone,
            state.activeSwitch == nil, state.pendingSwitches.isEmpty
        else { return }
        if case .heterogeneous = settings.policy { return }  // roles follow the hardware there
        for (dead, since) in state.deadPrefill.sorted(by: { $0.key < $1.key })
        where now.timeIntervalSince(since) >= settings.prefillLossGrace {
            guard let gid = state.nodes[dead]?.groupID ?? state.registry.entry(id: dead)?.groupID,
                let g = state.groups.first(where: { $0.id == gid })
            else {
                state.deadPrefill[dead] = nil
                continue
            }
            func live(_ id: Int) -> ControllerNode? {
                guard let n = state.nodes[id], n.phase == .candidate, n.isHealthy else { return nil }
                return n
            }
            let liveP = g.prefill.filter { $0 != dead }.compactMap(live)
            let liveD = g.decode.compactMap(live)
            guard liveD.count >= 2 else { continue }
            let plan = RoleSwitchPlanner.plan(
                members: liveP + liveD, target: RoleCounts(prefill: liveP.count + 1, decode: liveD.count - 1),
                allocations: [:])
            guard var request = plan.first else { continue }
            request.replacing = dead
            state.deadPrefill[dead] = now  // an aborted switch is retried one grace period later
            requestSwitch(&state, &effects, request, now, settings)
            return
        }
    }

    /// The replaced P's assignment becomes D: in the group, in the registry (a removed P that comes back within the
    /// retention is admitted as D) and, if it is still listed, on the node (it gets the D role posted on return).
    static func demoteReplacedPrefill(_ state: inout State, _ dead: Int, group gi: Int) {
        state.deadPrefill[dead] = nil
        guard state.groups[gi].prefill.contains(dead) || state.nodes[dead] == nil else { return }
        if let n = state.nodes[dead] {
            if n.isHealthy {
                // it came back while the switch ran: it leaves P the normal way
                state.pendingSwitches.append(RoleSwitch.Request(id: dead, to: .decode))
                return
            }
            state.groups[gi].prefill.removeAll { $0 == dead }
            state.groups[gi].decode.append(dead)
            state.groups[gi].decode.sort()
            assign(&state, dead, role: .decode, group: state.groups[gi])
            state.nodes[dead]!.isInitialized = false
        } else if let e = state.registry.entry(id: dead) {
            state.registry.recordAssignment(e.key, role: .decode, groupID: state.groups[gi].id)
        }
        for id in state.groups[gi].members where state.nodes[id] != nil {
            state.nodes[id]!.peers = state.groups[gi].peers(of: id)
        }
    }

    /// The periodic re-decision (§6.5): recompute each group's counts with the analytic model and the
    /// coordinator's lengths, then queue the switches that close the gap.
    static func onRoleDecisionTimer(
        _ state: inout State, _ effects: inout [Effect], _ info: CoordinatorInfo, _ now: Date, _ settings: Settings
    ) {
        guard settings.autoSwitching, var sim = settings.simulator, info.inputLength > 0, info.outputLength > 0,
            state.activeSwitch == nil, state.pendingSwitches.isEmpty
        else { return }
        let allocations = Dictionary(info.scheduleInfo.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for g in state.groups {
            let members = g.members.compactMap { state.nodes[$0] }
            guard members.count >= 2 else { continue }
            sim.parameters.tensorParallel = RoleRatio.tensorParallel(deviceCounts: members.map(\.instance.devices.count))
            let a = sim.abilities(inputLength: info.inputLength, outputLength: info.outputLength)
            guard
                let target = try? RoleRatio.automatic(
                    instanceCount: members.count, abilities: a, inputLength: info.inputLength,
                    outputLength: info.outputLength)
            else { continue }
            state.pendingSwitches += RoleSwitchPlanner.plan(
                members: members, target: target, allocations: allocations)
        }
        startNextSwitch(&state, &effects, now, settings)
    }
}

/// Which nodes switch when a group's target counts differ from its current ones (§6.5).
public enum RoleSwitchPlanner {
    /// The switches that bring `members` to `target`.
    ///
    /// If the target #P exceeds the current #P, that many non-P, non-flex nodes become P (and symmetrically for
    /// D). Candidate order: role U first; then label — prefer-D first when making P, prefer-P first when making
    /// D (the reference's preference, kept); then fewer allocated slots, then fewer blocks; ties by id.
    public static func plan(
        members: [ControllerNode], target: RoleCounts, allocations: [Int: CoordinatorInfo.Schedule]
    ) -> [RoleSwitch.Request] {
        let p = members.filter { $0.role == .prefill }.count
        let d = members.filter { $0.role == .decode }.count
        let (to, count): (InstanceRole, Int) =
            target.prefill > p ? (.prefill, target.prefill - p) : target.decode > d ? (.decode, target.decode - d) : (.undefined, 0)
        guard count > 0 else { return [] }
        let preferred: InstanceLabel = to == .prefill ? .preferDecode : .preferPrefill
        let candidates = members.filter { $0.role != to && $0.role != .flex && $0.isHealthy }
        let ordered = candidates.sorted { a, b in
            func key(_ n: ControllerNode) -> (Int, Int, Int, Int, Int) {
                let alloc = allocations[n.id]
                return (n.role == .undefined ? 0 : 1, n.label == preferred ? 0 : 1, alloc?.allocatedSlots ?? 0,
                        alloc?.allocatedBlocks ?? 0, n.id)
            }
            return key(a) < key(b)
        }
        return ordered.prefix(count).map { RoleSwitch.Request(id: $0.id, to: to) }
    }
}
