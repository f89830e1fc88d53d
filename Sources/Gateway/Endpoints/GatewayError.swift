import MSCore

/// A refusal the Coordinator writes itself: an HTTP status plus the reference's message text
/// (without its trailing `\r\n`), rendered per dialect at the edge (DECISIONS 2).
public struct GatewayError: Error, Sendable, Equatable {
    /// HTTP status code.
    public var status: Int
    /// The message, e.g. `Request format is invalid`.
    public var message: String
    /// OpenAI `type` override (else derived from the status).
    public var openAIType: String?
    /// TGI `error_type` override (else derived from the status).
    public var tgiErrorType: String?

    public init(status: Int, message: String, openAIType: String? = nil, tgiErrorType: String? = nil) {
        self.status = status
        self.message = message
        self.openAIType = openAIType
        self.tgiErrorType = tgiErrorType
    }

    // MARK: Refusals of §2 (reference texts)

    /// 400 `Request format is invalid` (docs/wire/coordinator.md §2.1 list).
    public static let formatInvalid = GatewayError(status: 400, message: "Request format is invalid")
    /// 400 for an OpenAI body with neither `prompt` nor `messages`.
    public static let missingPromptOrMessages = GatewayError(
        status: 400, message: "Invalid request format: Missing both 'prompt' or 'messages'")
    /// 400 for JSON nested deeper than the limit (DECISIONS 14; the reference drops it silently).
    public static func tooDeep(limit: Int) -> GatewayError {
        GatewayError(status: 400, message: "Request format is invalid: JSON nested deeper than \(limit) levels")
    }
    /// 404 for a path no route serves (reference: 400 `Invalid request`).
    public static let notFound = GatewayError(status: 404, message: "Invalid request: unknown path")
    /// 405 for a known path with a method other than POST (reference: 400 `Invalid request`).
    public static let methodNotAllowed = GatewayError(status: 405, message: "Invalid request: method not allowed, use POST")
    /// 414 for a target over 4096 bytes (reference: 400 `Invalid request`).
    public static let targetTooLong = GatewayError(status: 414, message: "Invalid request: target longer than 4096 bytes")
    /// 413 for a body over `body_limit` MiB (reference: closes silently).
    public static func bodyTooLarge(limitMiB: Int) -> GatewayError {
        GatewayError(status: 413, message: "Request body larger than \(limitMiB) MiB")
    }
    /// 431 for headers over 8 KiB (reference: closes silently).
    public static let headersTooLarge = GatewayError(status: 431, message: "Request headers larger than 8 KiB")
    /// 503 while the cluster is unavailable.
    public static let notReady = GatewayError(status: 503, message: "MindIE-MS Coordinator is not ready")
    /// 429 when in-flight ≥ `max_requests`.
    public static let tooManyRequests = GatewayError(status: 429, message: "Too many requests")
    /// 429 from the memory guard (the reference's JSON bodies, per dialect).
    public static let memoryLimit = GatewayError(
        status: 429, message: "Memory limit exceeded", openAIType: "server_error", tgiErrorType: "overloaded")
    /// 429 when a keep-alive connection exceeded its request budget.
    public static func connectionRequestLimit(max: Int) -> GatewayError {
        GatewayError(status: 429, message: "Connection request out of limit, max is \(max)")
    }
    /// 400 on a request-id collision.
    public static let duplicateRequestID = GatewayError(status: 400, message: "Duplicate request id")
    /// 500 when the scheduler refuses the request.
    public static let schedulerFailed = GatewayError(status: 500, message: "Scheduler proc req failed")

    // MARK: Failures of §4 and §6

    public static let scheduleTimeout = GatewayError(status: 408, message: "Request schedule timeout")
    public static let tokenizerTimeout = GatewayError(status: 408, message: "Request tokenizer timeout")
    public static let firstTokenTimeout = GatewayError(status: 408, message: "Request first token timeout")
    public static let inferenceTimeout = GatewayError(status: 408, message: "Request inference timeout")
    public static let retryFailed = GatewayError(status: 500, message: "Request retry failed")
    public static let pInstanceError = GatewayError(status: 500, message: "P instance error")
    public static let connectPFailed = GatewayError(status: 500, message: "Connect to p instance failed")
    public static let sendPFailed = GatewayError(status: 500, message: "Send messges to p instance failed")
    public static let receivePFailed = GatewayError(status: 500, message: "Receive messages from p instance failed")
    public static let connectInstanceFailed = GatewayError(status: 500, message: "Connect to MindIE-Server failed")
    public static let sendInstanceFailed = GatewayError(status: 500, message: "Send message to instance failed")
    public static let readInstanceFailed = GatewayError(status: 500, message: "Read messages from instance failed")
    public static let readTokenizerFailed = GatewayError(
        status: 500, message: "Read tokenizer response from mindie-server failed")
    /// 500 for requests whose instance was removed by a refresh (DECISIONS 11).
    public static let instanceRemoved = GatewayError(status: 500, message: "Instance removed from the cluster")

    // MARK: Rendering

    /// The OpenAI `type` this error renders with.
    public var resolvedOpenAIType: String {
        if let openAIType { return openAIType }
        // Client mistakes are invalid_request_error; overload, timeouts and failures are server_error.
        return (400..<500).contains(status) && status != 408 && status != 429 ? "invalid_request_error" : "server_error"
    }

    /// The TGI `error_type` this error renders with.
    public var resolvedTGIErrorType: String {
        if let tgiErrorType { return tgiErrorType }
        switch status {
        case 429, 503: return "overloaded"
        case 408, 500...: return "generation"
        default: return "validation"
        }
    }

    /// The JSON error object in the caller's dialect (DECISIONS 2).
    ///
    /// - OpenAI: `{"error":{"message":M,"type":T,"code":S}}`
    /// - TGI: `{"error":M,"error_type":T}`
    /// - Triton: `{"error":M}`
    /// - MindIE, vLLM, tokenizer and unknown (nil): `{"error":M,"code":S}`
    public func json(dialect: Dialect?) -> String {
        let m = JSON.quoted(message)
        switch dialect {
        case .openAI:
            return "{\"error\":{\"message\":\(m),\"type\":\(JSON.quoted(resolvedOpenAIType)),\"code\":\(status)}}"
        case .tgi:
            return "{\"error\":\(m),\"error_type\":\(JSON.quoted(resolvedTGIErrorType))}"
        case .triton:
            return "{\"error\":\(m)}"
        case .mindIE, .vllm, .tokenizer, nil:
            return "{\"error\":\(m),\"code\":\(status)}"
        }
    }

    /// Body bytes of a reply written before any response head (Content-Type `application/json`).
    public func body(dialect: Dialect?) -> [UInt8] { Array(json(dialect: dialect).utf8) }

    /// Content type of ``body(dialect:)``.
    public static let contentType = "application/json"

    /// The final piece of a stream that broke after its head was sent (DECISIONS 9), as bytes.
    ///
    /// - SSE dialects (OpenAI, TGI, Triton, MindIE streams): `data: <json>\n\n`, where `<json>` is
    ///   ``json(dialect:)``; no `[DONE]` follows, so clients see an error, not a clean end.
    /// - vLLM streams (NUL-separated JSON): `<json>\0`.
    /// - Non-stream replies whose body was already started: `<json>` as-is.
    public func streamErrorEvent(dialect: Dialect?, stream: Bool) -> [UInt8] {
        let j = json(dialect: dialect)
        guard stream else { return Array(j.utf8) }
        switch dialect {
        case .vllm: return Array(j.utf8) + [0]
        default: return Array("data: \(j)\n\n".utf8)
        }
    }
}
