import Foundation

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
        /// ASCII code: 85 U, 80 P, 68 D, 70 F.
        public var role: Int
        public var pPercentage: Int
        public var virtualID: Int

        enum CodingKeys: String, CodingKey {
            case groupID = "group_id", maxSeqLen = "max_seq_len", maxOutputLen = "max_output_len"
            case totalSlotsNum = "total_slots_num", totalBlockNum = "total_block_num", blockSize = "block_size"
            case label, role, pPercentage = "p_percentage", virtualID = "virtual_id"
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

/// The body of `POST /v1/role/{prefill|decode|flex}` (§3.1, v1 format).
public struct RolePostPayload: Sendable, Equatable, Codable {
    public struct Device: Sendable, Equatable, Codable {
        public var deviceID: String
        public var deviceIP: String
        public var deviceLogicalID: String
        public var rankID: String
        public var superDeviceID: String?

        enum CodingKeys: String, CodingKey {
            case deviceID = "device_id", deviceIP = "device_ip", deviceLogicalID = "device_logical_id"
            case rankID = "rank_id", superDeviceID = "super_device_id"
        }

        init(_ d: RankTable.Device) {
            deviceID = String(d.deviceID)
            deviceIP = d.deviceIP
            deviceLogicalID = String(d.deviceLogicalID)
            rankID = String(d.rankID)
            superDeviceID = d.superDeviceID.map(String.init)
        }
    }

    public struct Local: Sendable, Equatable, Codable {
        public var serverIP: String
        public var id: Int
        public var hostIP: String
        public var device: [Device]
        public var instanceIdxInPod: Int
        /// 1, or 16 in `pd_disaggregation_single_container`.
        public var numInstancesPerPod: Int
        public var isSingleContainer: Bool
        public var superPodID: String?
        public var pPercentage: Int?

        enum CodingKeys: String, CodingKey {
            case serverIP = "server_ip", id, hostIP = "host_ip", device
            case instanceIdxInPod = "instance_idx_in_pod", numInstancesPerPod = "num_instances_per_pod"
            case isSingleContainer = "is_single_container", superPodID = "super_pod_id", pPercentage = "p_percentage"
        }
    }

    public struct Peer: Sendable, Equatable, Codable {
        public var serverIP: String
        public var id: Int
        public var hostIP: String
        public var device: [Device]
        /// The peer's own super pod (the reference copies the local one: a bug we do not keep).
        public var superPodID: String?

        enum CodingKeys: String, CodingKey {
            case serverIP = "server_ip", id, hostIP = "host_ip", device, superPodID = "super_pod_id"
        }
    }

    public var local: Local
    public var peers: [Peer]

    /// Builds the post for `node` with `peers` (deleted peers must already be left out).
    public init(node: ControllerNode, peers: [ControllerNode], singleContainer: Bool = false) {
        local = Local(
            serverIP: node.instance.ip, id: node.id, hostIP: node.instance.hostID,
            device: node.instance.devices.map(Device.init), instanceIdxInPod: 0,
            numInstancesPerPod: singleContainer ? 16 : 1, isSingleContainer: singleContainer,
            superPodID: node.instance.servers[0].superPodID, pPercentage: nil)
        self.peers = peers.map {
            Peer(serverIP: $0.instance.ip, id: $0.id, hostIP: $0.instance.hostID, device: $0.instance.devices.map(Device.init),
                 superPodID: $0.instance.servers[0].superPodID)
        }
    }

    /// The JSON body.
    public func jsonData() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? e.encode(self)) ?? Data("{}".utf8)
    }
}
