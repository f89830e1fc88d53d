public import Foundation

// The Controller ↔ Coordinator management contract (docs/wire/coordinator.md §3): the bodies one side writes and
// the other reads. Both binaries build and read them through these types, so a key renamed on one side is a
// compile error on the other; Tests/ContractTests runs the Controller's encoder into the Coordinator's parser.

/// The `static_info.role` / `current_role` codes: the ASCII letter of the role.
public enum RoleCode: Int, Sendable, CaseIterable {
    /// 'P'.
    case prefill = 80
    /// 'D'.
    case decode = 68
    /// 'F': one instance holding a prefill and a decode part (`p_percentage` splits it).
    case flex = 70
    /// 'U': not yet decided; every instance in single_node mode.
    case undefined = 85
}

/// Why a reply does not follow the contract; `message` names the field.
public struct ContractError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// The body of `POST /v1/instances/refresh` (§3.2): always the full publishable list.
public struct RefreshPayload: Sendable, Equatable, Codable {
    public struct StaticInfo: Sendable, Equatable, Codable {
        public var groupID: Int
        public var maxSeqLen: Int
        public var maxOutputLen: Int
        public var totalSlotsNum: Int
        public var totalBlockNum: Int
        public var blockSize: Int
        public var label: Int
        /// A `RoleCode` raw value.
        public var role: Int
        public var pPercentage: Int
        public var virtualID: Int

        enum CodingKeys: String, CodingKey {
            case groupID = "group_id", maxSeqLen = "max_seq_len", maxOutputLen = "max_output_len"
            case totalSlotsNum = "total_slots_num", totalBlockNum = "total_block_num", blockSize = "block_size"
            case label, role, pPercentage = "p_percentage", virtualID = "virtual_id"
        }

        public init(
            groupID: Int, maxSeqLen: Int, maxOutputLen: Int, totalSlotsNum: Int, totalBlockNum: Int, blockSize: Int,
            label: Int, role: Int, pPercentage: Int, virtualID: Int
        ) {
            self.groupID = groupID
            self.maxSeqLen = maxSeqLen
            self.maxOutputLen = maxOutputLen
            self.totalSlotsNum = totalSlotsNum
            self.totalBlockNum = totalBlockNum
            self.blockSize = blockSize
            self.label = label
            self.role = role
            self.pPercentage = pPercentage
            self.virtualID = virtualID
        }
    }

    public struct DynamicInfo: Sendable, Equatable, Codable {
        public var availSlotsNum: Int
        public var availBlockNum: Int
        public var waitingRequestNum: Int
        public var runningRequestNum: Int
        public var swappedRequestNum: Int
        public var freeNpuBlockNums: Int
        public var freeCpuBlockNums: Int
        public var totalNpuBlockNums: Int
        public var totalCpuBlockNums: Int
        /// Filtered peers (§3.2).
        public var peers: [Int]

        enum CodingKeys: String, CodingKey {
            case availSlotsNum = "avail_slots_num", availBlockNum = "avail_block_num"
            case waitingRequestNum = "waiting_request_num", runningRequestNum = "running_request_num"
            case swappedRequestNum = "swapped_request_num", freeNpuBlockNums = "free_npu_block_nums"
            case freeCpuBlockNums = "free_cpu_block_nums", totalNpuBlockNums = "total_npu_block_nums"
            case totalCpuBlockNums = "total_cpu_block_nums", peers
        }

        public init(
            availSlotsNum: Int, availBlockNum: Int, waitingRequestNum: Int, runningRequestNum: Int,
            swappedRequestNum: Int, freeNpuBlockNums: Int, freeCpuBlockNums: Int, totalNpuBlockNums: Int,
            totalCpuBlockNums: Int, peers: [Int]
        ) {
            self.availSlotsNum = availSlotsNum
            self.availBlockNum = availBlockNum
            self.waitingRequestNum = waitingRequestNum
            self.runningRequestNum = runningRequestNum
            self.swappedRequestNum = swappedRequestNum
            self.freeNpuBlockNums = freeNpuBlockNums
            self.freeCpuBlockNums = freeCpuBlockNums
            self.totalNpuBlockNums = totalNpuBlockNums
            self.totalCpuBlockNums = totalCpuBlockNums
            self.peers = peers
        }
    }

    public struct Instance: Sendable, Equatable, Codable {
        public var id: Int
        public var ip: String
        /// Data port.
        public var port: Int
        public var metricPort: Int
        public var interCommPort: Int
        public var modelName: String
        public var staticInfo: StaticInfo
        public var dynamicInfo: DynamicInfo

        enum CodingKeys: String, CodingKey {
            case id, ip, port, metricPort = "metric_port", interCommPort = "inter_comm_port"
            case modelName = "model_name", staticInfo = "static_info", dynamicInfo = "dynamic_info"
        }

        public init(
            id: Int, ip: String, port: Int, metricPort: Int, interCommPort: Int, modelName: String,
            staticInfo: StaticInfo, dynamicInfo: DynamicInfo
        ) {
            self.id = id
            self.ip = ip
            self.port = port
            self.metricPort = metricPort
            self.interCommPort = interCommPort
            self.modelName = modelName
            self.staticInfo = staticInfo
            self.dynamicInfo = dynamicInfo
        }

        /// Ports go on the wire as strings, as in docs/wire/coordinator.md §3.1 (`"port":"1025"`). `inter_comm_port` is
        /// always present (the reference Coordinator requires the key) but empty when the rank table gave none:
        /// port 0 would be refused where the port is validated.
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(ip, forKey: .ip)
            try c.encode(String(port), forKey: .port)
            try c.encode(String(metricPort), forKey: .metricPort)
            try c.encode(interCommPort > 0 ? String(interCommPort) : "", forKey: .interCommPort)
            try c.encode(modelName, forKey: .modelName)
            try c.encode(staticInfo, forKey: .staticInfo)
            try c.encode(dynamicInfo, forKey: .dynamicInfo)
        }

        /// Accepts ports as strings or integers.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            func portValue(_ k: CodingKeys) throws -> Int {
                if let i = try? c.decode(Int.self, forKey: k) { return i }
                guard let s = try c.decodeIfPresent(String.self, forKey: k), !s.isEmpty else { return 0 }
                guard let i = Int(s) else {
                    throw DecodingError.dataCorruptedError(forKey: k, in: c, debugDescription: "not a port: \(s)")
                }
                return i
            }
            id = try c.decode(Int.self, forKey: .id)
            ip = try c.decode(String.self, forKey: .ip)
            port = try portValue(.port)
            metricPort = try portValue(.metricPort)
            interCommPort = try portValue(.interCommPort)
            modelName = try c.decode(String.self, forKey: .modelName)
            staticInfo = try c.decode(StaticInfo.self, forKey: .staticInfo)
            dynamicInfo = try c.decode(DynamicInfo.self, forKey: .dynamicInfo)
        }
    }

    public var ids: [Int]
    public var instances: [Instance]

    public init(ids: [Int], instances: [Instance]) {
        self.ids = ids
        self.instances = instances
    }

    /// The JSON body.
    public func jsonData() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? e.encode(self)) ?? Data("{}".utf8)
    }
}

/// `GET /v1/instances/tasks?id=…` reply: one in-flight request count per queried id, −1 for an unknown id.
public struct TasksReply: Sendable, Equatable {
    public var tasks: [Int]

    public init(tasks: [Int]) { self.tasks = tasks }

    /// `/v1/instances/tasks?id=1&id=2`.
    public static func path(ids: [Int]) -> String {
        "/v1/instances/tasks" + (ids.isEmpty ? "" : "?" + ids.map { "id=\($0)" }.joined(separator: "&"))
    }

    /// `{"tasks":[…]}`.
    public var body: String { "{\"tasks\":[" + tasks.map(String.init).joined(separator: ",") + "]}" }

    /// Reads a reply; every entry must be an integer in [−1, 2^31−1].
    public init(body: some Collection<UInt8>) throws(ContractError) {
        guard let v = try? JSON.parse(body), case .array(let list)? = v["tasks"] else {
            throw ContractError("tasks must be an array")
        }
        var out: [Int] = []
        for x in list {
            guard case .int(let n) = x, (-1...Int64(Int32.max)).contains(n) else {
                throw ContractError("tasks must hold integers in [-1, 2147483647]")
            }
            out.append(Int(n))
        }
        tasks = out
    }
}

/// `GET /v1/coordinator_info` reply (§3.2): per-instance allocations and the request-length summary used by the
/// Controller's periodic re-decision. Reading rejects the whole reply on any violation.
public struct CoordinatorInfo: Sendable, Equatable {
    public struct Schedule: Sendable, Equatable {
        /// ≥ 0.
        public var id: Int
        /// 0...5000.
        public var allocatedSlots: Int
        /// 0...2^32−1.
        public var allocatedBlocks: Int
        /// Beyond the reference: the passive-health circuit state of an instance whose circuit is not closed
        /// (the Controller ignores it); nil keeps a healthy entry byte-identical to the reference's.
        public var circuit: String?

        public init(id: Int, allocatedSlots: Int, allocatedBlocks: Int, circuit: String? = nil) {
            self.id = id
            self.allocatedSlots = allocatedSlots
            self.allocatedBlocks = allocatedBlocks
            self.circuit = circuit
        }
    }

    /// At most `maxScheduleEntries`.
    public var scheduleInfo: [Schedule]
    /// Requests that arrived so far; written only when the Coordinator knows instances.
    public var requestNum: Int?
    /// 0...2^32−1.
    public var inputLength: Int
    /// 0...2^32−1.
    public var outputLength: Int

    /// Largest number of `schedule_info` entries (6·16·3).
    public static let maxScheduleEntries = 288

    public init(scheduleInfo: [Schedule], requestNum: Int? = nil, inputLength: Int, outputLength: Int) {
        self.scheduleInfo = scheduleInfo
        self.requestNum = requestNum
        self.inputLength = inputLength
        self.outputLength = outputLength
    }

    /// The reply body, keys in the reference's order.
    public var body: String {
        let schedule = scheduleInfo.map { s in
            "{\"id\":\(s.id),\"allocated_slots\":\(s.allocatedSlots),\"allocated_blocks\":\(s.allocatedBlocks)"
                + (s.circuit.map { ",\"circuit\":" + JSON.quoted($0) } ?? "") + "}"
        }
        var out = "{\"schedule_info\":[\(schedule.joined(separator: ","))]"
        if let requestNum { out += ",\"request_num\":\(requestNum)" }
        out += ",\"request_length_info\":{\"input_len\":\(inputLength),\"output_len\":\(outputLength)}}"
        return out
    }

    /// Reads and validates a reply body.
    /// - Throws: `ContractError` naming the field.
    public init(body: some Collection<UInt8>) throws(ContractError) {
        guard let v = try? JSON.parse(body), let o = v.objectValue else { throw ContractError("not a JSON object") }
        guard case .array(let list)? = o["schedule_info"] else { throw ContractError("schedule_info") }
        guard list.count <= Self.maxScheduleEntries else {
            throw ContractError("schedule_info has \(list.count) entries (at most \(Self.maxScheduleEntries))")
        }
        func int(_ o: JSON.Object?, _ key: String, _ range: ClosedRange<Int64>) throws(ContractError) -> Int {
            guard case .int(let i)? = o?[key], range.contains(i) else {
                throw ContractError("\(key) must be an integer in [\(range.lowerBound), \(range.upperBound)]")
            }
            return Int(i)
        }
        var out: [Schedule] = []
        for e in list {
            let eo = e.objectValue
            out.append(
                Schedule(
                    id: try int(eo, "id", 0...Int64(Int32.max)),
                    allocatedSlots: try int(eo, "allocated_slots", 0...5000),
                    allocatedBlocks: try int(eo, "allocated_blocks", 0...4_294_967_295),
                    circuit: eo?["circuit"]?.stringValue))
        }
        scheduleInfo = out
        requestNum = o["request_num"]?.intValue.map { Int($0) }
        guard let lengths = o["request_length_info"]?.objectValue else { throw ContractError("request_length_info") }
        inputLength = try int(lengths, "input_len", 0...4_294_967_295)
        outputLength = try int(lengths, "output_len", 0...4_294_967_295)
    }
}
