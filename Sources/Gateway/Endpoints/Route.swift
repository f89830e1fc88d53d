/// The API family a request speaks; decides parsing and how errors are rendered.
public enum Dialect: String, Sendable, Equatable, CaseIterable {
    case openAI = "openai"
    case tgi
    case vllm
    case triton
    case mindIE = "mindie"
    /// `/v1/tokenizer` (errors use the generic `{"error","code"}` shape).
    case tokenizer

    /// Best guess for a path that matched no route, so 404/405 bodies still speak a likely dialect:
    /// `/v1/…` → OpenAI, `/v2/…` → Triton, anything else → nil (generic shape).
    public static func guess(path: some StringProtocol) -> Dialect? {
        if path.hasPrefix("/v1/") { return .openAI }
        if path.hasPrefix("/v2/") { return .triton }
        return nil
    }
    /// A small index for tables kept per dialect: 0 for no dialect, then 1... in declaration order (no array is
    /// built per lookup, as `allCases.firstIndex` would).
    static func slot(_ d: Dialect?) -> Int {
        switch d {
        case nil: 0
        case .openAI?: 1
        case .tgi?: 2
        case .vllm?: 3
        case .triton?: 4
        case .mindIE?: 5
        case .tokenizer?: 6
        }
    }
}

/// An inference route of the data port (docs/wire/coordinator.md §2.1). All are POST.
public enum Route: Sendable, Equatable, Hashable {
    /// `/v2/models/{m}[/versions/{v}]/generate` (stream false) or `…/generate_stream` (stream true).
    case tritonGenerate(model: String, version: String?, stream: Bool)
    /// `/v2/models/{m}[/versions/{v}]/infer` — token tensors (UINT32).
    case tritonInfer(model: String, version: String?)
    /// `/generate_stream` — TGI, always streaming.
    case tgiGenerateStream
    /// `/` — TGI, `stream` from the body.
    case tgiRoot
    /// `/generate` — TGI if the body has `inputs`, else vLLM if it has `prompt`.
    case generate
    /// `/v1/completions`.
    case openAICompletions
    /// `/v1/chat/completions`.
    case openAIChat
    /// `/infer`.
    case mindIEInfer
    /// `/infer_token`.
    case mindIEInferToken
    /// `/v1/tokenizer` — bypasses the scheduler (§5.4).
    case tokenizer
    /// A configured pass-through path (`api_config.passthrough_routes`, e.g. `/v1/embeddings`): scheduled like the
    /// OpenAI routes and relayed unchanged; the backend validates the payload.
    case passthrough(path: String)

    /// The dialect, where the path alone decides it (`/generate` depends on the body: nil).
    public var dialect: Dialect? {
        switch self {
        case .tritonGenerate, .tritonInfer: return .triton
        case .tgiGenerateStream, .tgiRoot: return .tgi
        case .generate: return nil
        case .openAICompletions, .openAIChat: return .openAI
        case .mindIEInfer, .mindIEInferToken: return .mindIE
        case .tokenizer: return .tokenizer
        // the engines that serve these routes (vLLM, SGLang) speak OpenAI's error shape
        case .passthrough: return .openAI
        }
    }
}

/// The outcome of matching a request line against the route table.
public enum RouteMatch: Sendable, Equatable {
    case route(Route)
    /// No route has this path → 404.
    case notFound
    /// The path exists but only for POST → 405 with `Allow: POST`.
    case methodNotAllowed
    /// The target exceeds ``RouteTable/maxTargetLength`` bytes → 414.
    case targetTooLong
}

/// The data port's route table (docs/wire/coordinator.md §2.1), pure.
///
/// Differences from the reference (DECISIONS 1): an unknown path is 404, a wrong method 405, an
/// over-long target 414 (the reference answers 400 `Invalid request` to all three and closes).
/// The query string is ignored for matching (the reference's glob would refuse `?x=1`).
public enum RouteTable {
    /// Longest request target accepted, in bytes.
    public static let maxTargetLength = 4096

    /// Matches a method and request target (path plus optional query).
    /// - Parameters:
    ///   - method: the HTTP method, case-sensitive (`POST`).
    ///   - target: the request target as received, e.g. `/v1/chat/completions?x=1`.
    ///   - passthrough: extra POST paths relayed unchanged (``Route/passthrough(path:)``); the built-in routes win.
    public static func match(method: some StringProtocol, target: some StringProtocol,
                             passthrough: Set<String> = []) -> RouteMatch {
        if target.utf8.count > maxTargetLength { return .targetTooLong }
        // on the UTF-8 view: walking Characters runs grapheme breaking over every byte of the target
        let path: Substring
        if let q = target.utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            path = Substring(target[..<q])
        } else {
            path = Substring(target)
        }
        guard let route = route(forPath: path) ?? (passthrough.contains(String(path)) ? .passthrough(path: String(path)) : nil) else {
            return .notFound
        }
        return method == "POST" ? .route(route) : .methodNotAllowed
    }

    /// The route for a path (no query), ignoring the method; nil if none.
    public static func route(forPath path: Substring) -> Route? {
        switch path {
        case "/": return .tgiRoot
        case "/generate": return .generate
        case "/generate_stream": return .tgiGenerateStream
        case "/v1/completions": return .openAICompletions
        case "/v1/chat/completions": return .openAIChat
        case "/infer": return .mindIEInfer
        case "/infer_token": return .mindIEInferToken
        case "/v1/tokenizer": return .tokenizer
        default: break
        }
        guard path.hasPrefix("/v2/models/") else { return nil }
        // /v2/models/{m}/{action} or /v2/models/{m}/versions/{v}/{action}; segments may be empty
        // (an empty model is a 400 at parse time, not a 404).
        let parts = path.dropFirst("/v2/models/".count).split(separator: "/", omittingEmptySubsequences: false)
        let model: Substring
        let version: Substring?
        let action: Substring
        switch parts.count {
        case 2: (model, version, action) = (parts[0], nil, parts[1])
        case 4 where parts[1] == "versions": (model, version, action) = (parts[0], parts[2], parts[3])
        default: return nil
        }
        let m = String(model)
        let v = version.map(String.init)
        switch action {
        case "generate": return .tritonGenerate(model: m, version: v, stream: false)
        case "generate_stream": return .tritonGenerate(model: m, version: v, stream: true)
        case "infer": return .tritonInfer(model: m, version: v)
        default: return nil
        }
    }
}
