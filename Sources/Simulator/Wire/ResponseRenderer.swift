import MSCore

/// One output token as rendered.
public struct TokenInfo: Sendable, Equatable {
    public var index: Int
    public var id: UInt32
    public var text: String
    public init(index: Int, id: UInt32, text: String) { self.index = index; self.id = id; self.text = text }

    /// Token `index` of the output seeded by `seed`.
    public static func at(_ index: Int, seed: UInt64) -> TokenInfo {
        let g = OutputGenerator(seed: seed)
        return TokenInfo(index: index, id: g.id(at: index), text: g.text(at: index))
    }
}

/// One piece of a stream; `last` marks the frames produced by the final token (they go out as
/// `lastData:` on `/dresult`).
public struct Frame: Sendable, Equatable {
    public var bytes: [UInt8]
    public var last: Bool
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Timing figures some dialects report.
public struct TokenTiming: Sendable, Equatable {
    /// ms from arrival to the first token (MindIE `prefill_time`).
    public var prefillMs: Int?
    /// ms since the previous token (MindIE `decode_time`).
    public var decodeMs: Int?
    public var batchSize: Int
    public var queueWaitMs: Int
    public init(prefillMs: Int? = nil, decodeMs: Int? = nil, batchSize: Int = 1, queueWaitMs: Int = 0) {
        self.prefillMs = prefillMs; self.decodeMs = decodeMs; self.batchSize = batchSize; self.queueWaitMs = queueWaitMs
    }
}

/// Renders the replies of one request in its dialect (docs/wire/simulator.md §2.3). Stream rendering is stateful:
/// feed tokens in order with `frames(for:finish:timing:)`.
public struct ResponseRenderer: Sendable {
    public let request: InferenceRequest
    public let options: WireOptions
    /// Chat / completion id, Triton id.
    public let responseId: String
    public let created: Int64
    public let model: String
    public var promptTokens: Int
    public var cachedTokens: Int
    /// Whether the next chat stream frame must be preceded by the role chunk.
    public var rolePending: Bool
    public private(set) var tokens: [TokenInfo] = []

    public init(
        request: InferenceRequest, options: WireOptions, responseId: String, created: Int64, model: String,
        promptTokens: Int, cachedTokens: Int = 0, roleChunk: Bool = true
    ) {
        self.request = request; self.options = options; self.responseId = responseId; self.created = created
        self.model = model; self.promptTokens = promptTokens; self.cachedTokens = cachedTokens
        self.rolePending = roleChunk && request.dialect == .chat && request.stream
    }

    /// Remembers tokens produced elsewhere (a D knows token 1 from P) without rendering them.
    public mutating func prime(_ earlier: [TokenInfo]) { tokens.append(contentsOf: earlier) }

    var seedJSON: JSON { request.seed.map { .int(Int64(bitPattern: $0)) } ?? .null }
    var generatedText: String { tokens.map(\.text).joined() }

    func finishName(_ f: FinishReason) -> String {
        switch (request.dialect.isOpenAI, f) {
        case (true, .length): return "length"
        case (true, .eos): return "stop"
        case (false, .length): return "length"
        case (false, .eos): return "eos_token"
        }
    }

    var usage: JSON {
        .obj([
            "prompt_tokens": .int(promptTokens),
            "prompt_tokens_details": .obj(["cached_tokens": .int(cachedTokens)]),
            "completion_tokens": .int(tokens.count),
            "total_tokens": .int(promptTokens + tokens.count),
        ])
    }

    func sse(_ j: JSON, last: Bool) -> Frame {
        let prefix = (request.dialect == .tritonText && !options.compat) ? "data:" : "data: "
        return Frame(bytes: Array((prefix + j.compact + "\n\n").utf8), last: last)
    }

    static let done = Array("data: [DONE]\n\n".utf8)

    // MARK: streams

    /// The frames for the next token; `finish` is set on the last token.
    public mutating func frames(for token: TokenInfo, finish: FinishReason?, timing: TokenTiming = TokenTiming()) -> [Frame] {
        tokens.append(token)
        let last = finish != nil
        var out: [Frame] = []
        switch request.dialect {
        case .chat, .completions:
            let isChat = request.dialect == .chat
            let object = isChat ? "chat.completion.chunk" : "text_completion"
            func chunk(_ choice: JSON, usage: JSON?) -> JSON {
                var j = JSON.obj(["id": .string(responseId), "object": .string(object), "created": .int(created), "model": .string(model)])
                j = j.setting("choices", .array([choice]))
                if let usage { j = j.setting("usage", usage) }
                return j
            }
            if rolePending {
                rolePending = false
                let choice = JSON.obj([
                    "index": 0, "delta": .obj(["role": "assistant", "content": ""]), "logprobs": .null, "finish_reason": .null,
                ])
                out.append(sse(chunk(choice, usage: nil), last: false))
            }
            let fin: JSON = finish.map { .string(finishName($0)) } ?? .null
            let choice: JSON = isChat
                ? .obj(["index": 0, "delta": .obj(["role": "assistant", "content": .string(token.text)]), "logprobs": .null, "finish_reason": fin])
                : .obj(["index": 0, "text": .string(token.text), "logprobs": .null, "stop_reason": .null, "finish_reason": fin])
            let u: JSON? = (last && !options.strictUsage) ? .some(usage) : .none
            out.append(sse(chunk(choice, usage: u), last: last))
            if last {
                if options.strictUsage && request.includeUsage {
                    let j = JSON.obj([
                        "id": .string(responseId), "object": .string(object), "created": .int(created), "model": .string(model),
                        "choices": [], "usage": usage,
                    ])
                    out.append(sse(j, last: true))
                }
                out.append(Frame(bytes: ResponseRenderer.done, last: true))
            }
        case .tgiGeneral, .tgiGenerate, .tgiStream:
            var j = JSON.obj(["token": tgiToken(token)])
            if let f = finish {
                j = j.setting("generated_text", .string(generatedText))
                j = j.setting(
                    "details",
                    request.details
                        ? .obj([
                            "prompt_tokens": .int(promptTokens), "finish_reason": .string(finishName(f)),
                            "generated_tokens": .int(tokens.count), "seed": seedJSON,
                        ]) : .null)
            } else {
                j = j.setting("generated_text", .null).setting("details", .null)
            }
            out.append(sse(j, last: last))
        case .mindie, .mindieToken:
            var j = JSON.obj([
                "prefill_time": timing.prefillMs.map { .int($0) } ?? .null,
                "decode_time": timing.decodeMs.map { .int($0) } ?? .null,
            ])
            if let f = finish {
                j = j.setting("token", .obj(["id": [.int(Int64(token.id))], "text": .null]))
                j = j.setting("generated_text", .string(generatedText))
                j = j.setting(
                    "details",
                    request.details
                        ? .obj(["finish_reason": .string(finishName(f)), "generated_tokens": .int(tokens.count), "seed": seedJSON]) : .null)
            } else {
                j = j.setting("token", .obj(["id": [.int(Int64(token.id))], "text": .string(token.text)]))
            }
            out.append(sse(j, last: last))
        case .vllm:
            let j = JSON.obj(["text": [.string(token.text)]])
            out.append(Frame(bytes: j.bytes + [0], last: last))
        case .tritonText:
            var j = tritonHead().setting("text_output", .string(token.text))
            if let f = finish, request.details { j = j.setting("details", tritonDetails(f, timing)) }
            out.append(sse(j, last: last))
        case .tritonToken:
            // never streams; render as one frame of the whole body when finished
            if let f = finish { out.append(Frame(bytes: nonStreamBody(finish: f), last: true)) }
        }
        return out
    }

    func tgiToken(_ t: TokenInfo) -> JSON {
        if options.compat {
            return .obj(["id": .int(Int64(t.id)), "text": .string(t.text), "logprob": .double(0), "special": false])
        }
        return .obj(["id": [.int(Int64(t.id))], "text": .string(t.text), "logprob": .null, "special": .null])
    }

    func tritonHead() -> JSON {
        .obj(["id": .string(request.tritonId ?? responseId), "model_name": .string(model), "model_version": .null])
    }

    func tritonDetails(_ f: FinishReason, _ timing: TokenTiming) -> JSON {
        .obj([
            "finish_reason": .string(finishName(f)), "generated_tokens": .int(tokens.count), "first_token_cost": .null,
            "decode_cost": .null, "batch_size": .int(timing.batchSize), "queue_wait_time": .int(timing.queueWaitMs),
        ])
    }

    // MARK: whole bodies

    /// Adds `all` (every output token, in order) and renders the non-stream body.
    public mutating func nonStream(_ all: [TokenInfo], finish: FinishReason, timing: TokenTiming = TokenTiming()) -> [UInt8] {
        tokens = all
        return nonStreamBody(finish: finish, timing: timing)
    }

    /// The non-stream body for the tokens seen so far.
    public func nonStreamBody(finish f: FinishReason, timing: TokenTiming = TokenTiming()) -> [UInt8] {
        let text = generatedText
        switch request.dialect {
        case .chat:
            return JSON.obj([
                "id": .string(responseId), "object": "chat.completion", "created": .int(created), "model": .string(model),
                "choices": [
                    .obj([
                        "index": 0, "message": .obj(["role": "assistant", "content": .string(text), "tool_calls": []]),
                        "logprobs": .null, "finish_reason": .string(finishName(f)),
                    ])
                ],
                "usage": usage,
            ]).bytes
        case .completions:
            return JSON.obj([
                "id": .string(responseId), "object": "text_completion", "created": .int(created), "model": .string(model),
                "choices": [
                    .obj([
                        "index": 0, "text": .string(text), "logprobs": .null, "stop_reason": .null,
                        "finish_reason": .string(finishName(f)),
                    ])
                ],
                "usage": usage,
            ]).bytes
        case .tgiGeneral, .tgiGenerate, .tgiStream:
            var j = JSON.obj([:])
            if request.details {
                let toks: [JSON] = tokens.map { t in
                    options.compat
                        ? .obj(["id": .int(Int64(t.id)), "logprob": .double(0), "special": false, "text": .string(t.text)])
                        : .obj(["id": .int(Int64(t.id)), "logprob": .null, "special": .null, "text": .null])
                }
                j = j.setting(
                    "details",
                    .obj([
                        "prompt_tokens": .int(promptTokens), "finish_reason": .string(finishName(f)),
                        "generated_tokens": .int(tokens.count), "prefill": [], "seed": seedJSON, "tokens": .array(toks),
                    ]))
            }
            j = j.setting("generated_text", .string(text))
            return request.dialect == .tgiGeneral ? JSON.array([j]).bytes : j.bytes
        case .mindie, .mindieToken:
            var j = JSON.obj(["generated_text": .string(text)])
            if request.details {
                j = j.setting(
                    "details",
                    .obj([
                        "finish_reason": .string(finishName(f)), "generated_tokens": .int(tokens.count),
                        "generated_token_ids": .array(tokens.map { .int(Int64($0.id)) }), "seed": seedJSON,
                    ]))
            }
            return j.bytes
        case .vllm:
            return JSON.obj(["text": [.string(request.promptText + " " + text)]]).bytes
        case .tritonText:
            var j = tritonHead().setting("text_output", .string(text))
            if request.details { j = j.setting("details", tritonDetails(f, timing)) }
            return j.bytes
        case .tritonToken:
            return JSON.obj([
                "id": .string(request.tritonId ?? responseId),
                "outputs": [
                    .obj([
                        "name": "output0", "shape": [1, .int(tokens.count)], "datatype": "UINT32",
                        "data": .array(tokens.map { .int(Int64($0.id)) }),
                    ])
                ],
            ]).bytes
        }
    }
}
