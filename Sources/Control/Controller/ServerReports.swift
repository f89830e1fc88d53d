public import Foundation
import MSCore

/// `service.roleStatus` of a MindIE Server.
public enum RoleState: String, Sendable, Equatable, Codable {
    case unknown = "RoleUnknown"
    case switching = "RoleSwitching"
    case ready = "RoleReady"
}

/// Why a probe of a server failed (event `0xFC001003` reason: 1 = no reply, 2 = bad response).
public enum ProbeFailure: Error, Sendable, Equatable {
    /// Transport failure or timeout.
    case noReply
    /// A reply other than 200, or a body that fails validation.
    case badResponse(String)

    /// The reason code of the unhealthy event.
    public var reasonCode: Int {
        switch self {
        case .noReply: return 1
        case .badResponse: return 2
        }
    }
}

/// The part of `GET /v1/config` the Controller needs (§3.1).
public struct ServerConfigInfo: Sendable, Equatable {
    public var modelName: String
    /// [0, 2^32−1].
    public var maxSeqLen: Int
    /// [1, 2^32−2].
    public var maxOutputLen: Int
    /// [1, 128].
    public var cacheBlockSize: Int

    public init(modelName: String, maxSeqLen: Int, maxOutputLen: Int, cacheBlockSize: Int) {
        self.modelName = modelName
        self.maxSeqLen = maxSeqLen
        self.maxOutputLen = maxOutputLen
        self.cacheBlockSize = cacheBlockSize
    }

    /// Parses and validates a `/v1/config` body.
    /// - Throws: `ProbeFailure.badResponse` naming the field.
    public init(body: Data) throws(ProbeFailure) {
        let o = try Self.object(body)
        guard case .string(let name)? = o["modelName"], !name.isEmpty else { throw .badResponse("modelName") }
        modelName = name
        maxSeqLen = try Self.int(o, "maxSeqLen", 0...4_294_967_295)
        maxOutputLen = try Self.int(o, "maxOutputLen", 1...4_294_967_294)
        cacheBlockSize = try Self.int(o, "cacheBlockSize", 1...128)
    }

    static func object(_ body: Data) throws(ProbeFailure) -> JSON.Object {
        guard let v = try? JSON.parse(body), let o = v.objectValue else { throw .badResponse("not a JSON object") }
        return o
    }

    static func int(_ o: JSON.Object?, _ key: String, _ range: ClosedRange<Int64>) throws(ProbeFailure) -> Int {
        guard case .int(let i)? = o?[key], range.contains(i) else {
            throw .badResponse("\(key) must be an integer in [\(range.lowerBound), \(range.upperBound)]")
        }
        return Int(i)
    }
}

/// Resource counters of a status reply (v1 names; v2 replies are mapped onto them).
public struct ServerResources: Sendable, Equatable, Codable {
    public var availSlotsNum: Int = 0
    public var availBlockNum: Int = 0
    public var waitingRequestNum: Int = 0
    public var runningRequestNum: Int = 0
    public var swappedRequestNum: Int = 0
    public var freeNpuBlockNums: Int = 0
    public var freeCpuBlockNums: Int = 0
    public var totalNpuBlockNums: Int = 0
    public var totalCpuBlockNums: Int = 0

    public init(
        availSlotsNum: Int = 0, availBlockNum: Int = 0, waitingRequestNum: Int = 0, runningRequestNum: Int = 0,
        swappedRequestNum: Int = 0, freeNpuBlockNums: Int = 0, freeCpuBlockNums: Int = 0,
        totalNpuBlockNums: Int = 0, totalCpuBlockNums: Int = 0
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
    }
}

/// A `GET /v1/status` (or `/v2/status`) reply (§3.1).
public struct ServerStatus: Sendable, Equatable {
    public var roleState: RoleState
    /// `service.currentRole`; `none` is `.undefined`.
    public var currentRole: InstanceRole
    public var resources: ServerResources
    /// Peer ids whose link is `"ok"` (the active peers).
    public var activePeers: [Int]

    public init(roleState: RoleState, currentRole: InstanceRole, resources: ServerResources = .init(), activePeers: [Int] = []) {
        self.roleState = roleState
        self.currentRole = currentRole
        self.resources = resources
        self.activePeers = activePeers
    }

    /// Parses and validates a status body.
    /// - Parameter v2: the multi-node `/v2/status` format (`maxAvailNpuBlockNum` gives the available blocks).
    /// - Throws: `ProbeFailure.badResponse` naming the field.
    public init(body: Data, v2: Bool = false) throws(ProbeFailure) {
        let o = try ServerConfigInfo.object(body)
        guard let service = o["service"]?.objectValue else { throw .badResponse("service") }
        guard case .string(let rs)? = service["roleStatus"], let state = RoleState(rawValue: rs) else {
            throw .badResponse("service.roleStatus")
        }
        roleState = state
        switch service["currentRole"] {
        case .string("prefill")?: currentRole = .prefill
        case .string("decode")?: currentRole = .decode
        case .string("flex")?: currentRole = .flex
        case .string("none")?: currentRole = .undefined
        default: throw .badResponse("service.currentRole")
        }
        let r = o["resource"]?.objectValue
        guard r != nil else { throw .badResponse("resource") }
        let any: ClosedRange<Int64> = 0...4_294_967_295
        var res = ServerResources()
        if v2 {
            res.availSlotsNum = try ServerConfigInfo.int(r, "totalAvailNpuSlotsNum", 0...5000)
            _ = try ServerConfigInfo.int(r, "totalAvailNpuBlockNum", any)
            res.availBlockNum = try ServerConfigInfo.int(r, "maxAvailNpuBlockNum", any)
        } else {
            res.availSlotsNum = try ServerConfigInfo.int(r, "availSlotsNum", 0...5000)
            res.availBlockNum = try ServerConfigInfo.int(r, "availBlockNum", any)
            res.waitingRequestNum = try ServerConfigInfo.int(r, "waitingRequestNum", any)
            res.runningRequestNum = try ServerConfigInfo.int(r, "runningRequestNum", any)
            res.swappedRequestNum = try ServerConfigInfo.int(r, "swappedRequestNum", any)
            res.freeNpuBlockNums = try ServerConfigInfo.int(r, "freeNpuBlockNums", any)
            res.freeCpuBlockNums = try ServerConfigInfo.int(r, "freeCpuBlockNums", any)
            res.totalNpuBlockNums = try ServerConfigInfo.int(r, "totalNpuBlockNums", any)
            res.totalCpuBlockNums = try ServerConfigInfo.int(r, "totalCpuBlockNums", any)
        }
        resources = res
        guard case .array(let peers)? = o["linkStatus"]?["peers"] else { throw .badResponse("linkStatus.peers") }
        var active: [Int] = []
        for p in peers {
            guard case .int(let target)? = p["target"] else { throw .badResponse("linkStatus.peers.target") }
            if case .string("ok")? = p["link"] { active.append(Int(target)) }
        }
        activePeers = active
    }
}
