import Foundation
import Testing

@testable import Control
import MSCore

@Suite("global rank table (§8)")
struct RankTableTests {
    let options = RankTable.Options()

    func parse(_ json: JSON, _ options: RankTable.Options = .init()) throws(RankTableError) -> RankTable {
        try RankTable(data: json.data, options: options)
    }

    func error(_ json: JSON, _ options: RankTable.Options = .init()) -> RankTableError? {
        do {
            _ = try parse(json, options)
            return nil
        } catch {
            return error
        }
    }

    @Test("instances in table order, with ports from the table overriding the config")
    func instancesAndPorts() throws {
        var s = servers(3, devices: 2)
        s[1].mgmtPort = "2026"
        s[1].predictPort = "2025"
        s[1].metricPort = "2027"
        s[1].interCommPort = "2028"
        let t = try parse(rankTableJSON(servers: s, coordinators: ["10.9.9.1", "10.9.9.2"]))
        #expect(t.coordinatorIPs == ["10.9.9.1", "10.9.9.2"])
        #expect(t.instances.map(\.ip) == ["10.1.0.1", "10.1.0.2", "10.1.0.3"])
        #expect(t.instances[0].ports == InstancePorts(predict: 1025, mgmt: 1026, metric: 1027, interComm: nil))
        #expect(t.instances[1].ports == InstancePorts(predict: 2025, mgmt: 2026, metric: 2027, interComm: 2028))
        #expect(t.instances[1].key == InstanceKey(ip: "10.1.0.2", mgmtPort: 2026))
        #expect(t.instances[2].devices.map(\.rankID) == [0, 1])
        let custom = RankTable.Options(defaultPorts: InstancePorts(predict: 3025, mgmt: 3026, metric: 3027, interComm: 3028))
        #expect(try parse(rankTableJSON(servers: servers(1)), custom).instances[0].ports.mgmt == 3026)
    }

    // docs/wire/controller.md §12 test 24.
    @Test("a duplicate ip+mgmt_port fails the load; the same ip on another mgmt_port is fine")
    func duplicates() throws {
        let dup = [TableServer(ip: "10.0.0.5"), TableServer(ip: "10.0.0.5")]
        let e = try #require(error(rankTableJSON(servers: dup)))
        #expect(e.value == "10.0.0.5:1026")
        let ok = [TableServer(ip: "10.0.0.5"), TableServer(ip: "10.0.0.5", mgmtPort: "1126")]
        #expect(try parse(rankTableJSON(servers: ok)).instances.count == 2)
    }

    @Test("a bad coordinator IP, more than 2 coordinators, or no group 0 fails")
    func coordinators() throws {
        #expect(error(rankTableJSON(servers: servers(2), coordinators: ["coordinator"]))?.path
            == "server_group_list[0].server_list[0].server_ip")
        #expect(error(rankTableJSON(servers: servers(2), coordinators: ["10.0.0.1", "10.0.0.2", "10.0.0.3"])) != nil)
        #expect(try parse(rankTableJSON(servers: servers(2), coordinators: [])).coordinatorIPs == [])
        var noZero = rankTableJSON(servers: servers(2))
        if case .array(var groups)? = noZero["server_group_list"] {
            groups[0] = groups[0].setting("group_id", to: "1")
            noZero = noZero.setting("server_group_list", to: .array(groups))
        }
        #expect(error(noZero)?.reason == "group \"0\" is required")
    }

    @Test("group count must be 2...3 (2...98 multi-node)")
    func groupCount() throws {
        let base = rankTableJSON(servers: servers(2))
        guard case .array(let groups)? = base["server_group_list"] else { Issue.record("no groups"); return }
        #expect(error(base.setting("server_group_list", to: .array([groups[0]])))?.path == "server_group_list")
        let four = base.setting("server_group_list", to: .array(groups + [groups[1]]))
        #expect(error(four)?.value == "4 groups")
        #expect(try parse(four, .init(isMultiNode: true)).instances.count == 1)
    }

    @Test("hardware_type is mandatory in heterogeneous mode only")
    func heterogeneous() throws {
        let plain = rankTableJSON(servers: servers(2))
        #expect(error(plain, .init(isHeterogeneous: true))?.path == "server_group_list[2].server_list[0].hardware_type")
        #expect(try parse(plain).instances.count == 2)
        var s = servers(2)
        s[0].hardwareType = "800I A2(32G)"
        s[1].hardwareType = "800I A2(64G)"
        #expect(try parse(rankTableJSON(servers: s), .init(isHeterogeneous: true)).instances.count == 2)
    }

    @Test("ports below 1024 or above 65535 fail", arguments: ["1023", "65536", "abc", "0"])
    func badPorts(port: String) throws {
        var s = servers(2)
        s[1].mgmtPort = port
        let e = try #require(error(rankTableJSON(servers: s)))
        #expect(e.path == "server_group_list[2].server_list[1].mgmt_port" && e.value == "\"\(port)\"")
    }

    @Test("server_id and server_ip must be IPs")
    func serverIPs() throws {
        var s = servers(2)
        s[0].hostID = "node-1"
        #expect(error(rankTableJSON(servers: s))?.path == "server_group_list[2].server_list[0].server_id")
        s = servers(2)
        s[1].ip = "10.0.0.300"
        #expect(error(rankTableJSON(servers: s))?.path == "server_group_list[2].server_list[1].server_ip")
    }

    @Test("devices: 1...128 in PD mode, valid IPs, ids in [0, 2048]; not needed in single_node")
    func devices() throws {
        #expect(error(rankTableJSON(servers: servers(1, devices: 0)))?.path == "server_group_list[2].server_list[0].device")
        #expect(try parse(rankTableJSON(servers: servers(1, devices: 128))).instances[0].devices.count == 128)
        #expect(error(rankTableJSON(servers: servers(1, devices: 129))) != nil)
        var bad = servers(1)
        bad[0].deviceIP = "x"
        #expect(error(rankTableJSON(servers: bad))?.path == "server_group_list[2].server_list[0].device[0].device_ip")
        #expect(error(withFirstDevice(rankTableJSON(servers: servers(1)), "rank_id", "2049"))?.path
            == "server_group_list[2].server_list[0].device[0].rank_id")
        #expect(try parse(withFirstDevice(rankTableJSON(servers: servers(1)), "rank_id", "2048")).instances[0].devices[0].rankID == 2048)
        #expect(error(withFirstDevice(rankTableJSON(servers: servers(1)), "device_id", "-1")) != nil)
        let single = try parse(rankTableJSON(servers: servers(2, devices: 0)), .init(deployMode: .singleNode))
        #expect(single.instances.count == 2 && single.instances[0].devices.isEmpty)
    }

    /// `json` with key `key` of the first device of the first instance server set to `value`.
    func withFirstDevice(_ json: JSON, _ key: String, _ value: JSON) -> JSON {
        guard case .array(var groups)? = json["server_group_list"], case .array(var list)? = groups[2]["server_list"],
            case .array(var devs)? = list[0]["device"]
        else { return json }
        devs[0] = devs[0].setting(key, to: value)
        list[0] = list[0].setting("device", to: .array(devs))
        groups[2] = groups[2].setting("server_list", to: .array(list))
        return json.setting("server_group_list", to: .array(groups))
    }

    @Test("0...96 servers; 97 fail")
    func serverCount() throws {
        #expect(try parse(rankTableJSON(servers: [])).instances.isEmpty)
        #expect(try parse(rankTableJSON(servers: servers(96))).instances.count == 96)
        #expect(error(rankTableJSON(servers: servers(97)))?.value == "97 servers")
    }

    @Test("super pods: super_pod_id from super_pod_list, super_device_id up to 2^30")
    func superPods() throws {
        var json = rankTableJSON(servers: servers(1))
        guard case .array(var groups)? = json["server_group_list"] else { Issue.record("no groups"); return }
        groups[2] = groups[2].setting("super_pod_list", to: .array([
            .object(["super_pod_id": "7", "server_list": .array([.object(["server_id": "10.0.0.1"])])]),
        ]))
        guard case .array(var list)? = groups[2]["server_list"], case .array(var devs)? = list[0]["device"] else {
            Issue.record("no servers"); return
        }
        devs[0] = devs[0].setting("super_device_id", to: .string(String(1 << 30)))
        list[0] = list[0].setting("device", to: .array(devs))
        groups[2] = groups[2].setting("server_list", to: .array(list))
        json = json.setting("server_group_list", to: .array(groups))
        let t = try parse(json)
        #expect(t.groups[0].servers[0].superPodID == "7")
        #expect(t.instances[0].devices[0].superDeviceID == 1 << 30)
        devs[0] = devs[0].setting("super_device_id", to: .string(String((1 << 30) + 1)))
        list[0] = list[0].setting("device", to: .array(devs))
        groups[2] = groups[2].setting("server_list", to: .array(list))
        #expect(error(json.setting("server_group_list", to: .array(groups))) != nil)
    }

    @Test("not JSON fails")
    func notJSON() {
        #expect(throws: RankTableError.self) { try RankTable(data: Data("nope".utf8), options: .init()) }
    }
}
