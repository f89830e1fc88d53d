/// How big a prompt is, in the unit the DIGS demand estimate needs (docs/wire/coordinator.md §5.1).
public enum InputSize: Sendable, Equatable {
    /// Bytes of text (or of the JSON dump for OpenAI); DIGS multiplies by w[1].
    case bytes(Int)
    /// Token ids of a MindIE `input_id` list; DIGS multiplies by w[1] like bytes (reference parity).
    case scaledTokens(Int)
    /// Token ids of a Triton tensor; DIGS uses the count as is.
    case rawTokens(Int)
    /// No prompt (tokenizer).
    case none

    /// DIGS `inputLen = ceil(size·w1)`, raw token counts unscaled.
    public func inputLength(w1: Double) -> Int {
        switch self {
        case .bytes(let n), .scaledTokens(let n): return Int((Double(n) * w1).rounded(.up))
        case .rawTokens(let n): return n
        case .none: return 0
        }
    }
}

/// What the scheduler may know about a prompt.
public struct PromptFeatures: Sendable, Equatable {
    /// The prompt rendered as bytes for prefix hashing: UTF-8 text, or token ids as little-endian
    /// UInt32. Chat messages render as `role\ntext\n` per message (text parts concatenated).
    public var renderedPrompt: [UInt8]
    /// Size for demand estimation.
    public var size: InputSize
    /// OpenAI chat only: the compact JSON dump of each message, in order (cache_affinity input).
    public var messageDumps: [String]?

    public init(renderedPrompt: [UInt8] = [], size: InputSize = .none, messageDumps: [String]? = nil) {
        self.renderedPrompt = renderedPrompt
        self.size = size
        self.messageDumps = messageDumps
    }
}

/// A parsed inference request: everything routing, admission and scheduling need. The body itself
/// is forwarded unchanged by the caller.
public struct InferenceRequest: Sendable, Equatable {
    public var route: Route
    /// The resolved dialect (for `/generate`: TGI or vLLM, from the body).
    public var dialect: Dialect
    /// Whether the client asked for a streamed reply.
    public var stream: Bool
    /// The model named by the path (Triton) or the body's `model` (OpenAI), if any.
    public var model: String?
    /// Requested output tokens, if the body states them.
    public var maxTokens: Int?
    public var prompt: PromptFeatures

    public init(route: Route, dialect: Dialect, stream: Bool, model: String? = nil, maxTokens: Int? = nil,
                prompt: PromptFeatures = PromptFeatures()) {
        self.route = route
        self.dialect = dialect
        self.stream = stream
        self.model = model
        self.maxTokens = maxTokens
        self.prompt = prompt
    }
}
