public import MSCore

/// The request dialects of the data port (docs/wire/simulator.md §2.2).
public enum Dialect: String, Sendable, Equatable, CaseIterable {
    /// `POST /` (TGI general; `stream` optional; non-stream replies are a one-element array).
    case tgiGeneral
    /// `POST /generate` with `inputs` (never streams).
    case tgiGenerate
    /// `POST /generate_stream`.
    case tgiStream
    /// `POST /generate` with `prompt`.
    case vllm
    case chat
    case completions
    /// `/v2/models/{m}/generate[_stream]`.
    case tritonText
    /// `/v2/models/{m}/infer`.
    case tritonToken
    /// `/infer`.
    case mindie
    /// `/infer_token`.
    case mindieToken

    var isOpenAI: Bool { self == .chat || self == .completions }
    var isTGI: Bool { self == .tgiGeneral || self == .tgiGenerate || self == .tgiStream }
}

/// A parsed inference request, whatever its dialect.
public struct InferenceRequest: Sendable, Equatable {
    public var dialect: Dialect
    public var stream: Bool
    /// Tokens to prefill (on a recompute: the original prompt followed by the generated tokens).
    public var prompt: [UInt32]
    /// The prompt text (vLLM echoes it).
    public var promptText: String
    /// Output tokens already generated (recompute).
    public var preGenerated: Int
    /// Output tokens asked for (before the engine's limits).
    public var maxTokens: Int
    public var details: Bool
    public var seed: UInt64?
    /// OpenAI `stream_options.include_usage`.
    public var includeUsage: Bool
    /// Triton `id` from the body.
    public var tritonId: String?
    /// The body as received, for re-encoding a recompute.
    public var body: JSON
    public var isRecompute: Bool

    /// Prompt length before any recompute tokens.
    public var originalPromptLength: Int { prompt.count - preGenerated }
    /// The seed the output generator uses.
    public var outputSeed: UInt64 { seed ?? OutputGenerator.seed(forPrompt: Array(prompt.prefix(originalPromptLength))) }
}

/// Where a route leads.
public enum Route: Sendable, Equatable {
    case infer(Dialect)
    case tokenizer
    case models
    case model(String)
    case v2
    case v2Model(String)
    case v2ModelConfig(String)
    case stopInfer(String)
    case dresult
    /// A Triton path that names another model: 404 `Model <m> not found.`
    case unknownModel(String)
    case notFound

    /// Routes of the data port (docs/wire/simulator.md §1, §2.2).
    public static func data(method: String, path: String, acceptTritonVersions: Bool = false) -> Route {
        if method == "GET" {
            switch path {
            case "/v1/models": return .models
            case "/dresult": return .dresult
            case "/v2": return .v2
            default: break
            }
            if path.hasPrefix("/v1/models/") { return .model(String(path.dropFirst("/v1/models/".count))) }
        }
        if method == "POST" {
            switch path {
            case "/": return .infer(.tgiGeneral)
            case "/generate": return .infer(.tgiGenerate)  // vLLM vs TGI decided by the body
            case "/generate_stream": return .infer(.tgiStream)
            case "/v1/chat/completions": return .infer(.chat)
            case "/v1/completions": return .infer(.completions)
            case "/infer": return .infer(.mindie)
            case "/infer_token": return .infer(.mindieToken)
            case "/v1/tokenizer": return .tokenizer
            default: break
            }
        }
        guard path.hasPrefix("/v2/models/") else { return .notFound }
        var parts = path.dropFirst("/v2/models/".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let m = parts.first, isModelName(m) else { return .notFound }
        parts.removeFirst()
        if parts.count >= 2, parts[0] == "versions" {
            guard acceptTritonVersions else { return .notFound }
            parts.removeFirst(2)
        }
        switch (method, parts) {
        case ("GET", []): return .v2Model(m)
        case ("GET", ["config"]): return .v2ModelConfig(m)
        case ("POST", ["generate"]): return .infer(.tritonText)
        case ("POST", ["generate_stream"]): return .infer(.tritonText)
        case ("POST", ["infer"]): return .infer(.tritonToken)
        case ("POST", ["stopInfer"]): return .stopInfer(m)
        default: return .notFound
        }
    }

    /// The `{m}` of a Triton path, if any.
    public static func tritonModel(in path: String) -> String? {
        guard path.hasPrefix("/v2/models/") else { return nil }
        return path.dropFirst("/v2/models/".count).split(separator: "/").first.map(String.init)
    }

    static func isModelName(_ s: String) -> Bool {
        !s.isEmpty && s.unicodeScalars.allSatisfy { $0 == "_" || $0 == "." || $0 == "-" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) }
    }
}

/// What the parser needs to know about the instance.
public struct ParseContext: Sendable {
    public var modelName: String
    public var maxIterTimes: Int
    public var isRecompute: Bool
    public init(modelName: String, maxIterTimes: Int, isRecompute: Bool = false) {
        self.modelName = modelName; self.maxIterTimes = maxIterTimes; self.isRecompute = isRecompute
    }
}

public enum RequestParser {
    /// The (Q) JSON-in-string 422 text of `/generate` with neither `prompt` nor `inputs`.
    public static let generateMissingInput =
        "{\"Error\": \"`inputs` or `prompt` must be necessary and data type must be string. Additionally, the request body must be valid json\", \"error_type\": \"validation\"}"

    /// Parses an inference body for `dialect` (as routed; `/generate` is refined by the body).
    /// - Throws: the §2.1 error to send.
    public static func parse(
        dialect routed: Dialect, path: String, body bytes: [UInt8], context: ParseContext
    ) throws(WireError) -> InferenceRequest {
        let body: JSON
        do { body = try JSON.parse(bytes) } catch { throw .validation("Failed to parse request context to json") }
        guard body.isObject else { throw .validation("Failed to parse request context to json") }
        var dialect = routed
        if routed == .tgiGenerate {
            if body["prompt"] != nil { dialect = .vllm } else if body["inputs"] != nil { dialect = .tgiGenerate } else {
                throw .validation(generateMissingInput)
            }
        }
        let params = body["parameters"]
        var r = InferenceRequest(
            dialect: dialect, stream: false, prompt: [], promptText: "", preGenerated: 0, maxTokens: 20,
            details: false, seed: nil, includeUsage: false, tritonId: nil, body: body, isRecompute: context.isRecompute)

        func text(_ j: JSON?, _ name: String) throws(WireError) -> String {
            guard let s = j?.stringValue else { throw .validation("Parameter \(name) must be a string.") }
            return s
        }
        func setText(_ s: String) throws(WireError) {
            if context.isRecompute {
                guard let (tokens, k) = parseTokenString(s) else { throw .validation("Invalid recompute token string.") }
                r.prompt = tokens; r.preGenerated = k
            } else {
                r.prompt = Tokenizer.encode(s)
            }
            r.promptText = s
        }
        func positive(_ j: JSON?, _ name: String, default d: Int) throws(WireError) -> Int {
            guard let j, !j.isNull else { return d }
            guard let v = j.intValue, case .int = j, v > 0, v <= Int64(Int32.max) else {
                throw .validation("Parameter \(name) must be in (0, 2147483647], got \(j.compact).")
            }
            return Int(v)
        }
        func boolean(_ j: JSON?, _ name: String) throws(WireError) -> Bool {
            guard let j, !j.isNull else { return false }
            guard let b = j.boolValue else { throw .validation("Parameter \(name) must be boolean type.") }
            return b
        }
        func seed(_ j: JSON?) throws(WireError) -> UInt64? {
            guard let j, !j.isNull else { return nil }
            guard let v = j.intValue, v >= 0 else { throw .validation("Parameter seed must be a non-negative integer.") }
            return UInt64(v)
        }

        switch dialect {
        case .tgiGeneral, .tgiGenerate, .tgiStream:
            try setText(text(body["inputs"], "inputs"))
            r.maxTokens = try positive(params?["max_new_tokens"], "max_new_tokens", default: 20)
            r.details = try boolean(params?["details"], "details")
            r.seed = try seed(params?["seed"])
            switch dialect {
            case .tgiStream: r.stream = true
            case .tgiGeneral:
                if let s = body["stream"], !s.isNull {
                    guard let b = s.boolValue else { throw .validation("Stream must be boolean type.") }
                    r.stream = b
                }
            default: r.stream = false
            }
        case .vllm:
            try setText(text(body["prompt"], "prompt"))
            r.maxTokens = try positive(body["max_tokens"], "max_tokens", default: context.maxIterTimes)
            r.stream = try boolean(body["stream"], "stream")
            r.seed = try seed(body["seed"])
        case .chat, .completions:
            guard let model = body["model"], !model.isNull else { throw .validation("Request contains not model or model null") }
            guard model.stringValue == context.modelName else { throw .validation("Model not found") }
            if dialect == .chat {
                guard let messages = body["messages"], !messages.isNull else {
                    throw .validation("Request param contains not messages or messages null")
                }
                if context.isRecompute {
                    guard let s = messages.stringValue else { throw .validation("Messages MUST be a string for recompute") }
                    try setText(s)
                } else {
                    try setText(chatText(messages))
                }
            } else {
                guard let p = body["prompt"], !p.isNull else { throw .validation("Request param contains not prompt or prompt null") }
                if let s = p.stringValue { try setText(s) } else if let a = p.arrayValue, a.count == 1, let s = a[0].stringValue {
                    try setText(s)
                } else { throw .validation("Parameter prompt must be a string.") }
            }
            let mt = body["max_tokens"].flatMap { $0.isNull ? nil : $0 } ?? body["max_completion_tokens"]
            r.maxTokens = try positive(mt, "max_tokens", default: context.maxIterTimes)
            r.stream = try boolean(body["stream"], "stream")
            r.seed = try seed(body["seed"])
            r.includeUsage = body["stream_options"]?["include_usage"]?.boolValue ?? false
        case .tritonText:
            try setText(text(body["text_input"], "text_input"))
            r.maxTokens = try positive(params?["max_new_tokens"], "max_new_tokens", default: 20)
            r.details = try boolean(params?["details"], "details")
            r.seed = try seed(params?["seed"])
            r.stream = path.hasSuffix("/generate_stream")
            r.tritonId = body["id"]?.stringValue
        case .tritonToken:
            guard let inputs = body["inputs"]?.arrayValue, let first = inputs.first, first.isObject else {
                throw .validation("Parameter inputs must be a non-empty array.")
            }
            let dt = first["datatype"]?.stringValue ?? ""
            guard dt == "UINT32" else { throw .validation("Unsupported datatype, got \(dt).") }
            guard let data = first["data"]?.arrayValue else { throw .validation("Parameter data must be an array.") }
            var ids: [UInt32] = []
            for d in data {
                guard let v = d.intValue, v >= 0, v <= Int64(UInt32.max) else { throw .validation("Parameter data must be UINT32 values.") }
                ids.append(UInt32(v))
            }
            if context.isRecompute, let shape = first["shape"]?.arrayValue, shape.count == 2, let l = body["prompt_length"]?.intValue {
                r.preGenerated = max(0, ids.count - Int(l))
                _ = shape
            }
            r.prompt = ids
            r.maxTokens = try positive(params?["max_new_tokens"], "max_new_tokens", default: 20)
            r.seed = try seed(params?["seed"])
            r.tritonId = body["id"]?.stringValue
        case .mindie, .mindieToken:
            let hasInputs = body["inputs"] != nil, hasIds = body["input_id"] != nil
            if hasInputs && hasIds { throw .validation("Input conflict.") }
            if dialect == .mindie && hasInputs {
                try setText(text(body["inputs"], "inputs"))
            } else if let a = body["input_id"]?.arrayValue {
                var ids: [UInt32] = []
                for d in a {
                    guard let v = d.intValue, v >= 0, v <= Int64(UInt32.max) else { throw .validation("Parameter input_id must be a list of uint.") }
                    ids.append(UInt32(v))
                }
                r.prompt = ids
            } else {
                throw .validation(dialect == .mindie ? "Parameter inputs must be a string." : "Parameter input_id must be a list of uint.")
            }
            r.maxTokens = try positive(params?["max_new_tokens"], "max_new_tokens", default: 20)
            r.details = try boolean(params?["details"], "details")
            r.seed = try seed(params?["seed"])
            r.stream = try boolean(body["stream"], "stream")
        }
        if r.prompt.isEmpty { throw .validation("The input is empty.") }
        try checkRanges(dialect.isOpenAI || dialect == .vllm ? body : (params ?? .obj([:])))
        return r
    }

    /// Sampling parameter ranges (restful_response_status_codes.md; message texts (U)).
    static func checkRanges(_ p: JSON) throws(WireError) {
        func number(_ key: String) throws(WireError) -> Double? {
            guard let j = p[key], !j.isNull else { return nil }
            guard let v = j.doubleValue else { throw .validation("Parameter \(key) must be a number, got \(j.compact).") }
            return v
        }
        if let t = try number("temperature"), !(t >= 0 && t <= 2) {
            throw .validation("Parameter temperature must be in [0, 2], got \(t).")
        }
        if let v = try number("top_p"), !(v > 0 && v <= 1) { throw .validation("Parameter top_p must be in (0, 1], got \(v).") }
        if let v = try number("top_k"), !(v >= 0 && v.rounded() == v && v <= 2_147_483_647) {
            throw .validation("Parameter top_k must be an integer in [0, 2147483647], got \(v).")
        }
        for key in ["repetition_penalty"] {
            if let v = try number(key), !(v > 0 && v <= 2) { throw .validation("Parameter \(key) must be in (0, 2], got \(v).") }
        }
        for key in ["presence_penalty", "frequency_penalty"] {
            if let v = try number(key), !(v >= -2 && v <= 2) { throw .validation("Parameter \(key) must be in [-2, 2], got \(v).") }
        }
        if let n = p["n"], !n.isNull, n.intValue != 1 { throw .validation("Parameter n must be 1, got \(n.compact).") }
    }

    /// Renders chat `messages` through the chat template; `content` may be a string or an array of parts.
    static func chatText(_ messages: JSON) throws(WireError) -> String {
        if let s = messages.stringValue { return s }
        guard let list = messages.arrayValue else { throw .validation("Parameter messages must be an array.") }
        var turns: [(role: String, content: String)] = []
        for m in list {
            guard let role = m["role"]?.stringValue else { throw .validation("Each message must have a role.") }
            var content = ""
            if let c = m["content"] {
                if let s = c.stringValue { content = s } else if let parts = c.arrayValue {
                    for p in parts where p["type"]?.stringValue == "text" { content += p["text"]?.stringValue ?? "" }
                } else if !c.isNull { throw .validation("Message content must be a string or an array.") }
            }
            turns.append((role, content))
        }
        return Tokenizer.chatPrompt(turns)
    }

    /// Parses a recompute token string `"<L>,<p1>,…,<pL>,<g1>,…,<gk>"` into (all ids, k).
    public static func parseTokenString(_ s: String) -> ([UInt32], Int)? {
        let parts = s.split(separator: ",", omittingEmptySubsequences: false)
        guard let first = parts.first, let l = Int(first.trimmingSpaces), l >= 0, parts.count - 1 >= l else { return nil }
        var ids: [UInt32] = []
        ids.reserveCapacity(parts.count - 1)
        for p in parts.dropFirst() {
            guard let v = UInt32(p.trimmingSpaces) else { return nil }
            ids.append(v)
        }
        return (ids, ids.count - l)
    }

    /// Builds a recompute token string.
    public static func tokenString(prompt: [UInt32], generated: [UInt32]) -> String {
        var s = String(prompt.count)
        for t in prompt { s += ","; s += String(t) }
        for t in generated { s += ","; s += String(t) }
        return s
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}
