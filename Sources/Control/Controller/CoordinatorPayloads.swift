public import Foundation
import MSCore

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
