public import MSCore

/// Byte formats of the PD protocol, server side (docs/wire/simulator.md §3).
public enum PDWire {
    /// P's reply: `{"reqId","isStream"[,"isLastResp","output"]}`.
    public static func pReply(reqId: String, isStream: Bool, isLastResp: Bool? = nil, output: [UInt8]? = nil) -> [UInt8] {
        var j = JSON.obj(["reqId": .string(reqId), "isStream": .bool(isStream)])
        if let isLastResp { j = j.setting("isLastResp", .bool(isLastResp)) }
        if let output { j = j.setting("output", .string(String(decoding: output, as: UTF8.self))) }
        return j.bytes
    }

    /// One `/dresult` message: `reqId:<id>\0<kind>:<payload>\0`.
    public static func message(reqId: String, kind: DResultKind, payload: [UInt8]) -> [UInt8] {
        Array("reqId:\(reqId)\u{0}\(kind.rawValue):".utf8) + payload + [0]
    }

    /// The keep-alive message, sent alone.
    public static let heartbeat: [UInt8] = Array("ka:heartbeat\u{0}".utf8)

    /// What an old `/dresult` link gets when a new one opens.
    public static let closeOld: [UInt8] = Array(
        "reqId:0xffffffffffffffff\u{0}close:new connection is to established, close the old one.\u{0}".utf8)

    /// Splits a `/dresult` byte stream into NUL-terminated messages (empty ones kept), returning the rest.
    public static func split(_ bytes: [UInt8]) -> (messages: [String], rest: [UInt8]) {
        var out: [String] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == 0 {
            out.append(String(decoding: bytes[start..<i], as: UTF8.self))
            start = i + 1
        }
        return (out, Array(bytes[start...]))
    }
}

/// Kinds of `/dresult` message.
public enum DResultKind: String, Sendable, Equatable {
    case data
    case lastData
    case error
    case retry
}

/// The PD headers of a request to a P (docs/wire/simulator.md §3.1).
public struct PDHeaders: Sendable, Equatable {
    public var reqId: String
    /// `d-target` IP part.
    public var targetIP: String
    /// `d-target` port after `;`, if any.
    public var targetPort: Int?
    public var isRecompute: Bool

    /// The admission checks of docs/wire/simulator.md §3.1 steps 3–7, in order.
    /// - Parameter header: case-insensitive header lookup.
    public static func check(_ header: (String) -> String?) throws(WireError) -> PDHeaders {
        guard let type = header("req-type"), let id = header("req-id"), let target = header("d-target") else {
            throw .badRequest("DMI request must have req-type, req-id, d-target headers")
        }
        guard !id.isEmpty, id.unicodeScalars.allSatisfy({ $0.properties.isASCIIHexDigit }) else {
            throw .badRequest("Invalid req-id, the character of req-id should be hex char [0-9, a-f, A-F], but got \(id)")
        }
        guard id.utf8.count <= 1024 else { throw .badRequest("The length of req-id cannot exceed 1024") }
        guard type == "prefill" else { throw .badRequest("Parameter req-type must be prefill but got \(type)") }
        let parts = target.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)
        let ip = String(parts[0])
        guard isIPv4(ip) else { throw .badRequest("Parameter d-target must be an IPv4 address") }
        var port: Int?
        if parts.count == 2 { port = Int(parts[1]) }
        var recompute = false
        if let r = header("is-recompute") {
            switch r {
            case "true": recompute = true
            case "false": recompute = false
            default:
                throw .badRequest("Parameter is-recompute is an optional parameter. When it is set, it must be true or false.")
            }
        }
        return PDHeaders(reqId: id, targetIP: ip, targetPort: port, isRecompute: recompute)
    }
}

/// Whether `s` is a dotted-quad IPv4 address.
public func isIPv4(_ s: String) -> Bool {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return false }
    for p in parts {
        guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let v = Int(p), v <= 255 else { return false }
    }
    return true
}

/// The P→D decode call (simulator-private JSON on `POST /sim/pd/decode`, docs/wire/simulator.md §3.2).
public struct DecodeParameters: Sendable, Equatable {
    public var reqId: String
    public var promptTokens: [UInt32]
    /// Output tokens already produced (P's first token, plus any before a recompute).
    public var firstTokens: [UInt32]
    public var isStream: Bool
    /// Output tokens wanted in total (0 = D default).
    public var maxNewToken: Int
    public var seed: UInt64
    public var model: String
    public var dialect: Dialect
    public var details: Bool
    public var includeUsage: Bool
    /// Triton `id`, chat id.
    public var id: String
    public var responseId: String
    public var created: Int64
    public var promptText: String
    public var cachedTokens: Int
    public var pNodeAddr: String
    public var e2eStartTime: Double
    public var eosAfter: Int?
    /// The request as P received it (D re-parses it for the rendering options).
    public var body: JSON = .obj([:])
    public var path: String = "/"
    public var isRecompute: Bool = false

    public init(
        reqId: String, promptTokens: [UInt32], firstTokens: [UInt32], isStream: Bool, maxNewToken: Int, seed: UInt64,
        model: String, dialect: Dialect, details: Bool, includeUsage: Bool, id: String, responseId: String,
        created: Int64, promptText: String, cachedTokens: Int, pNodeAddr: String, e2eStartTime: Double, eosAfter: Int?
    ) {
        self.reqId = reqId; self.promptTokens = promptTokens; self.firstTokens = firstTokens; self.isStream = isStream
        self.maxNewToken = maxNewToken; self.seed = seed; self.model = model; self.dialect = dialect
        self.details = details; self.includeUsage = includeUsage; self.id = id; self.responseId = responseId
        self.created = created; self.promptText = promptText; self.cachedTokens = cachedTokens
        self.pNodeAddr = pNodeAddr; self.e2eStartTime = e2eStartTime; self.eosAfter = eosAfter
    }

    public var json: JSON {
        .obj([
            "reqId": .string(reqId), "promptTokens": .array(promptTokens.map { .int(Int64($0)) }),
            "firstTokens": .array(firstTokens.map { .int(Int64($0)) }), "msgType": "decode", "isStream": .bool(isStream),
            "maxNewToken": .int(maxNewToken), "sampling": .obj(["seed": .int(Int64(bitPattern: seed))]),
            "model": .string(model), "dialect": .string(dialect.rawValue), "details": .bool(details),
            "includeUsage": .bool(includeUsage), "id": .string(id), "responseId": .string(responseId),
            "created": .int(created), "promptText": .string(promptText), "cachedTokens": .int(cachedTokens),
            "pNodeAddr": .string(pNodeAddr), "blockTable": [], "e2eStartTime": .double(e2eStartTime),
            "eosAfter": eosAfter.map { .int($0) } ?? .null, "body": body, "path": .string(path),
            "isRecompute": .bool(isRecompute),
        ])
    }

    /// Decodes the JSON form; nil when a field is missing or mistyped.
    public init?(json j: JSON) {
        guard let reqId = j["reqId"]?.stringValue, let pt = j["promptTokens"]?.arrayValue,
            let ft = j["firstTokens"]?.arrayValue, let isStream = j["isStream"]?.boolValue,
            let maxNew = j["maxNewToken"]?.intValue, let dialect = j["dialect"]?.stringValue.flatMap(Dialect.init(rawValue:))
        else { return nil }
        self.reqId = reqId
        self.promptTokens = pt.compactMap { $0.intValue.map { UInt32(truncatingIfNeeded: $0) } }
        self.firstTokens = ft.compactMap { $0.intValue.map { UInt32(truncatingIfNeeded: $0) } }
        self.isStream = isStream
        self.maxNewToken = Int(maxNew)
        self.seed = UInt64(bitPattern: j["sampling"]?["seed"]?.intValue ?? 0)
        self.model = j["model"]?.stringValue ?? ""
        self.dialect = dialect
        self.details = j["details"]?.boolValue ?? false
        self.includeUsage = j["includeUsage"]?.boolValue ?? false
        self.id = j["id"]?.stringValue ?? reqId
        self.responseId = j["responseId"]?.stringValue ?? reqId
        self.created = j["created"]?.intValue ?? 0
        self.promptText = j["promptText"]?.stringValue ?? ""
        self.cachedTokens = Int(j["cachedTokens"]?.intValue ?? 0)
        self.pNodeAddr = j["pNodeAddr"]?.stringValue ?? ""
        self.e2eStartTime = j["e2eStartTime"]?.doubleValue ?? 0
        self.eosAfter = j["eosAfter"]?.intValue.map { Int($0) }
        self.body = j["body"] ?? .obj([:])
        self.path = j["path"]?.stringValue ?? "/"
        self.isRecompute = j["isRecompute"]?.boolValue ?? false
    }

    /// D's answer: `{"isValidDecodeParameters":b,"errorMessage":s}`.
    public static func answer(valid: Bool, error: String = "") -> [UInt8] {
        JSON.obj(["isValidDecodeParameters": .bool(valid), "errorMessage": .string(error)]).bytes
    }
}

extension InferenceRequest {
    /// The recompute body (`retry:` payload, docs/wire/simulator.md §3.4): the token string replaces the dialect's text field.
    public func recomputeBody(prompt p: [UInt32], generated g: [UInt32]) -> [UInt8] {
        let s = JSON.string(RequestParser.tokenString(prompt: p, generated: g))
        var b = body
        switch dialect {
        case .chat: b = b.setting("messages", s)
        case .completions: b = b.setting("prompt", s)
        case .vllm: b = b.setting("prompt", s).setting("origin_inputs", .string(promptText))
        case .tgiGeneral, .tgiGenerate, .tgiStream: b = b.setting("inputs", s).setting("origin_inputs", .string(promptText))
        case .mindie: b = b.setting("inputs", s)
        case .mindieToken: b = b.setting("input_id", .array((p + g).map { .int(Int64($0)) }))
        case .tritonText: b = b.setting("text_input", s)
        case .tritonToken:
            var first = b["inputs"]?.arrayValue?.first ?? .obj([:])
            first = first.setting("shape", [1, .int(p.count + g.count)]).setting("data", .array((p + g).map { .int(Int64($0)) }))
            b = b.setting("inputs", [first]).setting("prompt_length", .int(p.count))
        }
        return b.bytes
    }
}
