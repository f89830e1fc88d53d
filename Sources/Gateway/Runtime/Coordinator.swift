import Foundation
public import Logging
public import MSCore
import Synchronization

/// Listener tags of the Coordinator's ports (docs/wire/coordinator.md §1).
enum Port: Int {
    case data = 0
    case management = 1
    case status = 2
    case external = 3
}

/// The Coordinator: the data path on h2o loop threads (parse → admit → schedule → relay), the management API
/// the Controller drives, probes and metrics. This file holds its state, start and shutdown, and the dispatch by
/// listener; each concern has its own extension: the request path (`+Requests`), the request lifecycles
/// (`+Single`, `+PD`, over the values in Lifecycle/), `/dresult` links and faulty ids (`+Links`), DIGS (`+DIGS`),
/// passive health (`+Health`), the Controller's API (`+Management`) and the data port's local endpoints
/// (`+DataPort`).
public final class Coordinator: @unchecked Sendable {
    public let config: CoordinatorConfig
    let logger: Logger
    let cluster: Cluster
    let scheduler: SchedulingHost
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
    let arrivals = Atomic<Int>(0)
    let arrivalsSinceRecvsInfo = Atomic<Int>(0)
    let inFlightTotal = Atomic<Int>(0)
    let idCounter = Atomic<UInt64>(0)
    let idSeed = UInt64.random(in: 1...UInt64.max)
    private let backupAbnormal = Atomic<Bool>(false)
    /// Master/standby through etcd (`backup_config`, PD modes); nil = always master.
    private(set) var backupMode: BackupMode?
    /// Refuses instance-changing calls from a deposed Controller (older `x-ms-term`).
    let controllerTerm = TermFence()
    /// Set by `drain` (graceful stop): no new requests, readiness 503.
    let draining = Atomic<Bool>(false)
    let lengthStats = Mutex<LengthStats>(LengthStats())
    let effectiveScheduleTimeout: Int

    // PD: the links and faulty ids (Coordinator+Links), refreshes (Coordinator+Management), DIGS (Coordinator+DIGS)
    /// The loop that owns every `/dresult` link and applies refreshes, one at a time.
    var linkLoop: EventLoop { serverLoop ?? sideClient.loop }
    /// `/dresult` links by D id (link loop only).
    nonisolated(unsafe) var links: [InstanceID: DResultLink] = [:]
    /// D's whose link is down (kept out of scheduling until it is back).
    var unlinked: UnlinkedSet { cluster.unlinked }
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
        self.scheduler = SchedulingHost(config: config.scheduler)
        self.metrics = CoordinatorMetrics(policy: config.scheduler.algorithm.rawValue, factory: metricsSink.factory)
        self.parser = RequestParser(maxDepth: 10, detailedChatFeatures: scheduler.needs.contains(.prompt),
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
