import Foundation
import Logging
import MSCore
import Synchronization

/// Listener tags of the Coordinator's ports (docs/wire/coordinator.md §1).
enum Port: Int {
    case data = 0
    case management = 1
    case status = 2
    case external = 3
}

/// The Coordinator: the data path on h2o loop threads (parse → admit → schedule → relay), the management API
/// the Controller drives, probes and metrics.
public final class Coordinator: @unchecked Sendable {
    public let config: CoordinatorConfig
    let logger: Logger
    let cluster: Cluster
    let scheduler: SharedScheduler
    let registry = RequestRegistry()
    let parser: RequestParser
    let metrics: CoordinatorMetrics
    let aggregator: MetricsAggregator
    /// What the status page shows (`GET /v1/cluster`).
    let live = LiveStats()
    let instanceTLS: TLSClient?
    let sideClient: HTTPClient
    private var server: HTTPServer?
    /// The first loop of the server (set at start): it owns the links.
    private var serverLoop: EventLoop?
    private let arrivals = Atomic<Int>(0)
    private let arrivalsSinceRecvsInfo = Atomic<Int>(0)
    private let inFlightTotal = Atomic<Int>(0)
    private let idCounter = Atomic<UInt64>(0)
    private let idSeed = UInt64.random(in: 1...UInt64.max)
    private let backupAbnormal = Atomic<Bool>(false)
    /// Master/standby through etcd (`backup_config`, PD modes); nil = always master.
    private(set) var backupMode: BackupMode?
    /// Refuses instance-changing calls from a deposed Controller (older `x-ms-term`).
    let controllerTerm = TermFence()
    private let lengthStats = Mutex<LengthStats>(LengthStats())
    let effectiveScheduleTimeout: Int

    // PD (issue 5)
    /// The loop that owns every `/dresult` link and applies refreshes, one at a time.
    var linkLoop: EventLoop { serverLoop ?? sideClient.loop }
    /// `/dresult` links by D id (link loop only).
    nonisolated(unsafe) var links: [InstanceID: DResultLink] = [:]
    /// D's whose link is down (kept out of scheduling until it is back).
    let unlinked = Mutex<Set<InstanceID>>([])
    /// Instances kept out after a link could not be restored, until the uptime in ns (link loop only).
    nonisolated(unsafe) var faultyIDs: [InstanceID: UInt64] = [:]
    nonisolated(unsafe) var faultyVirtualIDs: [UInt64: UInt64] = [:]
    nonisolated(unsafe) var refreshQueue: [(RefreshPlan, LoopBound<HTTPResponder>)] = []
    nonisolated(unsafe) var refreshing = false
    /// DIGS `load_balance` (created by the first refresh with instances: it needs the block size).
    let digs = Mutex<DIGSScheduler?>(nil)
    let isShutDown = Atomic<Bool>(false)
    /// How long a relinked `/dresult` may take to show its head (D holds it until its first message; it sends a
    /// heartbeat after 5 s idle).
    var linkHeadTimeoutMilliseconds: UInt64 = 6000
    /// Unsent bytes a PD stream may hold for its client before it counts as slow: `http_config.relay_buffer_bytes`,
    /// the single-node relay's bound too.
    var clientBufferBytes = 1 << 20
    /// How long a PD stream may stay over ``clientBufferBytes`` before it is failed; past 4× the bound it is failed
    /// at once, so what one slow client costs stays bounded whatever D's rate.
    var slowClientTimeoutMilliseconds: UInt64 = 5000
    /// stopInfer calls made: (request id, instance, HTTP status or 0) — for tests and logs.
    let stopInferLog = Mutex<[(String, InstanceID, Int)]>([])
    /// `log_info.access_log` (opened by `start`, closed by `shutdown`; nil when off).
    private(set) var accessLog: AccessLog?

    public struct Overrides: Sendable {
        public var predictIP: String?
        public var manageIP: String?
        public init(predictIP: String? = nil, manageIP: String? = nil) {
            self.predictIP = predictIP
            self.manageIP = manageIP
        }
    }
    private let overrides: Overrides

    let metricsSink: MetricsSink

    public init(config: CoordinatorConfig, overrides: Overrides = Overrides(), logger: Logger,
                metrics metricsSink: MetricsSink = .process) throws(CoordinatorStartError) {
        self.metricsSink = metricsSink
        self.config = config
        self.overrides = overrides
        self.logger = logger
        self.cluster = Cluster(deployPD: config.scheduler.deployMode.isPD)
        self.scheduler = SharedScheduler(Scheduler(config: config.scheduler))
        self.metrics = CoordinatorMetrics(policy: config.scheduler.algorithm.rawValue, factory: metricsSink.factory)
        let needsPrompt = config.scheduler.algorithm != .roundRobin && config.scheduler.algorithm != .leastLoad
        self.parser = RequestParser(maxDepth: 10, detailedChatFeatures: needsPrompt,
                                    passthroughRoutes: Set(config.api.passthroughRoutes))
        self.aggregator = MetricsAggregator(reuseSeconds: config.prometheusReuseTime)
        self.effectiveScheduleTimeout = config.exceptions.effectiveScheduleTimeout
        self.clientBufferBytes = config.http.relayBufferBytes
        if let t = config.tls["mindie_client"], t.enabled {
            do {
                instanceTLS = try TLSClient(try t.items.configuration(environment: ProcessInfo.processInfo.environment))
            } catch {
                throw CoordinatorStartError("mindie_client TLS: \(error)")
            }
        } else {
            instanceTLS = nil
        }
        sideClient = HTTPClient(tls: instanceTLS)
    }

    // MARK: - lifecycle

    /// Binds every listener (data last, as the reference) and starts the loop threads.
    public func start(threads: Int = 0) throws(CoordinatorStartError) {
        let h = config.http
        let predictIP = overrides.predictIP ?? h.predictIP
        let manageIP = overrides.manageIP ?? h.manageIP
        for ip in [predictIP, manageIP] where (ip == "0.0.0.0" || ip == "::") && !h.allowAllZeroIPListening {
            throw CoordinatorStartError("listening on \(ip) needs http_config.allow_all_zero_ip_listening = true")
        }
        func tls(_ prefix: String) throws(CoordinatorStartError) -> TLSConfiguration? {
            guard let t = config.tls[prefix], t.enabled else { return nil }
            do { return try t.items.configuration(environment: ProcessInfo.processInfo.environment) } catch {
                throw CoordinatorStartError("\(prefix) TLS: \(error)")
            }
        }
        // each listener has its own cap, so a flood on the data port leaves descriptors for probes and the Controller
        let caps = h.maxConnections
        let listeners = [
            HTTPListener(host: manageIP, port: h.managePort, tls: try tls("controller_server"), tag: Port.management.rawValue,
                         maxConnections: caps["management"] ?? 256),
            HTTPListener(host: manageIP, port: h.statusPort, tls: try tls("status"), tag: Port.status.rawValue,
                         maxConnections: caps["status"] ?? 256),
            HTTPListener(host: manageIP, port: h.externalPort, tls: try tls("external"), tag: Port.external.rawValue,
                         maxConnections: caps["external"] ?? 256),
            HTTPListener(host: predictIP, port: h.predictPort, tls: try tls("request_server"), tag: Port.data.rawValue,
                         maxConnections: caps["data"] ?? config.requestLimit.maxRequests + 64),
        ]
        let cfg = HTTPServerConfiguration(
            threads: threads > 0 ? threads : min(h.serverThreadNum, ProcessInfo.processInfo.activeProcessorCount),
            // h2o's own (plain-text) 413 only beyond twice the limit; up to there the data path answers in the
            // caller's dialect (DECISIONS 2)
            listeners: listeners, maxRequestBodyBytes: 2 * config.requestLimit.bodyLimitBytes + (1 << 20), maxHeaderBytes: 8192,
            maxConnections: config.requestLimit.maxRequests + 64,
            idleTimeoutMilliseconds: h.keepAliveSeconds > 0 ? UInt64(h.keepAliveSeconds) * 1000 : 24 * 3600 * 1000,
            upstreamIOTimeoutMilliseconds: UInt64(max(h.httpTimeoutSeconds, config.exceptions.inferTimeout, 1)) * 1000,
            serverName: h.serverName, maxRequestsPerConnection: config.requestLimit.maxRequests)
        backupMode = try Self.makeBackupMode(config: config, manageEndpoint: "\(manageIP):\(h.managePort)", logger: logger)
        let al = config.log.accessLog
        if al.enable, accessLog == nil {
            accessLog = try AccessLog(path: al.path, capacity: al.queueSize, dropped: metrics.accessLogDropped)
        }
        do {
            let server = try HTTPServer(configuration: cfg) { [unowned self] req, res in self.handle(req, res) }
            try server.start()
            self.server = server
            self.serverLoop = server.loops.first
        } catch {
            throw CoordinatorStartError("\(error)")
        }
        if config.scheduler.deployMode.isPD && usesDIGS { startDIGSTicker() }
        backupMode?.start(self)
        logger.info("listening", metadata: [
            "data": "\(predictIP):\(boundPort(.data))", "management": "\(manageIP):\(boundPort(.management))",
            "status": "\(manageIP):\(boundPort(.status))", "external": "\(manageIP):\(boundPort(.external))",
            "deploy_mode": "\(config.scheduler.deployMode.rawValue)", "algorithm": "\(config.scheduler.algorithm.rawValue)",
        ])
    }

    func boundPort(_ p: Port) -> Int {
        guard let server else { return 0 }
        let order: [Port] = [.management, .status, .external, .data]
        return server.boundPorts[order.firstIndex(of: p)!]
    }

    public var dataPort: Int { boundPort(.data) }
    public var managementPort: Int { boundPort(.management) }
    public var statusPort: Int { boundPort(.status) }
    public var externalPort: Int { boundPort(.external) }

    public func shutdown() {
        backupMode?.stop()
        isShutDown.store(true, ordering: .relaxed)
        let done = DispatchSemaphore(value: 0)
        linkLoop.execute { [self] in
            for l in self.links.values { l.close() }
            self.links.removeAll()
            done.signal()
        }
        done.wait()
        server?.shutdown()
        server = nil
        // after the loops stopped: every request's line is queued, and the writer flushes them before it exits
        accessLog?.close()
    }

    // MARK: - dispatch by listener

    func handle(_ req: HTTPRequest, _ res: HTTPResponder) {
        switch Port(rawValue: req.listener) {
        case .data: handleData(req, res)
        case .management: handleManagement(req, res)
        case .status: handleStatus(req, res)
        case .external: handleExternal(req, res)
        case nil: res.respond(status: 500, body: "unknown listener")
        }
    }

    func reply(_ res: HTTPResponder, _ error: GatewayError, dialect: Dialect?, headers: [(String, String)] = [], instance: InstanceID? = nil) {
        metrics.reply(dialect: dialect, status: error.status)
        live.errors.record(status: error.status, message: error.message, instance: instance)
        res.respond(status: error.status, headers: [("content-type", GatewayError.contentType)] + headers,
                    body: error.body(dialect: dialect))
    }

    // MARK: - data path (loop thread; never blocks)

    func handleData(_ req: HTTPRequest, _ res: HTTPResponder) {
        if handleLocalData(req, res) { return }
        let arrival = DispatchTime.now().uptimeNanoseconds
        arrivals.add(1, ordering: .relaxed)
        arrivalsSinceRecvsInfo.add(1, ordering: .relaxed)
        live.arrivals.add(now: arrival)
        let target = req.query.map { req.path + "?" + $0 } ?? req.path
        if req.body.count > config.requestLimit.bodyLimitBytes {
            let dialect: Dialect? = if case .route(let r) = RouteTable.match(method: req.method, target: target, passthrough: parser.passthroughRoutes) { r.dialect } else { Dialect.guess(path: req.path) }
            refuse(req, res, .bodyTooLarge(limitMiB: config.requestLimit.bodyLimitMiB), dialect: dialect, arrival: arrival)
            return
        }
        let parsed: InferenceRequest
        do {
            parsed = try parser.parse(method: req.method, target: target, body: req.body)
        } catch {
            refuse(req, res, error.error, dialect: error.dialect, headers: error.headers, arrival: arrival)
            return
        }
        let view = cluster.view
        guard view.available, isMaster else {
            refuse(req, res, .notReady, dialect: parsed.dialect, arrival: arrival, parsed: parsed)
            return
        }
        guard inFlightTotal.load(ordering: .relaxed) < config.requestLimit.maxRequests else {
            refuse(req, res, .tooManyRequests, dialect: parsed.dialect, arrival: arrival, parsed: parsed)
            return
        }
        let id = nextRequestID()
        let tracked = TrackedRequest(id: id, responder: res, dialect: parsed.dialect, stream: parsed.stream,
                                     model: parsed.model, arrivalNanos: arrival)
        guard registry.insert(tracked) else {
            refuse(req, res, .duplicateRequestID, dialect: parsed.dialect, arrival: arrival, parsed: parsed)
            return
        }
        tracked.method = req.method
        tracked.path = req.path
        if let tp = req.headers["traceparent"] { tracked.clientTraceparent = tp } else { tracked.traceparent = TraceContext.make(requestID: id) }
        inFlightTotal.add(1, ordering: .relaxed)
        res.onClientGone = { [unowned self] in self.clientLeft(tracked) }
        lengthStats.withLock { $0.arrived(input: parsed.prompt.size, output: parsed.maxTokens) }
        if parsed.route == .tokenizer {
            dispatchTokenizer(tracked, view: view)
            return
        }
        if view.deployPD, case .passthrough = parsed.route {
            dispatchPassthroughPD(tracked, view: view)
            return
        }
        if view.deployPD {
            startPD(tracked, req, target: target, features: RequestFeatures(parsed))
            return
        }
        arm(tracked, seconds: effectiveScheduleTimeout, .scheduleTimeout)
        schedule(tracked, features: RequestFeatures(parsed))
    }

    /// A refusal before the request was tracked (no request id yet): the reply, and its access log line.
    func refuse(_ req: HTTPRequest, _ res: HTTPResponder, _ error: GatewayError, dialect: Dialect?, headers: [(String, String)] = [],
                arrival: UInt64, parsed: InferenceRequest? = nil) {
        reply(res, error, dialect: dialect, headers: headers)
        guard let accessLog else { return }
        accessLog.submit(AccessRecord(requestID: nil, method: req.method, route: req.path, dialect: dialect, stream: parsed?.stream ?? false,
                                      model: parsed?.model, status: error.status, arrivalNanos: arrival,
                                      endNanos: DispatchTime.now().uptimeNanoseconds, wallNanos: AccessLog.wallNow(),
                                      bytesOut: res.sentBodyBytes, traceparent: req.headers["traceparent"], error: error.message))
    }

    /// The access log line of a tracked request, at its end.
    func logAccess(_ t: TrackedRequest, _ accessLog: AccessLog) {
        let pd = t.pd
        accessLog.submit(AccessRecord(
            requestID: t.id, method: t.method, route: t.path, dialect: t.dialect, stream: t.stream, model: t.model,
            instance: pd == nil ? t.instance : nil, prefill: pd?.prefill, decode: pd?.decode,
            status: t.status != 0 ? t.status : t.responder.sentStatus,
            arrivalNanos: t.arrivalNanos, firstByteNanos: t.firstByteNanos, endNanos: DispatchTime.now().uptimeNanoseconds,
            wallNanos: AccessLog.wallNow(),
            // a PD stream's messages from P and D are its tokens; a relayed body is not looked into
            tokensOut: pd != nil && t.stream ? t.messagesOut : nil,
            bytesOut: t.proxyBytes + t.responder.sentBodyBytes, retries: t.retries,
            clientDisconnect: t.clientDisconnect || t.responder.clientGone,
            traceparent: t.clientTraceparent ?? t.traceparent, error: t.errorMessage))
    }

    func nextRequestID() -> UInt64 {
        // a 64-bit mix of a per-process random seed and a counter (splitmix64)
        var z = idSeed &+ idCounter.add(1, ordering: .relaxed).newValue &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Arms a timeout that ends the request with `error` unless it finished first.
    @discardableResult
    func arm(_ t: TrackedRequest, seconds: Int, _ error: GatewayError, stopInfer: Bool = false, healthFailure: Bool = false) -> LoopTimer? {
        guard seconds > 0 else { return nil }
        let timer = t.responder.loop.schedule(afterMilliseconds: UInt64(seconds) * 1000) { [unowned self] in
            guard !t.finished else { return }
            self.metrics.timeouts.increment()
            // no first token in time: the instance did not answer, which counts against its health
            if healthFailure {
                if let pd = t.pd { if !pd.firstFrameDone, let p = pd.prefill { self.noteFailure(p) } } else if let i = t.instance { self.noteFailure(i) }
            }
            if stopInfer {
                if let pd = t.pd { self.stopInferPD(t, pd) } else if let instance = t.instance { self.sendStopInfer(t, to: instance) }
            }
            self.fail(t, error, result: .timeout)
        }
        t.timers.append(timer)
        return timer
    }

    func schedule(_ t: TrackedRequest, features: RequestFeatures) {
        guard !t.finished else { return }
        let view = cluster.routableView()
        if let decision = scheduler.select(features, snapshot: view.snapshot, load: view.load()),
           case .single(let id) = decision, let entry = view.entries[id] {
            metrics.scheduled.increment()
            dispatch(t, to: entry)
            return
        }
        // default_scheduler semantics: try again until schedule_timeout
        t.timers.append(t.responder.loop.schedule(afterMilliseconds: 10) { [unowned self] in self.schedule(t, features: features) })
    }

    func take(_ t: TrackedRequest, _ entry: InstanceEntry) {
        if let old = t.instance { release(old) }
        t.instance = entry
        t.tried.insert(entry.info.id)
        entry.load.inFlight.add(1, ordering: .relaxed)
        entry.load.stats.dispatched.add(now: DispatchTime.now().uptimeNanoseconds)
        registry.assign(t.id, to: entry.info.id)
    }

    func release(_ entry: InstanceEntry) {
        entry.load.inFlight.subtract(1, ordering: .relaxed)
    }

    func dispatch(_ t: TrackedRequest, to entry: InstanceEntry, extraHeaders: [(String, String)] = []) {
        for timer in t.timers { timer.cancel() } // the schedule timeout and retry timer
        t.timers.removeAll()
        take(t, entry)
        let elapsed = Int((DispatchTime.now().uptimeNanoseconds - t.arrivalNanos) / 1_000_000_000)
        if config.exceptions.firstTokenTimeout > 0 {
            arm(t, seconds: max(config.exceptions.firstTokenTimeout - elapsed, 1), .firstTokenTimeout, stopInfer: true, healthFailure: true)
        }
        if config.exceptions.inferTimeout > 0 {
            arm(t, seconds: max(config.exceptions.inferTimeout - elapsed, 1), .inferenceTimeout, stopInfer: true)
        }
        let errorTail = Self.readFailedTail(dialect: t.dialect, stream: t.stream)
        let maxAttempts = config.exceptions.maxRetry + 1
        t.responder.proxy(
            to: entry.upstream,
            options: ProxyOptions(extraHeaders: [("req-id", t.idString)] + t.traceHeaders + extraHeaders, errorTail: errorTail,
                                  clientBufferBytes: config.http.relayBufferBytes, errorReply: Self.errorReply(t.dialect),
                                  connectTimeoutMilliseconds: UInt64(config.health.connectTimeoutMs),
                                  // a non-streamed reply's head comes with the whole answer: only streams get one
                                  headTimeoutMilliseconds: t.stream ? UInt64(config.health.firstByteTimeoutMs) : 0),
            retry: { [unowned self] attempt, _, why in
                // a 503 is a busy instance, not a sick one
                if case .transport = why, let failed = t.instance { self.noteFailure(failed) }
                // DECISIONS 10: another eligible instance, before the first byte only
                guard attempt < maxAttempts, !t.finished, extraHeaders.isEmpty else { return nil }
                self.metrics.retries.increment()
                t.retries += 1
                self.logger.debug("retrying on another instance", metadata: ["req": "\(t.idString)", "why": "\(why)"])
                let view = self.cluster.routableView().without(t.tried)
                guard let d = self.scheduler.select(RequestFeatures(dialect: t.dialect ?? .openAI), snapshot: view.snapshot, load: view.load()),
                      case .single(let id) = d, let next = view.entries[id] else { return nil }
                self.take(t, next)
                return next.upstream
            },
            head: { [unowned self] status in
                t.headSent = true
                t.status = status
                if status < 500, let i = t.instance { self.noteSuccess(i) }
            },
            firstBody: { [unowned self] in
                t.firstByte = true
                t.firstByteNanos = DispatchTime.now().uptimeNanoseconds
                self.metrics.firstByte(since: t.arrivalNanos)
                self.noteFirstToken(t, from: t.instance)
                // the first-token timeout is the first armed after dispatch
                if self.config.exceptions.firstTokenTimeout > 0, let first = t.timers.first { first.cancel() }
            },
            finish: { [unowned self] outcome in
                self.proxyFinished(t, outcome)
            })
    }

    /// The error tail of every proxied request is one of a few constants; rendering it per request was ~5% of the
    /// Coordinator's CPU on small requests, for bytes sent only when a stream breaks.
    private static let dialects = Dialect.allCases
    private static let readFailedTails: [[UInt8]] = ([Dialect?.none] + dialects.map(Optional.some)).flatMap { d in
        [false, true].map { GatewayError.readInstanceFailed.streamErrorEvent(dialect: d, stream: $0) }
    }

    static func readFailedTail(dialect: Dialect?, stream: Bool) -> [UInt8] {
        let d = dialect.flatMap { dialects.firstIndex(of: $0) }.map { $0 + 1 } ?? 0
        return readFailedTails[d * 2 + (stream ? 1 : 0)]
    }

    /// The proxy's own reply after every attempt failed before the head (502, 504), in the caller's dialect
    /// (DECISIONS 2).
    static func errorReply(_ dialect: Dialect?) -> @Sendable (Int, String) -> [UInt8] {
        { status, message in GatewayError(status: status, message: message).body(dialect: dialect) }
    }

    func proxyFinished(_ t: TrackedRequest, _ outcome: ProxyOutcome) {
        t.proxyBytes += outcome.bytes
        if t.status == 0 {
            switch outcome.result {
            case .ok: t.status = outcome.status
            case .gaveUp: t.status = 502 // the proxy's own replies (proxy.c on_done)
            case .timeout: t.status = 504
            case .cancelled: t.clientDisconnect = true
            case .upstreamError: break
            }
        }
        // a stream the instance broke after its head (our own aborts report a cancelled call)
        if outcome.result == .upstreamError, let e = outcome.lastError, e != .cancelled, let i = t.instance { noteFailure(i) }
        if !t.errorNoted, outcome.result == .gaveUp || outcome.result == .upstreamError {
            // the proxy's own 502/504, or the in-stream error after an instance broke its reply
            let why = outcome.lastError.map { "\($0)" } ?? "no answer"
            let message = outcome.result == .gaveUp ? "No instance answered (\(why))" : "Instance broke its reply (\(why))"
            live.errors.record(status: outcome.result == .gaveUp ? 502 : outcome.status, message: message, instance: t.instance?.info.id)
            if t.errorMessage == nil { t.errorMessage = message }
        }
        switch outcome.result {
        case .ok: metrics.reply(dialect: t.dialect, status: outcome.status)
        case .cancelled: metrics.cancellations.increment()
        case .upstreamError, .gaveUp:
            metrics.upstreamErrors.increment()
            metrics.reply(dialect: t.dialect, status: outcome.result == .gaveUp ? 502 : outcome.status)
        case .timeout: metrics.reply(dialect: t.dialect, status: 408)
        }
        complete(t, success: outcome.result == .ok && outcome.status < 400)
    }

    /// Bookkeeping at the end of a request, whatever ended it (exactly once).
    func complete(_ t: TrackedRequest, success: Bool) {
        guard !t.finished else { return }
        t.finished = true
        if let accessLog { logAccess(t, accessLog) }
        // the responder's hook captures the request, which holds the responder: break the cycle
        t.responder.onClientGone = nil
        t.cancelTimers()
        if let i = t.instance { release(i) }
        if let pd = t.pd {
            pd.cancelTimers()
            pd.pCall?.cancel()
            pd.pCall = nil
            releasePD(t, pd)
        }
        releaseBooking(t)
        registry.remove(t.id)
        inFlightTotal.subtract(1, ordering: .relaxed)
        metrics.completed(success: success, since: t.arrivalNanos)
        lengthStats.withLock { $0.finished() }
    }

    /// Ends a request with an error reply (before the head) or an in-stream error (after it).
    func fail(_ t: TrackedRequest, _ error: GatewayError, result: ProxyResult) {
        guard !t.finished else { return }
        if let pd = t.pd { return failPD(t, pd, error) }
        let body = t.headSent ? error.streamErrorEvent(dialect: t.dialect, stream: t.stream) : error.body(dialect: t.dialect)
        t.errorMessage = error.message
        if let i = t.instance {
            // the abort's reply or in-stream error is the proxy's, not the responder's: counted here
            if !t.headSent { t.status = error.status }
            t.proxyBytes += UInt64(body.count)
            t.errorNoted = true
            live.errors.record(status: error.status, message: error.message, instance: i.info.id)
            // proxied: the proxy answers and its finish hook completes the request
            t.responder.abortProxy(status: error.status, headers: [("content-type", GatewayError.contentType)], body: body, result: result)
            complete(t, success: false)
        } else {
            finish(t, error: error)
        }
    }

    /// Ends a request that was never proxied.
    func finish(_ t: TrackedRequest, error: GatewayError) {
        t.errorMessage = error.message
        reply(t.responder, error, dialect: t.dialect, instance: t.instance?.info.id)
        complete(t, success: false)
    }

    func clientLeft(_ t: TrackedRequest) {
        t.clientDisconnect = true
        // single node: the proxy already closed the upstream connection (DECISIONS 8); finish() completes
        if let pd = t.pd {
            // DECISIONS 8: the work on P and D is cancelled at once
            if pd.prefill != nil || pd.decode != nil { stopInferPD(t, pd) }
            metrics.cancellations.increment()
            complete(t, success: false)
            return
        }
        if t.instance == nil { complete(t, success: false) }
    }

    func sendStopInfer(_ t: TrackedRequest, to entry: InstanceEntry) {
        // DECISIONS 7: the instance's own model name
        let model = entry.info.modelName.isEmpty ? (t.model ?? "") : entry.info.modelName
        let body = Array("{\"id\":\"\(t.idString)\"}".utf8)
        let req = HTTPClientRequest(method: "POST", host: entry.ip, port: entry.port, path: "/v2/models/\(model)/stopInfer",
                                    headers: [("content-type", "application/json")], body: body,
                                    timeoutMilliseconds: UInt64(config.http.httpTimeoutSeconds) * 1000)
        stopInfer(req, reqId: t.idString, instance: entry.info.id, loop: t.responder.loop, attemptsLeft: config.exceptions.maxRetry + 1)
    }

    /// Side calls make `max_retry`+1 attempts (§6); stopInfer stops at the first 200.
    private func stopInfer(_ req: HTTPClientRequest, reqId: String, instance: InstanceID, loop: EventLoop, attemptsLeft: Int) {
        var status = 0
        sideClient.stream(req, on: loop, onHead: { s, _ in status = s }, onBody: { _ in }, onEnd: { [weak self] err in
            guard let self else { return }
            self.stopInferLog.withLock { $0.append((reqId, instance, err == nil ? status : 0)) }
            // 404: the instance no longer knows the request (already ended) — nothing to retry
            guard err != nil || (status != 200 && status != 404), attemptsLeft > 1 else { return }
            self.logger.warning("stopInfer failed", metadata: ["req": "\(reqId)", "instance": "\(instance)", "status": "\(status)"])
            self.stopInfer(req, reqId: reqId, instance: instance, loop: loop, attemptsLeft: attemptsLeft - 1)
        })
    }

    func dispatchTokenizer(_ t: TrackedRequest, view: ClusterView) {
        guard let id = Scheduler.tokenizerTarget(view.snapshot, load: view.load()), let entry = view.entries[id] else {
            finish(t, error: .notReady)
            return
        }
        take(t, entry)
        arm(t, seconds: config.exceptions.tokenizerTimeout, .tokenizerTimeout)
        t.responder.proxy(to: entry.upstream, options: ProxyOptions(extraHeaders: [("req-id", t.idString)] + t.traceHeaders,
                                                                    clientBufferBytes: config.http.relayBufferBytes,
                                                                    errorReply: Self.errorReply(t.dialect)),
                          head: { status in
                              t.headSent = true
                              t.status = status
                          },
                          finish: { [unowned self] outcome in self.proxyFinished(t, outcome) })
    }

    // MARK: - passive health (instance_health_config)

    /// A failed attempt on `entry`; opening its circuit schedules the probe.
    func noteFailure(_ entry: InstanceEntry) {
        let h = config.health
        let now = DispatchTime.now().uptimeNanoseconds
        guard entry.load.recordFailure(threshold: h.failureThreshold, now: now, backoff: { h.openNanoseconds(openings: $0) }) else { return }
        metrics.circuitOpenings.increment()
        logger.warning("instance circuit opened: no new requests until it answers a probe",
                       metadata: ["instance": "\(entry.info.id)", "failures": "\(entry.load.failures.load(ordering: .relaxed))"])
        scheduleProbe(entry, due: entry.load.openUntil.load(ordering: .relaxed))
    }

    /// `entry` answered.
    func noteSuccess(_ entry: InstanceEntry) {
        let wasOpen = !entry.load.routable
        entry.load.recordSuccess()
        if wasOpen { logger.info("instance circuit closed", metadata: ["instance": "\(entry.info.id)"]) }
    }

    private func scheduleProbe(_ entry: InstanceEntry, due: UInt64) {
        let now = DispatchTime.now().uptimeNanoseconds
        let ms = due > now ? (due - now + 999_999) / 1_000_000 : 0
        linkLoop.execute { [weak self] in
            guard let self else { return }
            self.linkLoop.schedule(afterMilliseconds: ms) { [weak self] in self?.probe(entry) }
        }
    }

    /// Half-open: one cheap request; any HTTP answer proves the process serves again. Link loop.
    private func probe(_ entry: InstanceEntry) {
        guard !isShutDown.load(ordering: .relaxed), !entry.load.routable else { return }
        // an instance the Controller removed is no longer ours to watch
        guard cluster.view.entries.values.contains(where: { $0.load === entry.load }) else { return }
        let req = HTTPClientRequest(method: "GET", host: entry.ip, port: entry.port, path: "/health",
                                    timeoutMilliseconds: UInt64(config.health.probeTimeoutMs))
        var answered = false
        sideClient.stream(req, on: linkLoop, onHead: { _, _ in answered = true }, onBody: { _ in }, onEnd: { [weak self] _ in
            guard let self else { return }
            if answered { return self.noteSuccess(entry) }
            let h = self.config.health
            if let due = entry.load.probeFailed(now: DispatchTime.now().uptimeNanoseconds, backoff: { h.openNanoseconds(openings: $0) }) {
                self.scheduleProbe(entry, due: due)
            }
        })
    }

    // MARK: - counters other parts read

    var inFlightCount: Int { inFlightTotal.load(ordering: .relaxed) }
    var arrivalCount: Int { arrivals.load(ordering: .relaxed) }
    func takeArrivalsSinceLastRecvsInfo() -> Int { arrivalsSinceRecvsInfo.exchange(0, ordering: .relaxed) }
    func setBackupAbnormal(_ v: Bool) { backupAbnormal.store(v, ordering: .relaxed) }
    func lengthInfo() -> (input: Double, output: Double) {
        lengthStats.withLock { $0.report(stringTokenRate: config.stringTokenRate) }
    }
}

public struct CoordinatorStartError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Averages of input and output estimates for `/v1/coordinator_info` (docs/wire/coordinator.md §3.2).
struct LengthStats {
    private var inputSum = 0.0, outputSum = 0.0, count = 0
    private var pendingInputs: [Double] = []
    private var lastInput = 0.0, lastOutput = 0.0

    mutating func arrived(input: InputSize, output: Int?) {
        let n: Int = switch input {
        case .bytes(let b), .scaledTokens(let b), .rawTokens(let b): b
        case .none: 0
        }
        inputSum += Double(n)
        outputSum += Double(output ?? 0)
    }

    mutating func finished() { count += 1 }

    mutating func report(stringTokenRate: Double) -> (input: Double, output: Double) {
        if count > 0 {
            lastInput = inputSum / Double(count) / max(stringTokenRate, 0.001)
            lastOutput = outputSum / Double(count)
            inputSum = 0
            outputSum = 0
            count = 0
        }
        return (lastInput, lastOutput)
    }
}
