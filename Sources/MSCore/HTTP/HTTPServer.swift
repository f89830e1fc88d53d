internal import CH2O
import Dispatch
public import Logging
#if canImport(Glibc)
import Glibc
#endif

public struct HTTPListener: Sendable {
    public var host: String
    /// 0 picks a free port (see `HTTPServer.boundPorts`).
    public var port: Int
    public var tls: TLSConfiguration?
    /// Handed to the handler as `HTTPRequest.listener`.
    public var tag: Int
    /// Open connections this listener accepts; over it new ones get 503 (plain) or are closed (TLS).
    /// nil: the server's `maxConnections`. Lowered at start to fit the process's file-descriptor limit.
    public var maxConnections: Int?

    public init(host: String, port: Int, tls: TLSConfiguration? = nil, tag: Int = 0, maxConnections: Int? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.tag = tag
        self.maxConnections = maxConnections
    }
}

public struct HTTPServerConfiguration: Sendable {
    /// Event-loop threads; 0 = one per core.
    public var threads: Int
    public var listeners: [HTTPListener]
    public var maxRequestBodyBytes: Int
    public var maxHeaderBytes: Int
    /// Per listener (unless the listener sets its own): over it new connections are refused with 503 (plain) or
    /// closed (TLS); 0 = no limit but the file-descriptor one (see `HTTPServer.listenerConnectionLimits`).
    public var maxConnections: Int
    public var idleTimeoutMilliseconds: UInt64
    /// Default per-read timeout of proxied upstreams.
    public var upstreamIOTimeoutMilliseconds: UInt64
    /// How long `shutdown()` waits for in-flight requests.
    public var gracefulTimeoutMilliseconds: UInt64
    /// The `Server` header of every reply.
    public var serverName: String
    /// Requests one connection may carry; the next gets 429 and the connection closes. 0 = no limit.
    public var maxRequestsPerConnection: Int
    /// HTTP/2 RST_STREAM frames one connection may send in a burst (refilled at a tenth of it per second);
    /// past it the connection gets GOAWAY(ENHANCE_YOUR_CALM) and closes (CVE-2023-44487).
    public var maxStreamResetsPerConnection: Int = 200
    /// Where the loops' rate-limited notices go (accepting paused for lack of file descriptors, a connection closed
    /// for resetting too many streams).
    public var logger: Logger = Logger(label: "mindie-ms.http")

    public init(threads: Int = 0, listeners: [HTTPListener], maxRequestBodyBytes: Int = 16 << 20, maxHeaderBytes: Int = 64 << 10,
                maxConnections: Int = 0, idleTimeoutMilliseconds: UInt64 = 60_000,
                upstreamIOTimeoutMilliseconds: UInt64 = 600_000, gracefulTimeoutMilliseconds: UInt64 = 10_000,
                serverName: String = "mindie-ms", maxRequestsPerConnection: Int = 0) {
        self.serverName = serverName
        self.maxRequestsPerConnection = maxRequestsPerConnection
        self.threads = threads
        self.listeners = listeners
        self.maxRequestBodyBytes = maxRequestBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxConnections = maxConnections
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.upstreamIOTimeoutMilliseconds = upstreamIOTimeoutMilliseconds
        self.gracefulTimeoutMilliseconds = gracefulTimeoutMilliseconds
    }
}

public struct HTTPServerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public typealias HTTPHandler = @Sendable (HTTPRequest, HTTPResponder) -> Void

/// An h2o server: N loop threads, each with its own SO_REUSEPORT listeners. The handler runs synchronously on
/// the loop thread that owns the connection: it must not block.
public final class HTTPServer: @unchecked Sendable {
    private let raw: OpaquePointer
    private let box: Unmanaged<ServerBox>
    public private(set) var boundPorts: [Int] = []
    public private(set) var loops: [EventLoop] = []
    private let stopped = DispatchSemaphore(value: 0)
    private var running = false

    public init(configuration: HTTPServerConfiguration, handler: @escaping HTTPHandler) throws(HTTPServerError) {
        let serverName = strdup(configuration.serverName)
        defer { free(serverName) }
        var cfg = ch2o_server_config_t(
            num_threads: Int32(configuration.threads), max_request_body: configuration.maxRequestBodyBytes,
            max_header_bytes: configuration.maxHeaderBytes, max_connections: Int32(configuration.maxConnections),
            idle_timeout_ms: configuration.idleTimeoutMilliseconds,
            upstream_io_timeout_ms: configuration.upstreamIOTimeoutMilliseconds,
            graceful_timeout_ms: configuration.gracefulTimeoutMilliseconds, server_name: serverName,
            max_requests_per_connection: UInt32(max(0, configuration.maxRequestsPerConnection)),
            max_stream_resets: UInt32(clamping: max(1, configuration.maxStreamResetsPerConnection)))
        let box = Unmanaged.passRetained(ServerBox(handler: handler, logger: configuration.logger))
        var err = [CChar](repeating: 0, count: 512)
        guard let raw = ch2o_server_create(&cfg, serverOnRequest, serverOnEvent, box.toOpaque(), &err, err.count) else {
            box.release()
            throw HTTPServerError(cError(err))
        }
        self.raw = raw
        self.box = box
        ch2o_server_set_notice_cb(raw, serverOnNotice, box.toOpaque())
        for l in configuration.listeners {
            var opts = ch2o_listener_options_t(max_connections: Int32(clamping: max(0, l.maxConnections ?? 0)))
            let port: Int32 = if let tls = l.tls {
                tls.withC { ch2o_server_add_listener_opts(raw, l.host, Int32(l.port), $0, Int32(l.tag), &opts, &err, err.count) }
            } else {
                ch2o_server_add_listener_opts(raw, l.host, Int32(l.port), nil, Int32(l.tag), &opts, &err, err.count)
            }
            if port < 0 { throw HTTPServerError("\(l.host):\(l.port): \(cError(err))") }
            boundPorts.append(Int(port))
        }
    }

    /// Starts the loop threads; requests are served when this returns.
    public func start() throws(HTTPServerError) {
        var err = [CChar](repeating: 0, count: 512)
        guard ch2o_server_prepare(raw, &err, err.count) == 0 else { throw HTTPServerError(cError(err)) }
        loops = (0..<Int(ch2o_server_num_loops(raw))).map { EventLoop(adopting: ch2o_server_loop(raw, Int32($0))) }
        guard ch2o_server_start(raw, &err, err.count) == 0 else { throw HTTPServerError(cError(err)) }
        running = true
    }

    public var openConnections: Int { Int(ch2o_server_connections(raw)) }

    /// The connection cap in force on each listener (in `configuration.listeners` order) once started: the
    /// configured one, lowered to fit the file-descriptor limit; 0 = none.
    public var listenerConnectionLimits: [Int] {
        boundPorts.indices.map { Int(ch2o_server_listener_max_connections(raw, Int32($0))) }
    }

    /// Graceful: stops accepting, waits for in-flight requests (up to the configured time), stops the loops.
    /// Call it from a thread that is not one of this server's loops.
    public func shutdown() {
        guard running else { return }
        running = false
        ch2o_server_shutdown(raw)
        stopped.signal()
    }

    /// Blocks until `shutdown()` finished.
    public func waitUntilStopped() {
        stopped.wait()
        stopped.signal()
    }
}

private final class ServerBox {
    let handler: HTTPHandler
    let logger: Logger
    init(handler: @escaping HTTPHandler, logger: Logger) {
        self.handler = handler
        self.logger = logger
    }
}

private let serverOnNotice: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?) -> Void = { ctx, message in
    let box = Unmanaged<ServerBox>.fromOpaque(ctx!).takeUnretainedValue()
    box.logger.warning("http server", metadata: ["notice": "\(String(cString: message!))"])
}

private let serverOnRequest: @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?) -> Void = { ctx, req in
    let box = Unmanaged<ServerBox>.fromOpaque(ctx!).takeUnretainedValue()
    let req = req!
    let responder = HTTPResponder(raw: req, loop: EventLoop.from(ch2o_req_loop(req)))
    ch2o_req_set_ctx(req, Unmanaged.passRetained(responder).toOpaque())
    box.handler(makeRequest(req), responder)
}

private let serverOnEvent: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { ctx, event in
    let unmanaged = Unmanaged<HTTPResponder>.fromOpaque(ctx!)
    let responder = unmanaged.takeUnretainedValue()
    switch Int(event) {
    case Int(CH2O_EV_CLIENT_GONE):
        responder.clientLeft()
    case Int(CH2O_EV_DISPOSED):
        responder.raw = nil
        unmanaged.release()
    default:
        break
    }
}

private func makeRequest(_ req: OpaquePointer) -> HTTPRequest {
    var len = 0
    let method = string(ch2o_req_method(req, &len), len)
    let fullPath = string(ch2o_req_path(req, &len), len)
    let queryAt = ch2o_req_query_at(req)
    let path: String
    let query: String?
    if queryAt != Int.max, queryAt != -1, let idx = fullPath.utf8.index(fullPath.utf8.startIndex, offsetBy: queryAt, limitedBy: fullPath.utf8.endIndex) {
        path = String(fullPath[..<idx])
        query = String(fullPath[fullPath.index(after: idx)...])
    } else {
        path = fullPath
        query = nil
    }
    let n = ch2o_req_num_headers(req)
    var headers: [(name: String, value: String)] = []
    headers.reserveCapacity(n)
    var h = ch2o_header_t()
    for i in 0..<n {
        ch2o_req_header_at(req, i, &h)
        headers.append((string(h.name, h.name_len), string(h.value, h.value_len)))
    }
    let bodyPtr = ch2o_req_body(req, &len)
    let body: [UInt8] = bodyPtr.map { Array(UnsafeRawBufferPointer(start: $0, count: len)) } ?? []
    return HTTPRequest(method: method, path: path, query: query, headers: HTTPHeaders(headers), body: body,
                       listener: Int(ch2o_req_listener_tag(req)), isTLS: ch2o_req_is_tls(req) != 0,
                       httpVersion: Int(ch2o_req_http_version(req)))
}

/// The answer to one request. Loop-bound: use it only on `loop`'s thread. Calls after the response ended or
/// after the client left are ignored.
public final class HTTPResponder {
    var raw: OpaquePointer?
    public let loop: EventLoop
    public private(set) var isFinished = false
    public private(set) var isStreaming = false
    public private(set) var clientGone = false
    /// The status sent by `respond` or `startStream` (0: none yet; a proxied reply's status is its proxy's to report).
    public private(set) var sentStatus = 0
    /// Body bytes accepted by `respond` and `write` (not those a proxy relays).
    public private(set) var sentBodyBytes: UInt64 = 0
    /// Called once, on the loop, if the client leaves before the response ended.
    public var onClientGone: (() -> Void)?

    init(raw: OpaquePointer, loop: EventLoop) {
        self.raw = raw
        self.loop = loop
    }

    /// Every method of a responder is loop-only (h2o's request is not thread-safe).
    func assertOnLoop(_ function: StaticString = #function) {
        assert(loop.inEventLoop, "HTTPResponder.\(function) called off its event loop")
    }

    /// The proxy owns the response from now on; Swift-side writes become no-ops.
    func markProxied() {
        isFinished = true
    }

    func clientLeft() {
        guard !clientGone else { return }
        clientGone = true
        isFinished = true
        let cb = onClientGone
        onClientGone = nil
        cb?()
    }

    /// A whole response with Content-Length.
    public func respond(status: Int, headers: [(String, String)] = [], body: [UInt8]) {
        assertOnLoop()
        guard let raw, !isFinished, !isStreaming else { return }
        isFinished = true
        onClientGone = nil
        sentStatus = status
        sentBodyBytes += UInt64(body.count)
        withCHeaders(headers) { h, n in
            body.withUnsafeBytes { ch2o_req_respond(raw, Int32(status), h, n, $0.baseAddress, $0.count) }
        }
    }

    public func respond(status: Int, headers: [(String, String)] = [], body: String) {
        respond(status: status, headers: headers, body: Array(body.utf8))
    }

    /// Starts a streamed response (chunked on HTTP/1.1); the head goes out at once.
    public func startStream(status: Int, headers: [(String, String)] = []) {
        assertOnLoop()
        guard let raw, !isFinished, !isStreaming else { return }
        isStreaming = true
        sentStatus = status
        withCHeaders(headers) { h, n in ch2o_req_stream_start(raw, Int32(status), h, n) }
    }

    public func write(_ bytes: [UInt8]) {
        assertOnLoop()
        guard let raw, isStreaming, !isFinished else { return }
        sentBodyBytes += UInt64(bytes.count)
        bytes.withUnsafeBytes { ch2o_req_stream_write(raw, $0.baseAddress, $0.count) }
    }

    public func write(_ text: String) {
        assertOnLoop()
        var text = text
        guard let raw, isStreaming, !isFinished else { return }
        sentBodyBytes += UInt64(text.utf8.count)
        text.withUTF8 { ch2o_req_stream_write(raw, $0.baseAddress, $0.count) }
    }

    /// Bytes accepted by `write` and not yet handed to the socket.
    public var pendingBytes: Int { raw.map { ch2o_req_stream_pending($0) } ?? 0 }

    public func end() {
        assertOnLoop()
        guard let raw, isStreaming, !isFinished else { return }
        isFinished = true
        onClientGone = nil
        ch2o_req_stream_end(raw)
    }

    /// Breaks the stream: the client sees an error (no clean end).
    public func abort() {
        assertOnLoop()
        guard let raw, isStreaming, !isFinished else { return }
        isFinished = true
        onClientGone = nil
        ch2o_req_stream_abort(raw)
    }

    /// JSON convenience.
    public func respondJSON(status: Int, _ json: String, headers: [(String, String)] = []) {
        respond(status: status, headers: [("content-type", "application/json")] + headers, body: Array(json.utf8))
    }
}

