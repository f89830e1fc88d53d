import Foundation
import Logging
import MSCore
import Synchronization
import TestSupport
import Testing

/// Lease + transaction-lock election against a real etcd: one leader at a time, takeover with a greater term,
/// and a fence that closes by the leader's own clock when etcd goes away.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct LeaderElectionTests {
    final class Events: Sendable {
        let log = Mutex<[String]>([])
        func add(_ s: String) { log.withLock { $0.append(s) } }
        var all: [String] { log.withLock { $0 } }
    }

    func election(_ client: EtcdClient, _ name: String, ttl: Int64 = 2) -> LeaderElection {
        var cfg = LeaderElection.Configuration(lockKey: "/test/leader-lock", value: name, ttlSeconds: ttl)
        cfg.pollInterval = .milliseconds(200)
        return LeaderElection(client: client, configuration: cfg, logger: Logger(label: "test.\(name)"))
    }

    func handlers(_ name: String, _ events: Events) -> LeaderElection.Handlers {
        .init(elected: { term in events.add("\(name) elected \(term)") }, demoted: { why in events.add("\(name) demoted") })
    }

    @Test func oneLeaderThenTakeoverWithAGreaterTerm() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = EtcdClient(endpoints: [etcd.endpoint], timeoutMilliseconds: 2000)
        try await etcd.waitServing(client)
        let events = Events()
        // a lease long enough that a loaded machine (2 cores shared with builds) never misses a keep-alive here
        let a = election(client, "a", ttl: 6), b = election(client, "b", ttl: 6)
        let ta = Task { await a.run(handlers("a", events)) }
        #expect(await eventually(within: 10) { a.fence.term != nil })
        let tb = Task { await b.run(handlers("b", events)) }
        #expect(await eventually(within: 10) { b.status.role == .standby })
        #expect(b.status.holder == "a")
        #expect(b.fence.term == nil)
        let termA = try #require(a.fence.term)
        #expect(try await client.get("/test/leader-lock").0?.value == Array("a".utf8))
        // the leader stops (and gives its lease back): the standby leads with a greater term
        ta.cancel()
        await ta.value
        #expect(a.fence.term == nil)
        #expect(await eventually(within: 10) { b.fence.term != nil })
        #expect(try #require(b.fence.term) > termA)
        #expect(events.all.filter { $0.hasSuffix("elected \(termA)") } == ["a elected \(termA)"])
        tb.cancel()
        await tb.value
    }

    @Test func aLeaderCutOffFromEtcdStopsActingBeforeItsLeaseCanExpire() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = EtcdClient(endpoints: [etcd.endpoint], timeoutMilliseconds: 2000)
        try await etcd.waitServing(client)
        let events = Events()
        let ttl: Int64 = 6
        let a = election(client, "a", ttl: ttl)
        let ta = Task { await a.run(handlers("a", events)) }
        #expect(await eventually(within: 20) { a.fence.term != nil })
        // keep-alives hold it past the TTL
        try await Task.sleep(for: .seconds(ttl + 1))
        #expect(a.fence.term != nil)
        let lastDeadline = try #require(a.fence.deadline)
        etcd.stop()
        let stoppedAt = ContinuousClock.now
        // it stops acting by its own clock, with etcd gone: nobody tells it
        #expect(await eventually(within: Double(ttl) + 10) { a.fence.term == nil })
        // the deadline it acted under was that of its last confirmed keep-alive (ttl - margin after it was sent),
        // so it closed before etcd could have handed the lock to anyone else
        #expect(lastDeadline < stoppedAt + .seconds(ttl))
        #expect(await eventually(within: 5) { events.all.contains("a demoted") })
        #expect(a.status.etcdError != nil)
        // etcd returns: leadership settles again
        try etcd.start()
        #expect(await eventually(within: 30) { a.fence.term != nil })
        ta.cancel()
        await ta.value
    }
}
