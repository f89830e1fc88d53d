public import MSCore

/// An injected fault (docs/wire/simulator.md §7).
public struct Fault: Sendable, Equatable {
    public var id: String
    /// `crash`, `hang`, `slow_start`, `refuse`, `http_error`, `slow_reply`, `die_mid_stream`, `p_reply`,
    /// `p_send_d_fail`, `kv_pull_fail`, `dresult_retry`, `dresult_error`, `dresult_drop`, `dresult_garble`,
    /// `role_fail`, `role_unknown`, `bad_json`, `kv_shrink`, `health`.
    public var type: String
    public var params: [String: String]
    /// Only requests whose path contains `path`, whose req-id is `reqId`, ... (nil = any).
    public var matchPath: String?
    public var matchReqId: String?
    public var matchDialect: String?
    public var matchRole: String?
    public var probability: Double
    /// Triggers left; nil = unlimited.
    public var count: Int?

    public init(
        id: String, type: String, params: [String: String] = [:], matchPath: String? = nil, matchReqId: String? = nil,
        matchDialect: String? = nil, matchRole: String? = nil, probability: Double = 1, count: Int? = nil
    ) {
        self.id = id; self.type = type; self.params = params; self.matchPath = matchPath; self.matchReqId = matchReqId
        self.matchDialect = matchDialect; self.matchRole = matchRole; self.probability = probability; self.count = count
    }

    /// Parses `type:k=v,k=v` (the `--fault` form) or `type;k=v;k=v` (the `X-Sim-Fault` form). A bare value
    /// without `=` is stored under `mode`.
    public static func parse(_ text: String, id: String) -> Fault? {
        let sepIndex = text.firstIndex(where: { $0 == ":" || $0 == ";" })
        let type = String(sepIndex.map { text[..<$0] } ?? Substring(text)).trimmingCharacters(in: " ")
        guard !type.isEmpty else { return nil }
        var f = Fault(id: id, type: type)
        if let i = sepIndex {
            for item in text[text.index(after: i)...].split(whereSeparator: { $0 == "," || $0 == ";" }) {
                let kv = item.split(separator: "=", maxSplits: 1)
                let k = String(kv[0]).trimmingCharacters(in: " ")
                let v = kv.count == 2 ? String(kv[1]).trimmingCharacters(in: " ") : k
                switch kv.count == 2 ? k : "" {
                case "path": f.matchPath = v
                case "reqId", "req_id": f.matchReqId = v
                case "dialect": f.matchDialect = v
                case "role": f.matchRole = v
                case "probability": f.probability = Double(v) ?? 1
                case "count": f.count = Int(v)
                default: f.params[kv.count == 2 ? k : "mode"] = v
                }
            }
        }
        return f
    }

    /// Parses the control API form `{"type","params","match":{...},"probability","count"}`.
    public static func parse(json j: JSON, id: String) -> Fault? {
        guard let type = j["type"]?.stringValue else { return nil }
        var f = Fault(id: id, type: type)
        if case .object(let ms) = j["params"] ?? .null {
            for m in ms {
                switch m.value {
                case .string(let s): f.params[m.key] = s
                case .int(let i): f.params[m.key] = String(i)
                case .double(let d): f.params[m.key] = String(d)
                case .bool(let b): f.params[m.key] = String(b)
                default: break
                }
            }
        }
        if let m = j["match"] {
            f.matchPath = m["path"]?.stringValue; f.matchReqId = m["reqId"]?.stringValue
            f.matchDialect = m["dialect"]?.stringValue; f.matchRole = m["role"]?.stringValue
        }
        f.probability = j["probability"]?.doubleValue ?? 1
        f.count = j["count"]?.intValue.map { Int($0) }
        return f
    }

    public func int(_ k: String) -> Int? { params[k].flatMap { Int($0) } }
    public func double(_ k: String) -> Double? { params[k].flatMap { Double($0) } }
    public var mode: String? { params["mode"] }

    public var json: JSON {
        let p = JSON.Object(params.keys.sorted().map { ($0, JSON.string(params[$0]!)) })
        var m = JSON.Object()
        if let v = matchPath { m["path"] = .string(v) }
        if let v = matchReqId { m["reqId"] = .string(v) }
        if let v = matchDialect { m["dialect"] = .string(v) }
        if let v = matchRole { m["role"] = .string(v) }
        return .obj([
            "id": .string(id), "type": .string(type), "params": .object(p), "match": .object(m),
            "probability": .double(probability), "count": count.map { .int($0) } ?? .null,
        ])
    }
}

extension String {
    func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}

/// What a fault is matched against.
struct FaultContext {
    var path: String
    var reqId: String?
    var dialect: Dialect?
    var role: String
}

/// The active faults of one instance.
struct FaultSet {
    private(set) var faults: [Fault] = []
    var rng = SplitMix64(seed: 0x5EED)

    mutating func put(_ f: Fault) {
        if let i = faults.firstIndex(where: { $0.id == f.id }) { faults[i] = f } else { faults.append(f) }
    }

    @discardableResult
    mutating func remove(_ id: String) -> Bool {
        let n = faults.count
        faults.removeAll { $0.id == id }
        return faults.count != n
    }

    /// Whether a fault of `type` is active at all (no matching, no trigger count).
    func active(_ type: String) -> Fault? { faults.first { $0.type == type } }

    /// The first fault of `type` that matches `ctx`, consuming one trigger.
    mutating func take(_ type: String, _ ctx: FaultContext) -> Fault? {
        for i in faults.indices where faults[i].type == type {
            let f = faults[i]
            if let p = f.matchPath, !ctx.path.contains(p) { continue }
            if let r = f.matchReqId, r != ctx.reqId { continue }
            if let d = f.matchDialect, d != ctx.dialect?.rawValue { continue }
            if let r = f.matchRole, r != ctx.role { continue }
            if f.probability < 1, rng.unit() >= f.probability { continue }
            if let c = f.count {
                if c <= 0 { continue }
                faults[i].count = c - 1
            }
            return f
        }
        return nil
    }
}
