public import MSCore

/// The PD role and links of one dmi instance (docs/wire/simulator.md §4, `/v1/role/*`, `/v1/status`). Pure; time injected (ms).
public struct RoleState: Sendable, Equatable {
    public enum Status: String, Sendable { case unknown = "RoleUnknown", switching = "RoleSwitching", ready = "RoleReady" }
    public enum Role: String, Sendable { case none, prefill, decode, flex }

    public private(set) var status: Status
    public private(set) var role: Role
    public private(set) var pPercentage: Int?
    /// Settled links in the order they settled: peer id → `ok` or `failed : <code>`.
    public private(set) var links: [(id: Int64, link: String)] = []
    /// Links still settling: peer id → settle time.
    public private(set) var pending: [(id: Int64, at: Double, failure: String?)] = []
    /// (Q) the last post added no link, so the checker keeps RoleSwitching.
    public private(set) var stuck = false
    public let dmi: Bool

    public init(dmi: Bool) {
        self.dmi = dmi
        status = dmi ? .unknown : .ready
        role = .none
    }

    public static func == (a: RoleState, b: RoleState) -> Bool {
        a.status == b.status && a.role == b.role && a.pPercentage == b.pPercentage && a.stuck == b.stuck
            && a.links.map(\.id) == b.links.map(\.id) && a.links.map(\.link) == b.links.map(\.link)
            && a.pending.map(\.id) == b.pending.map(\.id)
    }

    public var isPrefill: Bool { dmi && (role == .prefill || (role == .flex && (pPercentage ?? 0) != 0)) }
    public var isDecode: Bool { dmi && (role == .decode || (role == .flex && (pPercentage ?? 0) < 100)) }
    public var okLinks: Int { links.filter { $0.link == "ok" }.count }
    public var allLinksFailed: Bool { !links.isEmpty && okLinks == 0 }

    /// The reply of a role post.
    public struct Reply: Sendable, Equatable {
        public var status: Int
        public var body: [UInt8]
    }

    /// `POST /v1/role/{role}`.
    /// - Parameters:
    ///   - linkDelay: ms until a new link settles.
    ///   - linkFailure: when set, new links settle `failed : <this>`.
    ///   - fixSticky: `--fix sticky-switching`.
    ///   - lowercaseType: (Q) the 422 type is `Input validation error`.
    public mutating func post(
        role name: String, body: [UInt8], now: Double, linkDelay: Double, linkFailure: String? = nil,
        fixSticky: Bool = false, lowercaseType: Bool = true
    ) -> Reply {
        let invalid = Reply(
            status: 422,
            body: JSON.obj([
                "error": "Req body converts to json fail. Reset to previous node status.",
                "error_type": .string(lowercaseType ? "Input validation error" : "Input Validation Error"),
            ]).bytes)
        guard let newRole = Role(rawValue: name), newRole != .none, let j = try? JSON.parse(body),
            let peers = RoleState.validate(j)
        else { return invalid }
        var pp: Int?
        if let p = j["local"]?["p_percentage"] ?? j["local"]?.arrayValue?.first?["p_percentage"] {
            guard let v = p.intValue, (0...100).contains(v) else { return invalid }
            pp = Int(v)
        }
        if peers.isEmpty && role == .none {
            return Reply(
                status: 503,
                body: JSON.obj(["error": "Update pd info failed. Reset to previous node status.", "error_type": "Service Unavailable"]).bytes)
        }
        role = newRole
        pPercentage = pp
        status = .switching
        links.removeAll { l in !peers.contains(l.id) }
        pending.removeAll { p in !peers.contains(p.id) }
        var added = 0
        for id in peers where !links.contains(where: { $0.id == id }) && !pending.contains(where: { $0.id == id }) {
            pending.append((id, now + linkDelay, linkFailure))
            added += 1
        }
        stuck = added == 0 && !fixSticky
        return Reply(status: 200, body: JSON.obj(["result": "ok"]).bytes)
    }

    /// Settles links whose delay has passed.
    public mutating func settle(now: Double) {
        let due = pending.filter { $0.at <= now }
        pending.removeAll { $0.at <= now }
        for p in due { links.append((p.id, p.failure.map { "failed : \($0)" } ?? "ok")) }
    }

    /// The 10 s checker: RoleReady once nothing is pending and at least one link is ok.
    public mutating func check(now: Double) {
        settle(now: now)
        if status == .switching, !stuck, pending.isEmpty, okLinks >= 1 { status = .ready }
    }

    /// `role_unknown` fault: back to RoleUnknown/none with no links.
    public mutating func reset() {
        guard dmi else { return }
        status = .unknown; role = .none; pPercentage = nil; links = []; pending = []; stuck = false
    }

    /// Marks a peer's link failed (a KV pull failed).
    public mutating func failLink(_ id: Int64, code: String) {
        if let i = links.firstIndex(where: { $0.id == id }) { links[i].link = "failed : \(code)" }
    }

    /// The `linkStatus` object.
    public var linkStatusJSON: JSON {
        .obj(["peers": .array(links.map { .obj(["target": .int($0.id), "link": .string($0.link)]) })])
    }

    /// Validates a role body; returns the peer ids, or nil when invalid.
    static func validate(_ j: JSON) -> [Int64]? {
        func server(_ s: JSON) -> Int64? {
            guard s.isObject, let ip = s["server_ip"]?.stringValue, isIPv4(ip) else { return nil }
            let id = s["id"], host = s["host_ip"]
            if (id == nil) != (host == nil) { return nil }
            var idValue: Int64 = 0
            if let id {
                if let v = id.intValue, v >= 0 { idValue = v } else if let t = id.stringValue, let v = Int64(t), v >= 0 { idValue = v } else {
                    return nil
                }
            }
            if let devs = s["device"] {
                guard let list = devs.arrayValue else { return nil }
                for d in list {
                    guard let lid = d["device_logical_id"]?.stringValue, Int(lid) != nil,
                        let did = d["device_id"]?.stringValue, Int(did) != nil, d["device_ip"]?.stringValue != nil
                    else { return nil }
                }
            }
            return idValue
        }
        guard let local = j["local"] else { return nil }
        if let arr = local.arrayValue {
            // v2: local is [SRV], peers [[SRV]]
            guard let first = arr.first, first["server_ip"]?.stringValue.map(isIPv4) == true else { return nil }
            var ids: [Int64] = []
            for group in j["peers"]?.arrayValue ?? [] {
                for s in group.arrayValue ?? [] {
                    guard let ip = s["server_ip"]?.stringValue, isIPv4(ip) else { return nil }
                    ids.append(Int64(fnv1a32(Array(ip.utf8))))
                }
            }
            return ids
        }
        guard server(local) != nil else { return nil }
        guard let peers = j["peers"]?.arrayValue ?? (j["peers"] == nil ? [] : nil) else { return nil }
        var ids: [Int64] = []
        for p in peers {
            guard let id = server(p) else { return nil }
            ids.append(id)
        }
        return ids
    }
}
