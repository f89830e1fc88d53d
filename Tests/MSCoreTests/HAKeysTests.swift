import Foundation
import Logging
import MSCore
import TestSupport
import Testing

/// Key prefixes of an HA cluster and the etcd member list (`database_server_dns` with several members).
@Suite struct HAKeysTests {
    @Test func prefixIsTheReferencesKeysUnlessANamespaceOrClusterNameIsSet() {
        #expect(HAKeys.prefix(environment: [:]) == "")
        #expect(HAKeys.prefix(environment: ["POD_NAMESPACE": ""]) == "")
        #expect(HAKeys.prefix(environment: ["POD_NAMESPACE": "mindie"]) == "/mindie")
        #expect(HAKeys.prefix(environment: ["MINDIE_MS_CLUSTER_NAME": "pd-a"]) == "/pd-a")
        #expect(HAKeys.prefix(environment: ["POD_NAMESPACE": "mindie", "MINDIE_MS_CLUSTER_NAME": "pd-a"]) == "/mindie/pd-a")
    }

    @Test func memberLists() {
        typealias E = EtcdClient.Endpoint
        #expect(E.list("etcd.mindie.svc", defaultPort: 2379) == [E(host: "etcd.mindie.svc", port: 2379)])
        #expect(E.list("a:2381, b ,10.0.0.3:2379", defaultPort: 2400)
                == [E(host: "a", port: 2381), E(host: "b", port: 2400), E(host: "10.0.0.3", port: 2379)])
        #expect(E.list("[::1]:2379,::1", defaultPort: 2380) == [E(host: "::1", port: 2379), E(host: "::1", port: 2380)])
        for bad in ["", "a,,b", "a:", "a:0", "a:70000", "a:x", ":2379", "[::1]x"] {
            #expect(E.list(bad, defaultPort: 2379) == nil, "\(bad)")
        }
    }

}

// beside the other real-etcd tests, so that they run one at a time: several etcds fsyncing at once on a loaded
// machine delay the keep-alives those tests time
extension LeaderElectionTests {
    /// A member that does not answer costs its deadline once: the client moves to the next member and starts there
    /// from then on, and an election on the list works as on one member.
    @Test func aDeadFirstMemberIsSkippedAndTheAnsweringOneIsKept() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let dead = EtcdClient.Endpoint(host: "127.0.0.1", port: deadPort())
        let client = EtcdClient(endpoints: [dead, etcd.endpoint], timeoutMilliseconds: 2000)
        try await etcd.waitServing(EtcdClient(endpoints: [etcd.endpoint], timeoutMilliseconds: 2000))
        #expect(client.current == dead)
        try await client.put("/t/k", Array("v".utf8))
        #expect(client.current == etcd.endpoint)
        #expect(try await client.get("/t/k").0?.value == Array("v".utf8))
        var cfg = LeaderElection.Configuration(lockKey: "/t/lock", value: "me", ttlSeconds: 4)
        cfg.pollInterval = .milliseconds(200)
        let e = LeaderElection(client: client, configuration: cfg, logger: Logger(label: "test"))
        let t = Task { await e.run(.init(elected: { _ in }, demoted: { _ in })) }
        #expect(await eventually(within: 10) { e.fence.term != nil })
        t.cancel()
        await t.value
    }

    /// Both members down: the error names the last one tried; the first to answer again is used.
    @Test func everyMemberDownIsUnreachableThenTheLiveOneIsFound() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        try await etcd.waitServing(EtcdClient(endpoints: [etcd.endpoint], timeoutMilliseconds: 2000))
        let dead = EtcdClient.Endpoint(host: "127.0.0.1", port: deadPort())
        let client = EtcdClient(endpoints: [etcd.endpoint, dead], timeoutMilliseconds: 2000)
        try await client.put("/t/k2", Array("1".utf8))
        etcd.stop()
        await #expect(throws: EtcdError.self) { _ = try await client.get("/t/k2") }
        try etcd.start()
        try await etcd.waitServing(EtcdClient(endpoints: [etcd.endpoint], timeoutMilliseconds: 2000))
        #expect(try await client.get("/t/k2").0?.value == Array("1".utf8))
        #expect(client.current == etcd.endpoint)
    }
}
