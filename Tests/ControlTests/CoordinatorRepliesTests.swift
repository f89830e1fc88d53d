import Foundation
import Testing

@testable import Control
import MSCore

@Suite("coordinator management replies (§3.2)")
struct CoordinatorRepliesTests {
    static let minimal: JSON = .object([
        "schedule_info": .array([]), "request_length_info": .object(["input_len": 0, "output_len": 0]),
    ])
    static let entry: JSON = .object(["id": 0, "allocated_slots": 5000, "allocated_blocks": .int(4_294_967_295)])

    // docs/wire/controller.md §12 test 19.
    @Test("the minimal coordinator_info body is accepted")
    func minimal() throws {
        let i = try CoordinatorInfo(body: Self.minimal.data)
        #expect(i.scheduleInfo.isEmpty && i.inputLength == 0 && i.outputLength == 0)
        let full = Self.minimal.setting("schedule_info", to: .array(Array(repeating: Self.entry, count: 288)))
            .setting("request_length_info.input_len", to: .int(4_294_967_295))
        let f = try CoordinatorInfo(body: full.data)
        #expect(f.scheduleInfo.count == 288 && f.scheduleInfo[0].allocatedSlots == 5000 && f.inputLength == 4_294_967_295)
    }

    @Test("coordinator_info violations reject the whole reply", arguments: [
        ("request_length_info.input_len", JSON.int(4_294_967_296)), ("request_length_info.output_len", .int(-1)),
        ("request_length_info.input_len", .int(-1)), ("request_length_info", nil), ("schedule_info", nil),
        ("schedule_info", .array([entry.setting("id", to: -1)])),
        ("schedule_info", .array([entry.setting("allocated_slots", to: -1)])),
        ("schedule_info", .array([entry.setting("allocated_blocks", to: -1)])),
        ("schedule_info", .array([entry.setting("allocated_slots", to: 5001)])),
        ("schedule_info", .array([entry.setting("allocated_blocks", to: .int(4_294_967_296))])),
        ("schedule_info", .array(Array(repeating: entry, count: 577))),
    ] as [(String, JSON?)])
    func rejected(key: String, value: JSON?) {
        #expect(throws: ContractError.self) { try CoordinatorInfo(body: Self.minimal.setting(key, to: value).data) }
    }

    @Test("an empty body is rejected")
    func empty() {
        #expect(throws: ContractError.self) { try CoordinatorInfo(body: Data()) }
        #expect(throws: ContractError.self) { try CoordinatorInfo(body: Data("{}".utf8)) }
    }

    // docs/wire/controller.md §12 test 18.
    @Test("ids [1,2] give /v1/instances/tasks?id=1&id=2")
    func tasksPath() {
        #expect(CoordinatorAPI.tasksPath(ids: [1, 2]) == "/v1/instances/tasks?id=1&id=2")
        #expect(CoordinatorAPI.tasksPath(ids: [7]) == "/v1/instances/tasks?id=7")
    }

    @Test("a tasks reply is valid only with exactly one int in [-1, 2^31-1]")
    func tasksReply() throws {
        #expect(try CoordinatorAPI.taskCount(body: Data(#"{"tasks":[-1]}"#.utf8)) == -1)
        #expect(try CoordinatorAPI.taskCount(body: Data(#"{"tasks":[2147483647]}"#.utf8)) == 2147483647)
        for bad in [#"{"tasks":[]}"#, #"{"tasks":[1,2]}"#, #"{"tasks":[-2]}"#, #"{"tasks":[2147483648]}"#,
                    #"{"tasks":["1"]}"#, #"{"tasks":1}"#, "{}"] {
            #expect(throws: ProbeFailure.self, "\(bad)") { try CoordinatorAPI.taskCount(body: Data(bad.utf8)) }
        }
    }

    // docs/wire/controller.md §12 test 17 (the body part).
    @Test("online/offline and query_tasks bodies")
    func bodies() throws {
        #expect(String(decoding: CoordinatorAPI.idsBody([101]), as: UTF8.self) == #"{"ids":[101]}"#)
        let q = try JSON.parse(CoordinatorAPI.queryTasksBody(prefillID: 3, decodeID: 4, change: .prefillToDecode))
        #expect(q == .object(["p_id": 3, "d_id": 4, "role_change_type": 0]))
        #expect(try CoordinatorAPI.isEnd(body: Data(#"{"is_end":true}"#.utf8)))
        #expect(throws: ProbeFailure.self) { try CoordinatorAPI.isEnd(body: Data(#"{"is_end":1}"#.utf8)) }
    }
}
