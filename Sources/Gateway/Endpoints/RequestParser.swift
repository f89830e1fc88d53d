import MSCore

/// Parses an inference body per route (docs/wire/coordinator.md §2.1): stream flag, prompt, max tokens, and every 400.
///
/// Pure; never rewrites the body. Usage: `RouteTable.match` → `RequestParser().parse(route:body:)`.
public struct RequestParser: Sendable {
    /// Deepest JSON container nesting accepted (DECISIONS 14); the body's top-level object is level 1.
    public var maxDepth: Int
    /// Whether chat requests get their message dumps and rendered prompt (cache_affinity, prefix_affinity and
    /// DIGS use them); policies that do not skip that string work on the hot path. Validation is the same.
    public var detailedChatFeatures: Bool
    /// POST paths relayed unchanged besides the built-in routes (``Route/passthrough(path:)``).
    public var passthroughRoutes: Set<String>

    /// - Parameters:
    ///   - maxDepth: nesting limit; the reference's is 10.
    ///   - passthroughRoutes: `api_config.passthrough_routes`.
    public init(maxDepth: Int = 10, detailedChatFeatures: Bool = true, passthroughRoutes: Set<String> = []) {
        self.maxDepth = maxDepth
        self.detailedChatFeatures = detailedChatFeatures
        self.passthroughRoutes = passthroughRoutes
    }

    /// Parses `body` for `route`.
    /// - Throws: a 400 `GatewayError` with the reference's text for every refusal of §2.1.
    public func parse(route: Route, body: some Collection<UInt8>) throws(GatewayError) -> InferenceRequest {
        if case .tritonGenerate(let m, let v, _) = route, m.isEmpty || v?.isEmpty == true { throw .formatInvalid }
        if case .tritonInfer(let m, let v) = route, m.isEmpty || v?.isEmpty == true { throw .formatInvalid }
        if case .passthrough = route { return Self.passthrough(route: route, body: body, maxDepth: maxDepth) }

        let json: JSON
        do {
            json = try JSON.parse(body, maxDepth: maxDepth)
        } catch {
            switch error {
            case .syntax: throw .formatInvalid
            case .tooDeep(let limit): throw .tooDeep(limit: limit)
            }
        }
        guard case .object = json else { throw .formatInvalid }

        switch route {
        case .tritonGenerate(let model, _, let stream):
            let prompt: PromptFeatures
            if let text = json["text_input"]?.stringValue {
                prompt = Self.textPrompt(text)
            } else if let tokens = try Self.tritonTokens(json) {
                prompt = Self.tokenPrompt(tokens, size: .rawTokens(tokens.count))
            } else {
                throw .formatInvalid
            }
            let maxTokens = Self.int(json["max_tokens"]) ?? Self.int(json["parameters"]?["max_new_tokens"])
                ?? Self.int(json["parameters"]?["max_tokens"])
            return InferenceRequest(route: route, dialect: .triton, stream: stream, model: model,
                                    maxTokens: maxTokens, prompt: prompt)

        case .tritonInfer(let model, _):
            guard let tokens = try Self.tritonTokens(json) else { throw .formatInvalid }
            return InferenceRequest(route: route, dialect: .triton, stream: false, model: model,
                                    maxTokens: Self.int(json["parameters"]?["max_new_tokens"]),
                                    prompt: Self.tokenPrompt(tokens, size: .rawTokens(tokens.count)))

        case .tgiGenerateStream, .tgiRoot:
            guard let inputs = json["inputs"]?.stringValue else { throw .formatInvalid }
            let stream = route == .tgiGenerateStream ? true : try Self.streamFlag(json)
            return InferenceRequest(route: route, dialect: .tgi, stream: stream,
                                    maxTokens: Self.int(json["parameters"]?["max_new_tokens"]),
                                    prompt: Self.textPrompt(inputs))

        case .generate:
            if let inputs = json["inputs"] {
                guard let text = inputs.stringValue else { throw .formatInvalid }
                return InferenceRequest(route: route, dialect: .tgi, stream: false,
                                        maxTokens: Self.int(json["parameters"]?["max_new_tokens"]),
                                        prompt: Self.textPrompt(text))
            }
            if let prompt = json["prompt"] {
                guard let text = prompt.stringValue else { throw .formatInvalid }
                return InferenceRequest(route: route, dialect: .vllm, stream: try Self.streamFlag(json),
                                        maxTokens: Self.int(json["max_tokens"]), prompt: Self.textPrompt(text))
            }
            throw .formatInvalid

        case .openAICompletions, .openAIChat:
            let stream = try Self.streamFlag(json)
            let prompt: PromptFeatures
            if let p = json["prompt"] {
                prompt = try Self.openAIPrompt(p)
            } else if let msgs = json["messages"] {
                prompt = try Self.chatPrompt(msgs, detailed: detailedChatFeatures)
            } else {
                throw .missingPromptOrMessages
            }
            let model = json["model"]?.stringValue
            let maxTokens = Self.int(json["max_completion_tokens"]) ?? Self.int(json["max_tokens"])
            return InferenceRequest(route: route, dialect: .openAI, stream: stream, model: model,
                                    maxTokens: maxTokens, prompt: prompt)

        case .mindIEInfer, .mindIEInferToken:
            let inputs = json["inputs"], ids = json["input_id"]
            let prompt: PromptFeatures
            switch (inputs, ids) {
            case (let i?, nil):
                guard let text = i.stringValue else { throw .formatInvalid }
                prompt = Self.textPrompt(text)
            case (nil, let t?):
                guard let tokens = Self.uint32List(t, flatten: false) else { throw .formatInvalid }
                prompt = Self.tokenPrompt(tokens, size: .scaledTokens(tokens.count))
            default:
                throw .formatInvalid
            }
            let maxTokens = Self.int(json["parameters"]?["max_new_tokens"]) ?? Self.int(json["max_new_tokens"])
            return InferenceRequest(route: route, dialect: .mindIE, stream: try Self.streamFlag(json),
                                    maxTokens: maxTokens, prompt: prompt)

        case .tokenizer:
            return InferenceRequest(route: route, dialect: .tokenizer, stream: false)

        case .passthrough:
            return Self.passthrough(route: route, body: body, maxDepth: maxDepth)
        }
    }

    /// A pass-through body is the backend's to validate (multipart uploads, new fields): never refused here. A JSON
    /// object's `stream` (so a broken stream ends with an SSE error event), `model` and `max_tokens` are read when
    /// present.
    static func passthrough(route: Route, body: some Collection<UInt8>, maxDepth: Int) -> InferenceRequest {
        guard let json = try? JSON.parse(body, maxDepth: maxDepth), case .object = json else {
            return InferenceRequest(route: route, dialect: .openAI, stream: false)
        }
        return InferenceRequest(route: route, dialect: .openAI, stream: json["stream"]?.boolValue ?? false,
                                model: json["model"]?.stringValue,
                                maxTokens: int(json["max_output_tokens"]) ?? int(json["max_tokens"]))
    }

    // MARK: Helpers

    /// `stream`: absent or null → false; a bool → it; anything else → 400.
    static func streamFlag(_ json: JSON) throws(GatewayError) -> Bool {
        switch json["stream"] {
        case nil, .null?: return false
        case .bool(let b)?: return b
        default: throw .formatInvalid
        }
    }

    /// A non-negative integer field, else nil (the backend validates such fields).
    static func int(_ v: JSON?) -> Int? {
        guard let i = v?.intValue, i >= 0, i <= Int64(Int32.max) else { return nil }
        return Int(i)
    }

    static func textPrompt(_ text: String) -> PromptFeatures {
        let bytes = Array(text.utf8)
        return PromptFeatures(renderedPrompt: bytes, size: .bytes(bytes.count))
    }

    static func tokenPrompt(_ tokens: [UInt32], size: InputSize) -> PromptFeatures {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tokens.count * 4)
        for t in tokens {
            bytes.append(UInt8(truncatingIfNeeded: t))
            bytes.append(UInt8(truncatingIfNeeded: t >> 8))
            bytes.append(UInt8(truncatingIfNeeded: t >> 16))
            bytes.append(UInt8(truncatingIfNeeded: t >> 24))
        }
        return PromptFeatures(renderedPrompt: bytes, size: size)
    }

    /// A list of integers 0…UInt32.max; nested lists are flattened when `flatten` (tensor data).
    static func uint32List(_ v: JSON, flatten: Bool) -> [UInt32]? {
        guard case .array(let items) = v else { return nil }
        var out: [UInt32] = []
        out.reserveCapacity(items.count)
        for item in items {
            if flatten, case .array = item {
                guard let inner = uint32List(item, flatten: true) else { return nil }
                out += inner
                continue
            }
            guard let i = item.intValue, i >= 0, i <= Int64(UInt32.max) else { return nil }
            out.append(UInt32(i))
        }
        return out
    }

    /// Triton token input: `inputs[0]` with `datatype` "UINT32" and integer `data`.
    /// - Returns: nil if there is no `inputs` member at all.
    /// - Throws: 400 if `inputs` is present but not a UINT32 tensor with data.
    static func tritonTokens(_ json: JSON) throws(GatewayError) -> [UInt32]? {
        guard let inputs = json["inputs"] else { return nil }
        guard let first = inputs.arrayValue?.first, first["datatype"]?.stringValue == "UINT32",
              let data = first["data"], let tokens = uint32List(data, flatten: true) else {
            throw .formatInvalid
        }
        return tokens
    }

    /// OpenAI `prompt`: a string, a list of strings, a token list, or a list of token lists.
    static func openAIPrompt(_ p: JSON) throws(GatewayError) -> PromptFeatures {
        let dumpLength = p.compact.utf8.count
        switch p {
        case .string(let s):
            return PromptFeatures(renderedPrompt: Array(s.utf8), size: .bytes(dumpLength))
        case .array(let items):
            if items.allSatisfy({ $0.stringValue != nil }) {
                let text = items.compactMap(\.stringValue).joined(separator: "\n")
                return PromptFeatures(renderedPrompt: Array(text.utf8), size: .bytes(dumpLength))
            }
            if let tokens = uint32List(p, flatten: true) {
                return PromptFeatures(renderedPrompt: tokenPrompt(tokens, size: .none).renderedPrompt,
                                      size: .bytes(dumpLength))
            }
            throw .formatInvalid
        default:
            throw .formatInvalid
        }
    }

    /// OpenAI chat `messages`: an array of objects whose `content` is a string, null, or an array of
    /// content parts (objects; a `text` part's `text` must be a string).
    static func chatPrompt(_ msgs: JSON, detailed: Bool = true) throws(GatewayError) -> PromptFeatures {
        guard case .array(let items) = msgs else { throw .formatInvalid }
        if !detailed {
            for m in items {
                guard case .object = m else { throw .formatInvalid }
                switch m["content"] {
                case nil, .null?, .string?: break
                case .array(let parts)?:
                    for part in parts {
                        guard case .object = part else { throw .formatInvalid }
                        if part["type"]?.stringValue == "text" || part["text"] != nil, part["text"]?.stringValue == nil {
                            throw .formatInvalid
                        }
                    }
                default: throw .formatInvalid
                }
            }
            return PromptFeatures()
        }
        var rendered = ""
        var dumps: [String] = []
        dumps.reserveCapacity(items.count)
        var total = 2  // the surrounding [ ]
        for (n, m) in items.enumerated() {
            guard case .object = m else { throw .formatInvalid }
            let dump = m.compact
            total += dump.utf8.count + (n > 0 ? 1 : 0)
            dumps.append(dump)
            rendered += m["role"]?.stringValue ?? ""
            rendered += "\n"
            switch m["content"] {
            case nil, .null?: break
            case .string(let s)?: rendered += s
            case .array(let parts)?:
                for part in parts {
                    guard case .object = part else { throw .formatInvalid }
                    if part["type"]?.stringValue == "text" || part["text"] != nil {
                        guard let t = part["text"]?.stringValue else { throw .formatInvalid }
                        rendered += t
                    } else {
                        rendered += part.compact
                    }
                }
            default:
                throw .formatInvalid
            }
            rendered += "\n"
        }
        return PromptFeatures(renderedPrompt: Array(rendered.utf8), size: .bytes(total), messageDumps: dumps)
    }
}
