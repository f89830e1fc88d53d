import Foundation
import MSCore
import Synchronization
import Testing
import TestSupport

@testable import Gateway

private func info(_ id: InstanceID, _ role: InstanceRole, peers: [InstanceID] = [], free: Bool = true, offline: Bool = false) -> InstanceInfo {
    InstanceInfo(id: id, role: role, totalSlots: 10, totalBlocks: 100, availSlots: free ? 10 : 0, peers: peers, offline: offline)
}

@Suite("scheduling plug-ins")
struct SchedulingPluginTests {
    @Test("the registry builds the policy each algorithm_type names; load_balance is DIGS's, not a plug-in")
    func registry() {
        #expect(PolicyRegistry.builtIn.names == ["round_robin", "cache_affinity", "least_load", "prefix_affinity"])
        var c = CoordinatorConfig.Scheduler()
        c.deployMode = .singleNode
        c.schedulerType = .default
        for name in PolicyRegistry.builtIn.names {
            c.algorithm = CoordinatorConfig.Algorithm(rawValue: name)!
            let s = Scheduler(config: c)
            #expect(s.policy.map { type(of: $0).name } == name)
        }
        c.algorithm = .cacheAffinity
        #expect(SchedulingHost(config: c).needs == .prompt)
        c.algorithm = .roundRobin
        #expect(SchedulingHost(config: c).needs == [])
        // cache_affinity places nothing in PD (the config refuses the pairing; the scheduler agrees)
        c.deployMode = .pdSeparate
        c.algorithm = .cacheAffinity
        #expect(Scheduler(config: c).policy == nil)
        c.schedulerType = .digs
        c.algorithm = .loadBalance
        var digs = Scheduler(config: c)
        #expect(digs.policy == nil)
        // DIGS's demand and D score come from the prompt's size: without it every request weighs 0 and lands on one D
        #expect(SchedulingHost(config: c).needs == .prompt)
        #expect(digs.select(RequestFeatures(dialect: .openAI), snapshot: InstanceSnapshot([info(1, .prefill)]), load: LoadCounters()) == nil)
    }

    @Test("a policy added to a registry is found by name and used")
    func customPolicy() {
        struct LastInstance: SchedulingPolicy {
            static let name = "last_instance"
            static let needs: RequestNeeds = []
            static let scope = PolicyStateScope.loop
            static let modes = PolicyModes.singleNode
            init(config: CoordinatorConfig.Scheduler) {}
            mutating func select(_ request: RequestFeatures, from candidates: Candidates, load: LoadCounters) -> SchedulingDecision? {
                candidates.entryInstances.last(where: CandidateFilter.available).map { .single($0.id) }
            }
        }
        let registry = PolicyRegistry(PolicyRegistry.builtIn.policies + [LastInstance.self])
        #expect(registry.policy(named: "last_instance") != nil)
        var p = LastInstance(config: CoordinatorConfig.Scheduler())
        let snap = InstanceSnapshot([info(1, .mixed), info(2, .mixed), info(3, .mixed, free: false)])
        #expect(p.select(RequestFeatures(dialect: .openAI), from: Candidates(snap, pd: false), load: LoadCounters()) == .single(2))
    }

    @Test("shared candidate filters: online, has resources, not excluded, peer of P")
    func filters() {
        #expect(CandidateFilter.online(info(1, .mixed)) && !CandidateFilter.online(info(1, .mixed, offline: true)))
        #expect(CandidateFilter.hasResources(info(1, .mixed)) && !CandidateFilter.hasResources(info(1, .mixed, free: false)))
        #expect(!CandidateFilter.available(info(1, .mixed, offline: true)))
        #expect(!CandidateFilter.notExcluded([1])(info(1, .mixed)) && CandidateFilter.notExcluded([1])(info(2, .mixed)))
        #expect(CandidateFilter.peer(of: 1)(info(5, .decode, peers: [1])))
        #expect(!CandidateFilter.peer(of: 1)(info(5, .decode, peers: [2])))
        #expect(!CandidateFilter.peer(of: 1)(info(5, .prefill, peers: [1])))
        let snap = InstanceSnapshot([info(1, .prefill), info(2, .prefill), info(5, .decode, peers: [1]), info(6, .decode, peers: [1, 2])])
        #expect(Candidates(snap, pd: true).entryInstances.map(\.id) == [1, 2])
        #expect(Candidates(snap, pd: true).decodes(peerOf: 2).map(\.id) == [6])
    }

    @Test("PD round robin: nil only when no pair can take the request (a P whose next D is full offers its other D)")
    func roundRobinPairNilMeansNone() {
        var p = RoundRobinPolicy()
        // P1's decode cursor points at D11, which is full; D12 is free
        let snap = InstanceSnapshot([info(1, .prefill), info(11, .decode, peers: [1], free: false), info(12, .decode, peers: [1])])
        #expect(p.selectPair(snap) == .pair(prefill: 1, decode: 12))
        // nothing free at all: nil
        var q = RoundRobinPolicy()
        let full = InstanceSnapshot([info(1, .prefill), info(11, .decode, peers: [1], free: false)])
        #expect(q.selectPair(full) == nil)
        // a pass that finds a pair at once keeps the reference's order: P round robin, D cursor per P
        var r = RoundRobinPolicy()
        let two = InstanceSnapshot([info(1, .prefill), info(2, .prefill), info(11, .decode, peers: [1, 2]), info(12, .decode, peers: [1, 2])])
        let picks = (0..<4).map { _ in r.selectPair(two) }
        #expect(picks == [.pair(prefill: 2, decode: 11), .pair(prefill: 1, decode: 11), .pair(prefill: 2, decode: 12), .pair(prefill: 1, decode: 12)])
    }
}

@Suite("CapacitySignal")
struct CapacitySignalTests {
    final class Woken: Sendable {
        let ids = Mutex<[UInt64]>([])
        func wake(_ id: UInt64) -> CapacitySignal.Wake { { self.ids.withLock { $0.append(id) } } }
        var all: [UInt64] { ids.withLock { $0 } }
    }

    @Test("a release wakes every waiting request once; the next release wakes nobody")
    func wakesOnce() {
        let s = CapacitySignal(), w = Woken()
        let g = s.generation
        #expect(s.park(1, seen: g, wake: w.wake(1)))
        #expect(s.park(2, seen: g, wake: w.wake(2)))
        #expect(s.waitingCount == 2 && w.all.isEmpty)
        s.released()
        #expect(Set(w.all) == [1, 2] && w.all.count == 2)
        #expect(s.waitingCount == 0 && s.parkCount == 2 && s.wakeCount == 2)
        s.released()
        #expect(w.all.count == 2)
    }

    @Test("a release between reading the view and parking is not lost: the park fails and the caller asks again")
    func noLostWakeup() {
        let s = CapacitySignal(), w = Woken()
        let seen = s.generation
        s.released()  // room appeared after `seen`, while the request was looking at the old view
        #expect(!s.park(1, seen: seen, wake: w.wake(1)))
        #expect(s.waitingCount == 0)
        #expect(s.park(1, seen: s.generation, wake: w.wake(1)))
    }

    @Test("a request that ended is not woken")
    func removed() {
        let s = CapacitySignal(), w = Woken()
        #expect(s.park(7, seen: s.generation, wake: w.wake(7)))
        s.remove(7)
        s.released()
        #expect(w.all.isEmpty && s.waitingCount == 0)
    }

    @Test("the cluster releases on a new view, a circuit that closes and a D link that comes back")
    func clusterSources() {
        let c = Cluster(deployPD: true)
        var g = c.capacity.generation
        c.replace(ClusterView(entries: [], initialized: true, deployPD: true))
        #expect(c.capacity.generation > g)
        g = c.capacity.generation
        _ = c.unlinked.withLock { $0.insert(3) }
        #expect(c.capacity.generation == g)  // a link going down frees nothing
        _ = c.unlinked.withLock { $0.remove(3) }
        #expect(c.capacity.generation > g)
        let load = c.load(for: InstanceKey(id: 1, ip: "127.0.0.1", port: 1))
        g = c.capacity.generation
        #expect(load.recordFailure(threshold: 1, now: 1, backoff: { _ in 1_000 }))
        #expect(c.capacity.generation > g)
        g = c.capacity.generation
        load.recordSuccess()
        #expect(c.capacity.generation > g)
    }
}

@Suite("waiting for capacity")
struct CapacityWaitTests {
    @Test("single node: a request that finds every instance full waits without re-polling and is scheduled by the refresh that frees a slot")
    func singleNodeWokenByRefresh() async throws {
        let h = try Harness(instances: 1)
        let full = h.instanceJSON(0).replacingOccurrences(of: "\"avail_slots_num\":200", with: "\"avail_slots_num\":0")
        #expect(try await h.refresh([full]).status == 200)
        let capacity = h.coordinator.cluster.capacity
        let pending = Task { try await h.chat("wait for me", maxTokens: 2) }
        #expect(await eventually(within: 10) { capacity.waitingCount == 1 })
        // other traffic and a refresh that frees nothing: the request asks again once per release, never on a timer
        #expect(try await h.get(port: h.coordinator.dataPort, "/health").status == 200)
        #expect(try await h.refresh([full]).status == 200)
        #expect(await eventually(within: 10) { capacity.parkCount == 2 && capacity.waitingCount == 1 })
        #expect(try await h.get(port: h.coordinator.dataPort, "/health").status == 200)
        #expect(capacity.parkCount == 2 && capacity.wakeCount == 1)
        try await h.refreshAll()
        let r = try await pending.value
        #expect(r.status == 200, "\(r.text)")
        #expect(capacity.parkCount == 2 && capacity.wakeCount == 2 && capacity.waitingCount == 0)
        #expect(try await h.simMetric(0, "request_received_total") == 1)
    }

    @Test("single node: a request still waiting at schedule_timeout is answered and leaves the queue")
    func timesOutWhileWaiting() async throws {
        let h = try Harness(instances: 1, configure: { $0.exceptions.scheduleTimeout = 1 })
        let full = h.instanceJSON(0).replacingOccurrences(of: "\"avail_slots_num\":200", with: "\"avail_slots_num\":0")
        #expect(try await h.refresh([full]).status == 200)
        let r = try await h.chat("never", maxTokens: 2)
        #expect(r.status != 200)
        #expect(h.coordinator.cluster.capacity.waitingCount == 0)
        #expect(h.coordinator.cluster.capacity.parkCount == 1)
    }

    @Test("PD: a request with no free D waits and is sent once a refresh frees the D")
    func pdWokenByRefresh() async throws {
        let h = try await PDHarness(prefills: 1, decodes: 1)
        let fullD = h.instanceJSON(1).replacingOccurrences(of: "\"avail_slots_num\":200", with: "\"avail_slots_num\":0")
        #expect(try await h.refresh([h.instanceJSON(0), fullD], ids: [0, 1]).status == 200)
        let capacity = h.coordinator.cluster.capacity
        let pending = Task { try await h.chat("pd waits", maxTokens: 2) }
        #expect(await eventually(within: 10) { capacity.waitingCount == 1 })
        #expect(capacity.parkCount == 1 && capacity.wakeCount == 0)
        try await h.refreshAll()
        let r = try await pending.value
        #expect(r.status == 200, "\(r.text)")
        #expect(capacity.parkCount == 1 && capacity.wakeCount == 1)
    }
}
