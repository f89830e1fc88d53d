import Control
import Foundation
import Gateway
import MSCore
import Testing

/// Each body is written by one binary and read by the other; these tests run the writer's code into the reader's.
@Suite("Controller ↔ Coordinator contract")
struct CoordinatorContractTests {
    static func instance(
        id: Int, role: Control.InstanceRole, label: Int, pPercentage: Int = 0, interCommPort: Int = 0, peers: [Int] = []
    ) -> RefreshPayload.Instance {
        RefreshPayload.Instance(
            id: id, ip: "10.0.0.\(id + 1)", port: 1025 + id, metricPort: 2025 + id, interCommPort: interCommPort,
            modelName: "llama", staticInfo: .init(
                groupID: 3, maxSeqLen: 4096, maxOutputLen: 512, totalSlotsNum: 200, totalBlockNum: 1000, blockSize: 128,
                label: label, role: role.asciiCode, pPercentage: pPercentage, virtualID: id),
            dynamicInfo: .init(
                availSlotsNum: 150, availBlockNum: 900, waitingRequestNum: 1, runningRequestNum: 2, swappedRequestNum: 0,
                freeNpuBlockNums: 900, freeCpuBlockNums: 0, totalNpuBlockNums: 1000, totalCpuBlockNums: 0, peers: peers))
    }

    static func expectSame(_ sent: RefreshPayload.Instance, _ got: RefreshInstance) {
        #expect(got.id == InstanceID(sent.id) && got.ip == sent.ip && got.port == sent.port)
        #expect(got.metricPort == sent.metricPort && got.interCommPort == sent.interCommPort)
        #expect(got.modelName == sent.modelName && got.roleCode == sent.staticInfo.role && got.label == sent.staticInfo.label)
        #expect(got.groupID == UInt64(sent.staticInfo.groupID) && got.virtualID == UInt64(sent.staticInfo.virtualID))
        #expect(got.maxSeqLen == sent.staticInfo.maxSeqLen && got.maxOutputLen == sent.staticInfo.maxOutputLen)
        #expect(got.totalSlots == sent.staticInfo.totalSlotsNum && got.totalBlocks == sent.staticInfo.totalBlockNum)
        #expect(got.blockSize == sent.staticInfo.blockSize && got.pPercentage == sent.staticInfo.pPercentage)
        #expect(got.availSlots == sent.dynamicInfo.availSlotsNum && got.availBlocks == sent.dynamicInfo.availBlockNum)
        #expect(got.peers == sent.dynamicInfo.peers.map { InstanceID($0) })
    }

    @Test("a PD refresh the Controller encodes is accepted whole by the Coordinator, every field intact")
    func pdRefresh() throws {
        let sent = RefreshPayload(ids: [0, 1, 2], instances: [
            Self.instance(id: 0, role: .prefill, label: 2, interCommPort: 3025, peers: [1]),
            Self.instance(id: 1, role: .decode, label: 3, peers: [0]),
            Self.instance(id: 2, role: .flex, label: 4, pPercentage: 40),
        ])
        let plan = try RefreshParser.parse(Array(sent.jsonData()), pd: true, singleContainer: false)
        #expect(plan.rejected == [])
        #expect(plan.ids == [0, 1, 2])
        #expect(plan.accepted.count == 3)
        for (s, g) in zip(sent.instances, plan.accepted) { Self.expectSame(s, g) }
    }

    @Test("a single_node refresh: role U is the only role the Coordinator accepts there")
    func singleNodeRefresh() throws {
        let u = Self.instance(id: 7, role: .undefined, label: 2)
        let plan = try RefreshParser.parse(
            Array(RefreshPayload(ids: [7], instances: [u]).jsonData()), pd: false, singleContainer: false)
        #expect(plan.rejected == [] && plan.accepted.count == 1)
        Self.expectSame(u, try #require(plan.accepted.first))
        let p = Self.instance(id: 8, role: .prefill, label: 2)
        let refused = try RefreshParser.parse(
            Array(RefreshPayload(ids: [8], instances: [p]).jsonData()), pd: false, singleContainer: false)
        #expect(refused.accepted.isEmpty && refused.rejected.count == 1)
    }

    @Test("role codes: the Controller's roles map onto the contract's codes and the Coordinator's roles")
    func roleCodes() {
        for role in Control.InstanceRole.allCases {
            #expect(Control.InstanceRole(asciiCode: role.asciiCode) == role)
            #expect(RoleCode(rawValue: role.asciiCode) == role.roleCode)
        }
        #expect(Gateway.InstanceRole(code: RoleCode.prefill.rawValue) == .prefill)
        #expect(Gateway.InstanceRole(code: RoleCode.decode.rawValue) == .decode)
        #expect(Gateway.InstanceRole(code: RoleCode.undefined.rawValue) == .mixed)
        #expect(Gateway.InstanceRole(code: RoleCode.flex.rawValue) == nil)  // split by p_percentage first
    }

    @Test("a tasks reply the Coordinator writes is the count the Controller reads")
    func tasks() throws {
        #expect(try CoordinatorAPI.taskCount(body: Data(TasksReply(tasks: [3]).body.utf8)) == 3)
        #expect(try CoordinatorAPI.taskCount(body: Data(TasksReply(tasks: [-1]).body.utf8)) == -1)
        #expect(throws: ProbeFailure.self) { try CoordinatorAPI.taskCount(body: Data(TasksReply(tasks: [1, 2]).body.utf8)) }
        #expect(CoordinatorAPI.tasksPath(ids: [1, 2]) == "/v1/instances/tasks?id=1&id=2")
    }

    @Test("coordinator_info: what the Coordinator writes (circuit and request_num included) reads back equal")
    func coordinatorInfo() throws {
        let sent = CoordinatorInfo(
            scheduleInfo: [.init(id: 0, allocatedSlots: 4, allocatedBlocks: 40), .init(id: 1, allocatedSlots: 0, allocatedBlocks: 0, circuit: "open")],
            requestNum: 12, inputLength: 300, outputLength: 20)
        #expect(try CoordinatorInfo(body: Array(sent.body.utf8)) == sent)
        #expect(sent.body == #"{"schedule_info":[{"id":0,"allocated_slots":4,"allocated_blocks":40},{"id":1,"allocated_slots":0,"allocated_blocks":0,"circuit":"open"}],"request_num":12,"request_length_info":{"input_len":300,"output_len":20}}"#)
        let tooMany = CoordinatorInfo(
            scheduleInfo: (0...CoordinatorInfo.maxScheduleEntries).map { .init(id: $0, allocatedSlots: 0, allocatedBlocks: 0) },
            inputLength: 0, outputLength: 0)
        #expect(throws: ContractError.self) { try CoordinatorInfo(body: Array(tooMany.body.utf8)) }
    }
}
