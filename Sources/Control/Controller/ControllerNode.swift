import Foundation

/// `static_info.label` (§3.2).
public enum InstanceLabel: Int, Sendable, Equatable, Codable {
    case preferPrefill = 0
    case preferDecode = 1
    case prefillOnly = 2
    case decodeOnly = 3
    case flex = 4

    /// The label given with a decided role: P-only, D-only, flex; prefer-P for an undecided node.
    public static func forRole(_ role: InstanceRole) -> InstanceLabel {
        switch role {
        case .prefill: return .prefillOnly
        case .decode: return .decodeOnly
        case .flex: return .flex
        case .undefined: return .preferPrefill
        }
    }
}

/// `inference_type` (§4).
public enum InferenceType: Int, Sendable, Equatable, Codable {
    case available = 0
    case initializingStaticTotalInfo = 1
    case prefillUpdatingPeers = 2
    case unavailable = 3
}

/// Where a node is in discovery (§5 DISCOVERED → PROBING → CANDIDATE / FAULTY).
public enum ProbePhase: Sendable, Equatable {
    /// `GET /v1/config` sent, no answer yet.
    case probing
    /// Config read; the node can be given a role.
    case candidate
    /// Unreachable, or its group had no usable P or D; re-probed on the next table pass.
    case faulty
}

/// Everything the Controller knows about one instance (§4).
public struct ControllerNode: Sendable, Equatable {
    public var id: Int
    public var instance: DiscoveredInstance
    public var key: InstanceKey { instance.key }

    // Assigned.
    public var role: InstanceRole = .undefined
    public var label: InstanceLabel = .preferPrefill
    public var groupID: Int?
    /// The peer list last posted (or to be posted) with the role.
    public var peers: [Int] = []

    // Reported by the server.
    public var currentRole: InstanceRole = .undefined
    public var roleState: RoleState = .unknown
    public var activePeers: [Int] = []
    public var resources = ServerResources()

    // Flags.
    public var phase: ProbePhase = .probing
    public var isHealthy = true
    /// A role post succeeded.
    public var isInitialized = false
    public var inferenceType: InferenceType = .available
    /// A role post is in flight.
    public var rolePostPending = false

    // From `/v1/config` and the first Ready poll.
    public var config: ServerConfigInfo?
    public var totalSlots = 0
    public var totalBlocks = 0
    /// Totals are taken from the first poll after each assignment that reports the assigned role (Ready, or
    /// Switching: a server may stay Switching while linked, and a Coordinator refuses zero totals).
    public var totalsPending = true

    public init(id: Int, instance: DiscoveredInstance) {
        self.id = id
        self.instance = instance
    }

    /// UNKNOWN (§5): healthy and (uninitialized, or RoleUnknown with currentRole none, or peers but no active
    /// peers while not switching). Such a node needs a re-post (§7.2). Only nodes with a role are considered.
    public var needsRepost: Bool {
        guard role != .undefined, isHealthy, phase == .candidate else { return false }
        if !isInitialized { return true }
        if roleState == .unknown && currentRole == .undefined { return true }
        if !peers.isEmpty && activePeers.isEmpty && roleState != .switching { return true }
        return false
    }

    /// The publishability conditions of §5 that do not depend on other nodes.
    public var isLocallyPublishable: Bool {
        guard phase == .candidate, isInitialized, isHealthy else { return false }
        guard inferenceType != .initializingStaticTotalInfo, inferenceType != .unavailable else { return false }
        guard currentRole == role, roleState != .unknown else { return false }
        if role != .flex && (peers.isEmpty || activePeers.isEmpty) { return false }
        return true
    }
}
