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
        let a = election(client, "a"), b = election(client, "b")
        let ta = Task { await a.run(handlers("a", events)) }
        #expect(await eventually(within: 10) { a.fence.term != nil })
        let tb = Task { await b.run(handlers("b", events)) }
        #expect(await eventually(within: 10) { b.status.role == .standby })
        #expect(b.status.holder == "a")
        #expect(b.fence.term == nil)
        let termA = a.fence.term!
        #expect(try await client.get("/test/leader-lock").0?.value == Array("a".utf8))
        // the leader stops (and gives its lease back): the standby leads with a greater term
        ta.cancel()
        await ta.value
        #expect(a.fence.term == nil)
        #expect(await eventually(within: 10) { b.fence.term != nil })
        #expect(b.fence.term! > termA)
        #expect(events.all.filter { $0.hasSuffix("elected \(termA)") } == ["a elected \(termA)"])
        tb.cancel()
        await tb.value
    }

    @Test func aLeaderCutOffFromEtcdStopsActingBeforeItsLeaseCanExpire() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = EtcdClient(endpoints: [etcd.endpoint], timeoutMilliseconds: 500)
        try await etcd.waitServing(client)
        let events = Events()
        let a = election(client, "a", ttl: 3)
        let ta = Task { await a.run(handlers("a", events)) }
        #expect(await eventually(within: 10) { a.fence.term != nil })
        // keep-alives hold it well past the TTL
        try await Task.sleep(for: .seconds(4))
        #expect(a.fence.term != nil)
        let lastDeadline = a.fence.deadline!
        etcd.stop()
        let stoppedAt = ContinuousClock.now
        #expect(await eventually(within: 5) { a.fence.term == nil })
        // it stopped acting no later than the deadline of its last confirmed keep-alive (ttl - margin after it was
        // sent), i.e. before etcd could have handed the lock to anyone else
        #expect(ContinuousClock.now < stoppedAt + .seconds(3))
        #expect(lastDeadline < stoppedAt + .seconds(3))
        #expect(await eventually(within: 5) { events.all.contains("a demoted") })
        #expect(a.status.etcdError != nil)
        // etcd returns: leadership settles again
        try etcd.start()
        #expect(await eventually(within: 20) { a.fence.term != nil })
        ta.cancel()
        await ta.value
    }
}
