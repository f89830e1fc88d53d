import Foundation
import Testing

@testable import Control
import MSCore

@Suite("process state file (§10.1, §9 takeover)")
struct ProcessStateFileTests {
    // docs/wire/controller.md §12 test 33.
    @Test("save and reload: groups, peers and the id counter round-trip")
    func roundTrip() throws {
        var h = try Harness.live2P2D()
        _ = h.settleSwitch(h.send(.switchRole(id: 1, to: .decode)))
        h.allReady()
        let data = ProcessStateFile.encode(h.state, processedSwitchFaults: ["[0x08520003,na,L2,na]|1|2|3"])
        let file = try ProcessStateFile(data: data)
        #expect(file.nextID == 4 && file.servers.map(\.id) == [0, 1, 2, 3])
        #expect(file.processedSwitchFaults == ["[0x08520003,na,L2,na]|1|2|3"])
        let t = try RankTable(data: rankTableJSON(servers: h.table).data, options: .init()).instances
        let restored = file.recover(table: t)
        #expect(restored.groups == h.state.groups)
        for id in 0..<4 {
            let a = restored.nodes[id]!, b = h.state.nodes[id]!
            #expect(a.role == b.role && a.peers == b.peers && a.groupID == b.groupID && a.label == b.label)
            #expect(a.config == b.config && a.totalSlots == b.totalSlots && a.isInitialized == b.isInitialized)
        }
        #expect(restored.registry.nextID == 4)
        #expect(restored.initialAssignmentDone && restored.refreshEnabled)
        // The recovered state publishes the same set once the servers report again.
        var r = h
        r.state = restored
        r.allReady()
        #expect(r.refresh == h.refresh)
        // A newcomer after recovery gets the next id.
        r.table = servers(5)
        _ = r.settle(try r.pass())
        #expect(r.state.nodes[4] != nil)
    }

    @Test("the file is JSON indented by 4 with the §10.1 field names")
    func format() throws {
        let h = try Harness.live2P2D()
        let text = String(decoding: ProcessStateFile.encode(h.state), as: UTF8.self)
        #expect(text.hasPrefix("{\n    \"instance_start_id_number\": 4,"))
        let json = try JSON.parse(Data(text.utf8))
        guard case .array(let list)? = json["server"] else { Issue.record("no server"); return }
        #expect(Set(list[0].objectValue!.keys) == [
            "delete_time", "id", "host_id", "ip", "port", "mgmt_port", "metric_port", "inter_comm_port", "is_healthy",
            "is_initialized", "inference_type", "role_state", "current_role", "model_name", "static_info", "peers",
            "active_peers", "is_distribute", "dp_group_peers", "server_info_list", "dynamic_info", "is_faulty",
        ])
        #expect(list[0]["static_info"]?["role"] == 80 && list[2]["static_info"]?["role"] == 68)
        #expect(list[0]["role_state"] == "RoleReady")
        if case .array(let infos)? = list[0]["server_info_list"], case .array(let devs)? = infos[0]["device_infos"] {
            #expect(devs[0]["rank_id"] == 0)
        } else {
            Issue.record("no device_infos")
        }
    }

    @Test("entries no longer in the table are dropped, with their ids removed from peer lists")
    func recoverSubset() throws {
        let h = try Harness.live2P2D()
        let file = try ProcessStateFile(data: ProcessStateFile.encode(h.state))
        let t = try RankTable(data: rankTableJSON(servers: Array(h.table.dropLast())).data, options: .init()).instances
        let r = file.recover(table: t)
        #expect(r.nodes.keys.sorted() == [0, 1, 2])
        #expect(r.nodes[0]!.peers == [2])
        #expect(r.groups == [InstanceGroup(id: 0, prefill: [0, 1], decode: [2])])
        #expect(r.registry.nextID == 4)
    }

    @Test("load checks reject bad values", arguments: [
        ("delete_time", JSON.int(-1)), ("ip", "x"), ("is_initialized", 1), ("is_faulty", nil),
        ("static_info.group_id", -1), ("static_info.total_slots_num", 5001),
        ("static_info.total_block_num", .int(4_294_967_296)), ("static_info.label", 5), ("static_info.role", 81),
        ("peers", .array(Array(repeating: 1, count: 769))),
    ] as [(String, JSON?)])
    func loadChecks(key: String, value: JSON?) throws {
        let h = try Harness.live2P2D()
        let json = try JSON.parse(ProcessStateFile.encode(h.state))
        guard case .array(var list)? = json["server"] else { Issue.record("no server"); return }
        list[0] = list[0].setting(key, to: value)
        #expect(throws: ProcessStateError.self) { try ProcessStateFile(data: json.setting("server", to: .array(list)).data) }
    }

    @Test("a missing or invalid state file fails")
    func invalidFile() {
        #expect(throws: ProcessStateError.self) { try ProcessStateFile(data: Data()) }
        #expect(throws: ProcessStateError.self) { try ProcessStateFile(data: Data(#"{"server":[]}"#.utf8)) }
        #expect(throws: ProcessStateError.self) {
            try ProcessStateFile(data: Data(#"{"server":[],"instance_start_id_number":-1}"#.utf8))
        }
    }
}
