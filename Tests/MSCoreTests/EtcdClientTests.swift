import Foundation
import Logging
import MSCore
import Synchronization
import TestSupport
import Testing

/// The etcd v3 client and the leader election against a real etcd (Debian `etcd-server`) on loopback.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct EtcdClientTests {
    func serving(pki: URL? = nil, tls: TLSClient? = nil) async throws -> (EtcdServer, EtcdClient) {
        let etcd = try EtcdServer(pki: pki)
        let client = EtcdClient(endpoints: [etcd.endpoint], tls: tls, timeoutMilliseconds: 3000)
        try await etcd.waitServing(client)
        return (etcd, client)
    }

    @Test func putGetDeleteAndPrefix() async throws {
        let (etcd, c) = try await serving()
        defer { etcd.stop() }
        let rev = try await c.put("/t/a", Array("one".utf8))
        try await c.put("/t/b", [0, 255, 10])
        try await c.put("/u", Array("x".utf8))
        let (kv, storeRev) = try await c.get("/t/a")
        #expect(kv?.value == Array("one".utf8))
        #expect(kv?.createRevision == rev && kv?.modRevision == rev)
        #expect(storeRev >= rev + 2)
        #expect(try await c.get("/t/b").0?.value == [0, 255, 10])  // binary values survive base64
        #expect(try await c.getPrefix("/t/").map(\.key) == ["/t/a", "/t/b"])
        #expect(try await c.get("/missing").0 == nil)
        #expect(try await c.delete("/t/a") == 1)
        #expect(try await c.get("/t/a").0 == nil)
    }

    @Test func transactionsCompareRevisionsAndValues() async throws {
        let (etcd, c) = try await serving()
        defer { etcd.stop() }
        // create-if-absent: the first wins, the second sees the holder
        let first = try await c.txn(
            [EtcdCompare(key: "/lock", .createRevision(0))], success: [.put(key: "/lock", value: Array("a".utf8), lease: 0)],
            failure: [.get(key: "/lock")])
        #expect(first.succeeded)
        let second = try await c.txn(
            [EtcdCompare(key: "/lock", .createRevision(0))], success: [.put(key: "/lock", value: Array("b".utf8), lease: 0)],
            failure: [.get(key: "/lock")])
        #expect(!second.succeeded)
        #expect(second.gets.first??.value == Array("a".utf8))
        #expect(second.gets.first??.createRevision == first.revision)
        // compare-and-swap on mod_revision: a stale revision loses, the current one wins
        let r1 = try await c.put("/state", Array("v1".utf8))
        try await c.put("/state", Array("v2".utf8))
        let stale = try await c.txn(
            [EtcdCompare(key: "/state", .modRevision(r1))], success: [.put(key: "/state", value: Array("lost".utf8), lease: 0)])
        #expect(!stale.succeeded)
        let (cur, _) = try await c.get("/state")
        let fresh = try await c.txn(
            [EtcdCompare(key: "/state", .modRevision(cur!.modRevision)), EtcdCompare(key: "/lock", .value(Array("a".utf8)))],
            success: [.put(key: "/state", value: Array("v3".utf8), lease: 0)])
        #expect(fresh.succeeded)
        #expect(try await c.get("/state").0?.value == Array("v3".utf8))
        let wrongValue = try await c.txn(
            [EtcdCompare(key: "/lock", .value(Array("b".utf8)))], success: [.delete(key: "/state")])
        #expect(!wrongValue.succeeded)
        #expect(try await c.get("/state").0 != nil)
    }

    @Test func leasesKeepAliveAndRevoke() async throws {
        let (etcd, c) = try await serving()
        defer { etcd.stop() }
        let lease = try await c.grantLease(ttlSeconds: 5)
        #expect(lease.ttl == 5)
        try await c.put("/leased", Array("x".utf8), lease: lease.id)
        #expect(try await c.get("/leased").0?.lease == lease.id)
        #expect(try await c.keepAlive(lease.id) == 5)
        #expect(try await c.timeToLive(lease.id) > 0)
        try await c.revoke(lease.id)
        #expect(try await c.get("/leased").0 == nil)  // keys of a revoked lease go with it
        #expect(try await c.keepAlive(lease.id) == 0)
        try await c.revoke(lease.id)  // already gone: not an error
        // a short lease expires without keep-alives
        let short = try await c.grantLease(ttlSeconds: 1)
        try await c.put("/short", Array("x".utf8), lease: short.id)
        var gone = false
        for _ in 0..<80 where !gone {
            gone = try await c.get("/short").0 == nil
            if !gone { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(gone)
    }

    @Test func unreachableAndNonEtcdAddressesAreErrorsNamingTheAddress() async throws {
        let dead = deadPort()
        let c = EtcdClient(endpoints: [.init(host: "127.0.0.1", port: dead)], timeoutMilliseconds: 1000)
        await #expect {
            _ = try await c.get("/k")
        } throws: { e in
            guard case .unreachable(let ep, _)? = e as? EtcdError else { return false }
            return ep == "http://127.0.0.1:\(dead)" && "\(e)".contains("unreachable")
        }
        // an HTTP server that is not etcd
        let (server, serverPort) = try startServer { _, res in res.respond(status: 404, body: Array("404 page not found\n".utf8)) }
        defer { server.shutdown() }
        let wrong = EtcdClient(endpoints: [.init(host: "127.0.0.1", port: serverPort)], timeoutMilliseconds: 1000)
        await #expect {
            _ = try await wrong.get("/k")
        } throws: { e in
            guard case .refused(_, 404, let m)? = e as? EtcdError else { return false }
            return m.contains("404 page not found")
        }
        // a second endpoint is used when the first cannot be reached
        let (etcd, good) = try await serving()
        defer { etcd.stop() }
        _ = good
        let both = EtcdClient(endpoints: [.init(host: "127.0.0.1", port: dead), etcd.endpoint], timeoutMilliseconds: 1000)
        try await both.put("/k", [1])
        #expect(try await both.get("/k").0?.value == [1])
    }

    @Test func mutualTLSWithARealEtcd() async throws {
        let pki = try makePKI()
        let tls = try TLSClient(
            TLSConfiguration(
                certificatePath: pki.appendingPathComponent("client.pem").path,
                privateKeyPath: pki.appendingPathComponent("client.key.pem").path,
                caPath: pki.appendingPathComponent("ca.pem").path))
        let (etcd, c) = try await serving(pki: pki, tls: tls)
        defer { etcd.stop() }
        try await c.put("/secure", Array("yes".utf8))
        #expect(try await c.get("/secure").0?.value == Array("yes".utf8))
        let lease = try await c.grantLease(ttlSeconds: 5)
        #expect(try await c.keepAlive(lease.id) == 5)
        // without a client certificate etcd refuses the handshake
        let anonymous = try TLSClient(TLSConfiguration(caPath: pki.appendingPathComponent("ca.pem").path))
        let noCert = EtcdClient(endpoints: [etcd.endpoint], tls: anonymous, timeoutMilliseconds: 2000)
        await #expect(throws: EtcdError.self) { _ = try await noCert.get("/secure") }
        // plain HTTP to a TLS etcd is an error too, not a hang
        let plain = EtcdClient(endpoints: [etcd.endpoint], timeoutMilliseconds: 2000)
        await #expect(throws: EtcdError.self) { _ = try await plain.get("/secure") }
    }
}
