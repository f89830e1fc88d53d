internal import CH2O

public enum ProxyResult: Sendable, Equatable {
    case ok
    /// Failed after the head reached the client (the client saw an error tail or a broken stream).
    case upstreamError
    /// The client left; the upstream exchange was cancelled.
    case cancelled
    /// Every attempt failed before the head; the client got 502.
    case gaveUp
    case timeout

    init(_ raw: Int32) {
        switch Int(raw) {
        case Int(CH2O_PROXY_OK): self = .ok
        case Int(CH2O_PROXY_CANCELLED): self = .cancelled
        case Int(CH2O_PROXY_GAVE_UP): self = .gaveUp
        case Int(CH2O_PROXY_TIMEOUT): self = .timeout
        default: self = .upstreamError
        }
    }
}

/// What the proxy reports, exactly once per proxied request.
public struct ProxyOutcome: Sendable, Equatable {
    public let result: ProxyResult
    /// The last attempt's transport error, nil when it completed.
    public let lastError: HTTPClientError?
    /// The last upstream status (0 when none arrived).
    public let status: Int
    public let bytes: UInt64
    public let attempts: Int
    public let upstream: Upstream
}

/// Why an attempt failed before the response head.
public enum ProxyAttemptFailure: Sendable, Equatable {
    case transport(HTTPClientError)
    case status(Int)
}

public struct ProxyOptions: Sendable {
    public var path: String?
    public var body: [UInt8]?
    public var extraHeaders: [(String, String)]
    public var timeoutMilliseconds: UInt64
    /// Bytes sent, followed by a clean end, when a streamed (chunked) upstream breaks after the head went out.
    public var errorTail: [UInt8]
    /// The most bytes held for the client (0: 1 MiB). A Content-Length reply up to it is held until complete, so a
    /// short one is retried or answered with an error, never relayed as if whole; above it, reading the upstream
    /// pauses while this many bytes are unsent to the client.
    public var clientBufferBytes: Int
    /// The JSON body of the reply the proxy makes when every attempt failed before the head (`status` 502, or 504
    /// after a timeout; `message` says why). nil: a plain `{"error","status"}` body.
    public var errorReply: (@Sendable (_ status: Int, _ message: String) -> [UInt8])?
    /// Per attempt: the upstream connection must be established within this (0: only `timeoutMilliseconds`).
    public var connectTimeoutMilliseconds: UInt64
    /// Per attempt: the upstream's response head must arrive within this (0: none). A missed deadline fails the
    /// attempt as a timeout before the head, so `retry` is asked for another upstream.
    public var headTimeoutMilliseconds: UInt64

    public init(path: String? = nil, body: [UInt8]? = nil, extraHeaders: [(String, String)] = [], timeoutMilliseconds: UInt64 = 0,
                errorTail: [UInt8] = [], clientBufferBytes: Int = 0,
                errorReply: (@Sendable (_ status: Int, _ message: String) -> [UInt8])? = nil,
                connectTimeoutMilliseconds: UInt64 = 0, headTimeoutMilliseconds: UInt64 = 0) {
        self.path = path
        self.body = body
        self.extraHeaders = extraHeaders
        self.timeoutMilliseconds = timeoutMilliseconds
        self.errorTail = errorTail
        self.clientBufferBytes = clientBufferBytes
        self.errorReply = errorReply
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.headTimeoutMilliseconds = headTimeoutMilliseconds
    }
}

private final class ProxyBox {
    var current: Upstream
    let retry: (Int, Upstream, ProxyAttemptFailure) -> Upstream?
    let head: ((Int) -> Void)?
    let firstBody: (() -> Void)?
    let finish: (ProxyOutcome) -> Void
    let errorReply: ((Int, String) -> [UInt8])?

    init(current: Upstream, retry: @escaping (Int, Upstream, ProxyAttemptFailure) -> Upstream?, head: ((Int) -> Void)?,
         firstBody: (() -> Void)?, finish: @escaping (ProxyOutcome) -> Void, errorReply: ((Int, String) -> [UInt8])?) {
        self.current = current
        self.retry = retry
        self.head = head
        self.firstBody = firstBody
        self.finish = finish
        self.errorReply = errorReply
    }
}

private let proxyRetry: @convention(c) (UnsafeMutableRawPointer?, Int32, OpaquePointer?, Int32, Int32) -> OpaquePointer? = { ctx, attempt, _, result, status in
    let box = Unmanaged<ProxyBox>.fromOpaque(ctx!).takeUnretainedValue()
    let failure: ProxyAttemptFailure = status != 0 ? .status(Int(status)) : .transport(HTTPClientError(result: result, message: "attempt \(attempt)"))
    guard let next = box.retry(Int(attempt), box.current, failure) else { return nil }
    box.current = next
    ch2o_upstream_retain(next.raw)
    return next.raw
}

private let proxyFinish: @convention(c) (UnsafeMutableRawPointer?, Int32, Int32, Int32, UInt64, Int32) -> Void = { ctx, result, callResult, status, bytes, attempts in
    let box = Unmanaged<ProxyBox>.fromOpaque(ctx!).takeRetainedValue()
    let err: HTTPClientError? = callResult == CH2O_CALL_OK ? nil : HTTPClientError(result: callResult, message: "")
    box.finish(ProxyOutcome(result: ProxyResult(result), lastError: err, status: Int(status), bytes: bytes,
                            attempts: Int(attempts), upstream: box.current))
}

private let proxyHead: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { ctx, status in
    let box = Unmanaged<ProxyBox>.fromOpaque(ctx!).takeUnretainedValue()
    box.head?(Int(status))
}

private let proxyErrorReply: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, Int32, UnsafePointer<CChar>?) -> Int32 = { ctx, req, status, message in
    let box = Unmanaged<ProxyBox>.fromOpaque(ctx!).takeUnretainedValue()
    guard let render = box.errorReply, let req else { return 0 }
    let body = render(Int(status), message.map { String(cString: $0) } ?? "")
    withCHeaders([("content-type", "application/json")]) { h, n in
        body.withUnsafeBytes { ch2o_req_respond(req, status, h, n, $0.baseAddress, $0.count) }
    }
    return 1
}

private let proxyFirstBody: @convention(c) (UnsafeMutableRawPointer?) -> Void = { ctx in
    Unmanaged<ProxyBox>.fromOpaque(ctx!).takeUnretainedValue().firstBody?()
}

extension HTTPResponder {
    /// Relays this request to `upstream` and its answer back, bytes unchanged. Before the head reached the client
    /// a failed attempt (connect error, reset, timeout, 503) asks `retry` for another upstream (nil gives up:
    /// 502, or the 503 itself). `finish` is called exactly once, on this loop.
    public func proxy(to upstream: Upstream, options: ProxyOptions = ProxyOptions(),
                      retry: @escaping (_ attempt: Int, _ failed: Upstream, _ why: ProxyAttemptFailure) -> Upstream? = { _, _, _ in nil },
                      head: ((Int) -> Void)? = nil,
                      firstBody: (() -> Void)? = nil,
                      finish: @escaping (ProxyOutcome) -> Void) {
        assertOnLoop()
        guard let raw, !isFinished, !isStreaming else { return }
        markProxied()
        let box = ProxyBox(current: upstream, retry: retry, head: head, firstBody: firstBody, finish: finish,
                           errorReply: options.errorReply)
        let ctx = Unmanaged.passRetained(box).toOpaque()
        var hooks = ch2o_proxy_hooks_t(retry: proxyRetry, finish: proxyFinish, head: head == nil ? nil : proxyHead,
                                       first_body: firstBody == nil ? nil : proxyFirstBody,
                                       error_reply: options.errorReply == nil ? nil : proxyErrorReply)
        ch2o_upstream_retain(upstream.raw)
        var path = options.path ?? ""
        withCHeaders(options.extraHeaders) { h, n in
            path.withUTF8 { p in
                func start(_ body: UnsafeRawBufferPointer?) {
                    options.errorTail.withUnsafeBytes { tail in
                        var opts = ch2o_proxy_options_t(
                            path: options.path == nil ? nil : UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self),
                            path_len: p.count, body: body?.baseAddress ?? (body != nil ? UnsafeRawPointer(bitPattern: 1) : nil),
                            body_len: body?.count ?? 0, extra_headers: h, num_extra_headers: n,
                            timeout_ms: options.timeoutMilliseconds, error_tail: tail.baseAddress, error_tail_len: tail.count,
                            client_buffer_bytes: max(0, options.clientBufferBytes),
                            connect_timeout_ms: options.connectTimeoutMilliseconds, head_timeout_ms: options.headTimeoutMilliseconds)
                        ch2o_proxy_start(raw, upstream.raw, &opts, &hooks, ctx)
                    }
                }
                if let body = options.body { body.withUnsafeBytes { start($0) } } else { start(nil) }
            }
        }
    }
}

extension HTTPResponder {
    /// Ends a proxied request from our side (timeout, removed instance): the upstream exchange is cancelled; before
    /// the head the client gets `status` + `body`, after it `body` ends the stream. `finish` reports `result`.
    public func abortProxy(status: Int, headers: [(String, String)] = [], body: [UInt8], result: ProxyResult) {
        assertOnLoop()
        guard let raw else { return }
        let r: Int32 = switch result {
        case .ok: Int32(CH2O_PROXY_OK)
        case .upstreamError: Int32(CH2O_PROXY_UPSTREAM_ERROR)
        case .cancelled: Int32(CH2O_PROXY_CANCELLED)
        case .gaveUp: Int32(CH2O_PROXY_GAVE_UP)
        case .timeout: Int32(CH2O_PROXY_TIMEOUT)
        }
        withCHeaders(headers) { h, n in
            body.withUnsafeBytes { ch2o_proxy_abort(raw, Int32(status), h, n, $0.baseAddress, $0.count, r) }
        }
    }
}
