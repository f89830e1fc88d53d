internal import CH2O
import Synchronization

public enum HTTPClientError: Error, Equatable, CustomStringConvertible, Sendable {
    case connect(String)
    case beforeHead(String)
    case timeout
    /// The body ended early: a close before Content-Length or before the terminal chunk.
    case broken(String)
    case protocolError(String)
    case cancelled
    case invalidTarget(String)

    init(result: Int32, message: String) {
        switch Int(result) {
        case Int(CH2O_CALL_ERR_CONNECT): self = .connect(message)
        case Int(CH2O_CALL_ERR_TIMEOUT): self = .timeout
        case Int(CH2O_CALL_ERR_BROKEN): self = .broken(message)
        case Int(CH2O_CALL_ERR_PROTOCOL): self = .protocolError(message)
        case Int(CH2O_CALL_CANCELLED): self = .cancelled
        default: self = .beforeHead(message)
        }
    }

    public var description: String {
        switch self {
        case .connect(let m): "connect failed: \(m)"
        case .beforeHead(let m): "connection failed before the response head: \(m)"
        case .timeout: "timed out"
        case .broken(let m): "response body broken: \(m)"
        case .protocolError(let m): "invalid HTTP from upstream: \(m)"
        case .cancelled: "cancelled"
        case .invalidTarget(let m): "invalid target: \(m)"
        }
    }

    /// Failures where nothing of the response was received (safe to retry elsewhere).
    public var isBeforeResponse: Bool {
        switch self {
        case .connect, .beforeHead, .timeout: true
        default: false
        }
    }
}

/// An upstream host:port with per-loop keep-alive pools. Creating one resolves the host (may block).
public final class Upstream: @unchecked Sendable, Hashable {
    let raw: OpaquePointer
    public let host: String
    public let port: Int

    public init(host: String, port: Int, tls: TLSClient? = nil) throws(HTTPClientError) {
        var err = [CChar](repeating: 0, count: 256)
        guard let raw = ch2o_upstream_create(host, Int32(port), tls?.raw, &err, err.count) else {
            throw .invalidTarget(cError(err))
        }
        self.raw = raw
        self.host = host
        self.port = port
    }

    deinit { ch2o_upstream_release(raw) }

    /// Connections opened so far (a measure of pooling).
    public var connectionsOpened: UInt64 { ch2o_upstream_connects(raw) }

    public static func == (a: Upstream, b: Upstream) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}

/// A TLS client context: verifies servers against a CA, optionally presents a client certificate.
public final class TLSClient: @unchecked Sendable {
    let raw: OpaquePointer

    public init(_ config: TLSConfiguration) throws(HTTPClientError) {
        var err = [CChar](repeating: 0, count: 512)
        let raw = config.withC { ch2o_tls_client_create($0, &err, err.count) }
        guard let raw else { throw .invalidTarget(cError(err)) }
        self.raw = raw
    }

    deinit { ch2o_tls_client_release(raw) }
}

public struct HTTPClientRequest: Sendable {
    public var method: String
    public var host: String
    public var port: Int
    public var path: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Per-read timeout (connect, head, and each gap between body reads).
    public var timeoutMilliseconds: UInt64

    public init(method: String = "GET", host: String, port: Int, path: String, headers: [(String, String)] = [],
                body: [UInt8] = [], timeoutMilliseconds: UInt64 = 30_000) {
        self.method = method
        self.host = host
        self.port = port
        self.path = path
        self.headers = headers
        self.body = body
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

public struct HTTPClientResponse: Sendable {
    public let status: Int
    public let headers: HTTPHeaders
    public let body: [UInt8]

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A call in progress; cancel it on the loop that runs it.
public final class ClientCall {
    fileprivate var raw: OpaquePointer?
    fileprivate let onHead: (Int, HTTPHeaders) -> Void
    fileprivate let onBody: ([UInt8]) -> Void
    fileprivate let onEnd: (HTTPClientError?) -> Void
    fileprivate var done = false
    /// Inside one of this call's callbacks: a cancel then only marks it, and the callback's return value ends it
    /// (freeing the C call under its own feet would be a use-after-free).
    fileprivate var inCallback = false
    private let loop: EventLoop

    fileprivate init(loop: EventLoop, onHead: @escaping (Int, HTTPHeaders) -> Void, onBody: @escaping ([UInt8]) -> Void,
                     onEnd: @escaping (HTTPClientError?) -> Void) {
        self.loop = loop
        self.onHead = onHead
        self.onBody = onBody
        self.onEnd = onEnd
    }

    /// Stops the call and closes its connection; `onEnd` is not called.
    public func cancel() {
        assert(loop.inEventLoop, "ClientCall.cancel called off its loop")
        guard !done, let raw else { return }
        done = true
        if inCallback { return }
        self.raw = nil
        ch2o_call_cancel(raw)
        Unmanaged.passUnretained(self).release()
    }

    /// After a head/body callback: non-zero tells C to end the call (it will not call on_done then).
    fileprivate func afterCallback() -> Int32 {
        inCallback = false
        guard done, raw != nil else { return 0 }
        raw = nil
        Unmanaged.passUnretained(self).release()
        return 1
    }
}

private let callOnHead: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<ch2o_header_t>?, Int) -> Int32 = { ctx, status, h, n in
    let call = Unmanaged<ClientCall>.fromOpaque(ctx!).takeUnretainedValue()
    var headers: [(name: String, value: String)] = []
    headers.reserveCapacity(n)
    for i in 0..<n { headers.append((string(h![i].name, h![i].name_len), string(h![i].value, h![i].value_len))) }
    call.inCallback = true
    call.onHead(Int(status), HTTPHeaders(headers))
    return call.afterCallback()
}

private let callOnBody: @convention(c) (UnsafeMutableRawPointer?, UnsafeRawPointer?, Int) -> Int32 = { ctx, data, len in
    let call = Unmanaged<ClientCall>.fromOpaque(ctx!).takeUnretainedValue()
    call.inCallback = true
    call.onBody(Array(UnsafeRawBufferPointer(start: data, count: len)))
    return call.afterCallback()
}

private let callOnDone: @convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void = { ctx, result, err in
    let call = Unmanaged<ClientCall>.fromOpaque(ctx!).takeRetainedValue()
    call.raw = nil
    guard !call.done else { return }
    call.done = true
    call.onEnd(result == CH2O_CALL_OK ? nil : HTTPClientError(result: result, message: err.map { String(cString: $0) } ?? ""))
}

/// An HTTP/1.1 client (plain or TLS) over CH2O. Connections are pooled per upstream and loop.
public final class HTTPClient: @unchecked Sendable {
    public let loop: EventLoop
    private let ownsLoop: Bool
    private let tls: TLSClient?
    private let upstreams = Mutex<[String: Upstream]>([:])

    /// - Parameters:
    ///   - loop: the loop that runs `execute` calls; nil starts a loop thread owned by this client.
    ///   - tls: when set every request of this client uses TLS with it.
    public init(loop: EventLoop? = nil, tls: TLSClient? = nil) {
        self.ownsLoop = loop == nil
        self.loop = loop ?? EventLoop()
        self.tls = tls
    }

    deinit {
        if ownsLoop { loop.stop() }
    }

    public func upstream(host: String, port: Int) throws(HTTPClientError) -> Upstream {
        let key = "\(host):\(port)"
        if let u = upstreams.withLock({ $0[key] }) { return u }
        let u = try Upstream(host: host, port: port, tls: tls)
        return upstreams.withLock { table in
            if let existing = table[key] { return existing }
            table[key] = u
            return u
        }
    }

    /// Streams a response on `loop` (loop thread only). Exactly one of `onEnd` or `cancel()` ends it.
    @discardableResult
    public func stream(_ request: HTTPClientRequest, on loop: EventLoop, onHead: @escaping (Int, HTTPHeaders) -> Void,
                       onBody: @escaping ([UInt8]) -> Void, onEnd: @escaping (HTTPClientError?) -> Void) -> ClientCall {
        assert(loop.inEventLoop, "HTTPClient.stream called off the loop it runs on")
        let call = ClientCall(loop: loop, onHead: onHead, onBody: onBody, onEnd: onEnd)
        let up: Upstream
        do {
            up = try upstream(host: request.host, port: request.port)
        } catch {
            call.done = true
            loop.schedule(afterMilliseconds: 0) { onEnd(error) }
            return call
        }
        let ctx = Unmanaged.passRetained(call).toOpaque()
        var cbs = ch2o_call_callbacks_t(on_head: callOnHead, on_body: callOnBody, on_done: callOnDone)
        var method = request.method, path = request.path
        call.raw = withCHeaders(request.headers) { h, n in
            method.withUTF8 { m in
                path.withUTF8 { p in
                    request.body.withUnsafeBytes { b in
                        ch2o_call_start(loop.raw, up.raw, UnsafeRawPointer(m.baseAddress!).assumingMemoryBound(to: CChar.self), m.count,
                                        UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: CChar.self), p.count, h, n,
                                        b.baseAddress, b.count, request.timeoutMilliseconds, &cbs, ctx)
                    }
                }
            }
        }
        return call
    }

    /// Whole-body request from async code. Cancelling the task cancels the call (its connection is closed) and
    /// throws `.cancelled`; so does a client whose loop has stopped.
    public func execute(_ request: HTTPClientRequest) async throws(HTTPClientError) -> HTTPClientResponse {
        let loop = self.loop
        // the call and the continuation live on the loop; the cancel handler reaches them by posting there, so
        // the call's end and a cancel are ordered and only the first answers
        let state = LoopBound(ExecuteState(), on: loop)
        let result: Result<HTTPClientResponse, HTTPClientError> = await withTaskCancellationHandler {
            await withCheckedContinuation { cont in
                let posted = state.execute { s in
                    s.continuation = cont
                    if s.cancelled { return s.finish(.failure(.cancelled)) }
                    var status = 0
                    var headers = HTTPHeaders()
                    var body: [UInt8] = []
                    s.call = self.stream(
                        request, on: loop, onHead: { st, h in status = st; headers = h }, onBody: { body.append(contentsOf: $0) },
                        onEnd: { err in
                            s.call = nil
                            s.finish(err.map { .failure($0) } ?? .success(HTTPClientResponse(status: status, headers: headers, body: body)))
                        })
                }
                if !posted { cont.resume(returning: .failure(.cancelled)) }  // the client's loop has stopped
            }
        } onCancel: {
            // a stopped loop has already answered (or will, above): nothing is left to cancel
            state.execute { s in
                s.cancelled = true
                s.call?.cancel()
                s.call = nil
                s.finish(.failure(.cancelled))
            }
        }
        return try result.get()
    }
}

/// One `execute` in flight (its loop only).
private final class ExecuteState {
    var continuation: CheckedContinuation<Result<HTTPClientResponse, HTTPClientError>, Never>?
    var call: ClientCall?
    var cancelled = false

    /// Answers the awaiting task once; later answers (a cancel after the end, or the reverse) are dropped.
    func finish(_ result: Result<HTTPClientResponse, HTTPClientError>) {
        guard let c = continuation else { return }
        continuation = nil
        c.resume(returning: result)
    }
}
