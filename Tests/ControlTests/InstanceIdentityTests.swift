import Foundation
import Testing

@testable import Control
import MSCore

@Suite("instance identity and rank-table diff (§4, §7.3, DECISIONS 17/19)")
struct InstanceIdentityTests {
    static let t0 = Date(timeIntervalSince1970: 1_000_000)
    static let retention: TimeInterval = 7200

    func table(_ s: [TableServer]) throws -> [DiscoveredInstance] {
        try RankTable(data: rankTableJSON(servers: s).data, options: .init()).instances
    }

    @Test("ids are sequential from 0 in table order, keyed by ip + mgmt_port, stable across passes")
    func sequentialIDs() throws {
        var r = InstanceIdentityRegistry()
        let s = servers(3)
        let d1 = r.reconcile(try table(s), now: Self.t0, retention: Self.retention)
        #expect(d1.new.map(\.id) == [0, 1, 2])
        #expect(d1.new.map(\.key.ip) == ["10.1.0.1", "10.1.0.2", "10.1.0.3"])
        #expect(r.nextID == 3)
        let d2 = r.reconcile(try table(s.reversed()), now: Self.t0 + 5, retention: Self.retention)
        #expect(d2.isEmpty && d2.unchanged.sorted() == [0, 1, 2])
        #expect(r.id(of: InstanceKey(ip: "10.1.0.3", mgmtPort: 1026)) == 2)
        let d3 = r.reconcile(try table(s + [TableServer(ip: "10.1.0.1", mgmtPort: "1126")]), now: Self.t0 + 10, retention: Self.retention)
        #expect(d3.new.map(\.id) == [3])
    }

    // DECISIONS 17 and 19.
    @Test("a removed instance that returns within the retention gets its id, role and group back")
    func reappearWithinRetention() throws {
        var r = InstanceIdentityRegistry()
        let s = servers(2)
        _ = r.reconcile(try table(s), now: Self.t0, retention: Self.retention)
        r.recordAssignment(s.key(0), role: .prefill, groupID: 0)
        r.recordAssignment(s.key(1), role: .decode, groupID: 0)

        let gone = r.reconcile(try table([s[0]]), now: Self.t0 + 10, retention: Self.retention)
        #expect(gone.removed.map(\.id) == [1])
        #expect(gone.removed[0].role == .decode)
        #expect(gone.new.isEmpty && gone.unchanged == [0])
        let still = r.reconcile(try table([s[0]]), now: Self.t0 + 20, retention: Self.retention)
        #expect(still.isEmpty)

        let back = r.reconcile(try table(s), now: Self.t0 + 10 + Self.retention - 1, retention: Self.retention)
        #expect(back.reappeared.map(\.id) == [1])
        #expect(back.reappeared[0].role == .decode && back.reappeared[0].groupID == 0)
        #expect(back.new.isEmpty && back.removed.isEmpty)
        #expect(r.nextID == 2)
    }

    @Test("after the retention the identity is forgotten and a return is new, with a new id")
    func forgetAfterRetention() throws {
        var r = InstanceIdentityRegistry()
        let s = servers(2)
        _ = r.reconcile(try table(s), now: Self.t0, retention: Self.retention)
        r.recordAssignment(s.key(1), role: .decode, groupID: 0)
        _ = r.reconcile(try table([s[0]]), now: Self.t0 + 10, retention: Self.retention)
        let later = r.reconcile(try table([s[0]]), now: Self.t0 + 10 + Self.retention, retention: Self.retention)
        #expect(later.forgotten == [1] && r.entry(id: 1) == nil)
        let back = r.reconcile(try table(s), now: Self.t0 + 20 + Self.retention, retention: Self.retention)
        #expect(back.new.map(\.id) == [2] && back.new[0].role == nil)
        #expect(back.reappeared.isEmpty)
    }

    @Test("a return after the retention in the same pass is also new (no intermediate pass)")
    func returnPastRetentionWithoutIntermediatePass() throws {
        var r = InstanceIdentityRegistry()
        let s = servers(2)
        _ = r.reconcile(try table(s), now: Self.t0, retention: 100)
        _ = r.reconcile(try table([s[0]]), now: Self.t0 + 1, retention: 100)
        let back = r.reconcile(try table(s), now: Self.t0 + 101, retention: 100)
        #expect(back.forgotten == [1] && back.new.map(\.id) == [2])
    }

    @Test("a device or port change at the same key is reported as changed, keeping the id")
    func deviceChange() throws {
        var r = InstanceIdentityRegistry()
        var s = servers(2)
        _ = r.reconcile(try table(s), now: Self.t0, retention: Self.retention)
        s[1].devices = 2
        s[0].predictPort = "2025"
        let d = r.reconcile(try table(s), now: Self.t0 + 5, retention: Self.retention)
        #expect(d.changed.map(\.id) == [0, 1])
        #expect(d.changed[1].instance?.devices.count == 2)
        #expect(d.new.isEmpty && d.removed.isEmpty)
    }

    @Test("expired instances are ignored while in the table and purged once they leave it")
    func expired() throws {
        var r = InstanceIdentityRegistry()
        let s = servers(2)
        _ = r.reconcile(try table(s), now: Self.t0, retention: Self.retention)
        r.markExpired(s.key(1))
        let d1 = r.reconcile(try table(s), now: Self.t0 + 5, retention: Self.retention)
        #expect(d1.unchanged == [0] && d1.new.isEmpty && d1.reappeared.isEmpty)
        let d2 = r.reconcile(try table([s[0]]), now: Self.t0 + 10, retention: Self.retention)
        #expect(d2.removed.isEmpty && r.expired.isEmpty && r.id(of: s.key(1)) == nil)
        let d3 = r.reconcile(try table(s), now: Self.t0 + 15, retention: Self.retention)
        #expect(d3.new.map(\.id) == [2])
    }

    // docs/wire/controller.md §12 test 33 (identity part).
    @Test("the registry round-trips through JSON: ids, counter, roles, groups, disappearance times, expired keys")
    func persistence() throws {
        var r = InstanceIdentityRegistry()
        let s = servers(3)
        _ = r.reconcile(try table(s), now: Self.t0, retention: Self.retention)
        r.recordAssignment(s.key(0), role: .prefill, groupID: 0)
        r.recordAssignment(s.key(1), role: .decode, groupID: 0)
        _ = r.reconcile(try table([s[0], s[2]]), now: Self.t0 + 10, retention: Self.retention)
        r.markExpired(s.key(2))
        let data = try r.jsonData()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"instance_start_id_number\" : 3"))
        var restored = try InstanceIdentityRegistry(jsonData: data)
        #expect(restored == r)
        let back = restored.reconcile(try table(s), now: Self.t0 + 20, retention: Self.retention)
        #expect(back.reappeared.map(\.id) == [1] && back.reappeared[0].role == .decode)
        let more = restored.reconcile(try table(servers(4)), now: Self.t0 + 30, retention: Self.retention)
        #expect(more.new.map(\.id) == [3])
    }

    @Test("a corrupt state is rejected: duplicate ids or ids beyond the counter")
    func corruptState() throws {
        let bad = """
            {"instance_start_id_number": 1, "instances": [
              {"key": {"ip": "10.0.0.1", "mgmt_port": 1026}, "id": 0},
              {"key": {"ip": "10.0.0.2", "mgmt_port": 1026}, "id": 0}]}
            """
        #expect(throws: DecodingError.self) { try InstanceIdentityRegistry(jsonData: Data(bad.utf8)) }
        let beyond = """
            {"instance_start_id_number": 1, "instances": [{"key": {"ip": "10.0.0.1", "mgmt_port": 1026}, "id": 5}]}
            """
        #expect(throws: DecodingError.self) { try InstanceIdentityRegistry(jsonData: Data(beyond.utf8)) }
        let ok = """
            {"instance_start_id_number": 6, "instances": [{"key": {"ip": "10.0.0.1", "mgmt_port": 1026}, "id": 5, "role": "decode"}]}
            """
        let r = try InstanceIdentityRegistry(jsonData: Data(ok.utf8))
        #expect(r.nextID == 6 && r.entry(id: 5)?.role == .decode)
    }
}

extension [TableServer] {
    func key(_ i: Int) -> InstanceKey { InstanceKey(ip: self[i].ip, mgmtPort: Int(self[i].mgmtPort ?? "1026")!) }
}
