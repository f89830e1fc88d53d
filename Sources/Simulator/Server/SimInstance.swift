import MSCore

/// Which listener a request arrived on.
public enum PortKind: String, Sendable, CaseIterable {
    case data, management, metrics, interComm, control
}

/// One request as the instance sees it.
public struct SimRequest: Sendable {
    public var method: String
    public var path: String
    public var query: String?
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The port kinds of the listener (several when ports are shared).
    public var ports: [PortKind]

    public init(method: String, path: String, query: String? = nil, headers: [(name: String, value: String)] = [], body: [UInt8] = [], ports: [PortKind]) {
        self.method = method; self.path = path; self.query = query; self.headers = headers; self.body = body; self.ports = ports
    }

    /// Case-insensitive header lookup.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }

    /// `?a=b&c` → ["a": "b", "c": ""].
    public var queryItems: [String: String] {
        var out: [String: String] = [:]
        for item in (query ?? "").split(separator: "&") {
            let kv = item.split(separator: "=", maxSplits: 1)
            out[String(kv[0])] = kv.count == 2 ? String(kv[1]) : ""
        }
        return out
    }
}

/// One simulated MindIE Server instance: the engine, the role, the wire protocol and the faults.
///
/// Loop-confined and synchronous: the host calls `handle`, `wake` and the PD entry points on one thread,
/// and arms a timer for `nextWakeup` (reported through `onWakeupChanged`). Time comes from `clock` (ms).
public final class SimInstance {
    public let index: Int
    public internal(set) var configuration: InstanceConfiguration
    public let engine: Engine
    public internal(set) var role: RoleState
    public internal(set) var metrics = ServerMetrics()
    var faults = FaultSet()
    let timers = TimerQueue()
    let clock: () -> Double
    let wallClock: () -> Double
    public var transport: (any PDTransport)?
    /// Called with the time the host must call `wake()` next (nil = nothing pending).
    public var onWakeupChanged: ((Double?) -> Void)?
    /// `stopService` finished: the host ends the process (true = Force).
    public var onStop: ((Bool) -> Void)?
    /// A `crash` fault fired (true = hard: reset sockets).
    public var onCrash: ((Bool) -> Void)?
    /// A `refuse` fault fired: the host closes every listener, for `seconds` (nil = until restarted).
    public var onRefuse: ((_ seconds: Double?) -> Void)?
    /// Manual clock: advance by ms (control API). Set by the host when the clock is manual.
    public var advanceClock: ((Double) -> Void)?

    public internal(set) var stopped = false
    var stopPending: (any ResponseSink)?
    public internal(set) var engineReady: Bool
    var roleHoldUntil: Double = 0
    var requests: [UInt64: ActiveRequest] = [:]
    var byReqId: [String: UInt64] = [:]
    var parked: [String: (key: UInt64, timer: TimerQueue.Timer)] = [:]
    var nextKey: UInt64 = 1
    var commonCounter = 0
    var dresult: (any ResponseSink)?
    var dresultLastWrite: Double = 0
    var dresultBuffer: [UInt8] = []
    var dresultSilent = false
    var heartbeatTimer: TimerQueue.Timer?
    var roleCheckTimer: TimerQueue.Timer?
    var engineTimer: TimerQueue.Timer?
    var hung: [any ResponseSink] = []
    var lastArmed: Double?
    var neverReadyHold = false
    /// The newest Controller term seen on a role post (`x-ms-term`); posts from older terms are refused (409).
    var controllerTerm: Int64 = 0
    /// Role posts accepted, as "<role>@<term>" (term 0 = no header), for tests: a takeover re-posts nothing.
    var rolePostLog: [String] = []
    var throughputSample: (time: Double, prompt: UInt64, generation: UInt64)?

    /// - Parameters:
    ///   - clock: monotonic milliseconds on the instance's time axis.
    ///   - wallClock: Unix seconds (for `created` and e2e start times).
    public init(index: Int = 0, configuration: InstanceConfiguration, clock: @escaping () -> Double, wallClock: @escaping () -> Double) {
        self.index = index
        self.configuration = configuration
        self.clock = clock
        self.wallClock = wallClock
        var ec = configuration.engine
        ec.seed = ec.seed &+ UInt64(index)
        engine = Engine(configuration: ec)
        role = RoleState(dmi: configuration.dmi)
        engineReady = configuration.loadTime <= 0
        for f in configuration.faults { faults.put(f) }
        if let f = faults.active("slow_start"), let s = f.double("s") {
            switch f.params["phase"] ?? f.params["mode"] ?? "listen" {
            case "init": engineReady = false; timers.schedule(at: clock() + s * 1000) { [unowned self] in self.engineReady = true }
            case "role": roleHoldUntil = clock() + s * 1000
            default: break
            }
        }
        if !engineReady, configuration.loadTime > 0 {
            timers.schedule(at: clock() + configuration.loadTime) { [unowned self] in self.engineReady = true }
        }
        if faults.active("hang")?.mode == "engine" { engine.paused = true }
        if let f = faults.active("kv_shrink") { applyStandingFault(f) }
    }

    var now: Double { clock() }
    var scale: Double { configuration.protocolScale }
    var profile: ModelProfile { engine.profile }
    public var modelName: String { configuration.modelName }

    /// Faults currently active.
    public var activeFaults: [Fault] { faults.faults }

    // MARK: entry points

    /// Handles one request; `sink` receives the answer now or later.
    public func handle(_ request: SimRequest, sink: any ResponseSink) {
        pump()
        route(request, sink: sink)
        pump()
        arm()
    }

    /// Runs whatever is due (engine steps, timers). The host calls this when its timer fires.
    public func wake() {
        pump()
        timers.runDue(now: now)
        pump()
        arm()
    }

    /// When `wake()` should run next.
    public var nextWakeup: Double? {
        [engine.nextEventTime, timers.nextDeadline].compactMap { $0 }.min()
    }

    func arm() {
        let next = nextWakeup
        lastArmed = next
        onWakeupChanged?(next)
    }

    /// Adds or replaces a fault at run time.
    public func putFault(_ f: Fault) {
        faults.put(f)
        applyStandingFault(f)
        arm()
    }

    @discardableResult
    public func removeFault(_ id: String) -> Bool {
        let had = faults.faults.first { $0.id == id }
        let ok = faults.remove(id)
        if had?.type == "hang", had?.mode == "engine", faults.active("hang")?.mode != "engine" { engine.paused = false }
        pump(); arm()
        return ok
    }

    func applyStandingFault(_ f: Fault) {
        switch f.type {
        case "hang" where f.mode == "engine": engine.paused = true
        case "role_unknown": roleUnknown(); faults.remove(f.id)
        case "kv_shrink": engine.resizePool(totalBlocks: f.int("blocks") ?? profile.totalBlocks / 2); faults.remove(f.id)
        case "crash" where f.int("after_requests") == nil: onCrash?(f.mode == "hard" || f.params["hard"] == "true")
        case "refuse": faults.remove(f.id); onRefuse?(f.double("s"))
        default: break
        }
    }

    /// The `role_unknown` action: status RoleUnknown/none, links cleared, running requests failed.
    public func roleUnknown() {
        role.reset()
        failAll(WireError.incomplete("The role of the node has been reset."))
        closeDResult(message: nil)
    }

    // MARK: routing

    func route(_ r: SimRequest, sink: any ResponseSink) {
        if let h = faults.active("hang"), h.mode != "engine" {
            let kind = h.mode ?? "all"
            if kind == "all" || r.ports.contains(where: { $0.rawValue == kind || (kind == "mgmt" && $0 == .management) }) {
                hung.append(sink)
                return
            }
        }
        if !r.path.hasPrefix("/sim/") {
            let ctx = FaultContext(path: r.path, reqId: r.header("req-id"), dialect: nil, role: role.role.rawValue)
            if let f = faults.take("slow_reply", ctx), let ms = f.double("ms") {
                timers.schedule(at: now + ms) { [unowned self] in self.dispatch(r, sink: sink) }
                return
            }
            if let f = faults.take("http_error", ctx) {
                let status = f.int("status") ?? 503
                sendError(sink, WireError(status: status, message: f.params["message"] ?? "Injected fault", type: errorType(status)))
                return
            }
            if let f = faults.take("crash", ctx), let n = f.int("after_requests") {
                if n <= 1 { onCrash?(f.params["hard"] == "true" || f.mode == "hard") } else {
                    var g = f; g.params["after_requests"] = String(n - 1); faults.put(g)
                }
            }
        }
        dispatch(r, sink: sink)
    }

    func dispatch(_ r: SimRequest, sink: any ResponseSink) {
        if r.body.count > configuration.maxRequestLength {
            let mb = configuration.maxRequestLength >> 20
            sink.respond(status: 413, headers: jsonHeaders, body: JSON.obj(["message": .string("Request body too large. Maximum allowed size is \(mb)MB.")]).bytes)
            return
        }
        for kind in r.ports {
            if handle(kind, r, sink) { return }
        }
        sink.respond(status: 404, headers: [], body: [])
    }

    func handle(_ kind: PortKind, _ r: SimRequest, _ sink: any ResponseSink) -> Bool {
        switch kind {
        case .data: return handleData(r, sink)
        case .management: return handleManagement(r, sink)
        case .metrics: return handleMetrics(r, sink)
        case .interComm: return handleInterComm(r, sink)
        case .control: return handleControl(r, sink)
        }
    }

    func errorType(_ status: Int) -> String {
        switch status {
        case 400: return "Bad Request"
        case 404: return "NotFoundError"
        case 422: return "Input Validation Error"
        case 424: return "Generation Error"
        case 500: return "Incomplete Generation"
        case 503: return "Service Unavailable"
        default: return "Error"
        }
    }

    var closeHeaders: [(String, String)] {
        configuration.wire.fixed(.connectionClose) ? [] : [("connection", "close")]
    }
    var jsonHeaders: [(String, String)] { [("content-type", "application/json")] + closeHeaders }
    static let sseHeaders: [(String, String)] = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]

    func sendError(_ sink: any ResponseSink, _ e: WireError) {
        if e.status == 404 && e.type.isEmpty { sink.respond(status: 404, headers: [], body: []); return }
        sink.respond(status: e.status, headers: jsonHeaders, body: e.body)
    }

    func sendJSON(_ sink: any ResponseSink, _ status: Int = 200, _ j: JSON) {
        sink.respond(status: status, headers: jsonHeaders, body: j.bytes)
    }

    // MARK: data port

    func handleData(_ r: SimRequest, _ sink: any ResponseSink) -> Bool {
        let route = Route.data(method: r.method, path: r.path, acceptTritonVersions: configuration.acceptTritonVersions)
        switch route {
        case .notFound:
            return false
        case .infer(let d):
            if let m = Route.tritonModel(in: r.path), m != modelName {
                sendError(sink, .notFound("Model \(m) not found.")); return true
            }
            infer(d, r, sink)
        case .tokenizer:
            guard let j = try? JSON.parse(r.body), let text = j["inputs"]?.stringValue else {
                sendError(sink, .validation("Failed to parse request context to json")); return true
            }
            let ids = Tokenizer.encode(text)
            sendJSON(sink, 200, .obj(["token_number": .int(ids.count), "tokens": .array(ids.map { .int(Int64($0)) })]))
        case .models:
            let j = JSON.obj(["object": "list", "data": [modelJSON]])
            let text = configuration.wire.fixed(.modelsPretty) ? j.compact : j.pretty(indent: 4)
            sink.respond(status: 200, headers: jsonHeaders, body: Array(text.utf8))
        case .model(let m):
            if m == modelName { sendJSON(sink, 200, modelJSON) } else { sendError(sink, .notFound("Model \(m) not found.")) }
        case .v2:
            sendJSON(sink, 200, .obj(["name": "MindIE Server", "version": "1.0.0", "extensions": .obj([:])]))
        case .v2Model(let m), .v2ModelConfig(let m):
            guard m == modelName else { sendError(sink, .notFound("Model \(m) not found.")); return true }
            let tensor: (String) -> JSON = { .obj(["name": .string($0), "datatype": "UINT32", "shape": [-1]]) }
            var j = JSON.obj(["name": .string(m), "platform": "MindIE Server", "inputs": [tensor("input0")], "outputs": [tensor("output0")]])
            if case .v2ModelConfig = route { j = j.setting("max_batch_size", .int(profile.maxBatchSize)) }
            sendJSON(sink, 200, j)
        case .stopInfer(let m):
            stopInfer(model: m, r, sink)
        case .dresult:
            openDResult(sink)
        case .unknownModel(let m):
            sendError(sink, .notFound("Model \(m) not found."))
        }
        return true
    }

    var modelJSON: JSON {
        .obj([
            "id": .string(modelName), "object": "model", "root": .string(configuration.modelWeightPath),
            "owned_by": "MindIE Server", "parent": "null",
        ])
    }

    func stopInfer(model: String, _ r: SimRequest, _ sink: any ResponseSink) {
        guard let j = try? JSON.parse(r.body), let id = j["id"]?.stringValue else {
            sendError(sink, .validation("Failed to parse request context to json")); return
        }
        guard !id.isEmpty, id.utf8.count <= 256,
            id.unicodeScalars.allSatisfy({ $0.properties.isASCIIHexDigit || $0 == "_" || $0 == "-" || ($0.isASCII && $0.properties.isAlphabetic) })
        else { sendError(sink, .validation("Invalid request id \(id).")); return }
        if let key = byReqId[id], let a = requests[key] {
            engine.cancel(key)
            finishRequest(a, success: false, stopped: true)
            sink.respond(status: 200, headers: jsonHeaders, body: r.body)
        } else if let p = parked.removeValue(forKey: id) {
            p.timer.cancel()
            engine.release(p.key)
            sink.respond(status: 200, headers: jsonHeaders, body: r.body)
        } else {
            sendError(sink, .notFound("RequestId is \(id) not found."))
        }
    }

    func infer(_ routed: Dialect, _ r: SimRequest, _ sink: any ResponseSink) {
        if stopped { sendError(sink, .unavailable("The service has been stopped")); return }
        var mode = ActiveRequest.Mode.mixed
        var pd: PDHeaders?
        if configuration.dmi {
            if role.status == .unknown || role.role == .none {
                let text = "The server cannot process the inference request due to an unknown status."
                sendError(sink, .unavailable(configuration.wire.fixed(.trailingSpace) ? text : text + " "))
                return
            }
            guard role.isPrefill else {
                sendError(sink, .badRequest("DMI inference requests can be sent only to the prefill node or p_percentage of the flex node == 0"))
                return
            }
            do { pd = try PDHeaders.check { r.header($0) } } catch { sendError(sink, error); return }
            if let h = pd, !(h.targetIP == configuration.ipAddress && (h.targetPort == nil || h.targetPort == configuration.interCommPort)) {
                mode = .prefill(h)
            }
        }
        let ctx = ParseContext(modelName: modelName, maxIterTimes: profile.maxIterTimes, isRecompute: pd?.isRecompute ?? false)
        let req: InferenceRequest
        do { req = try RequestParser.parse(dialect: routed, path: r.path, body: r.body, context: ctx) } catch {
            var e = error
            if configuration.wire.fixed(.generateErrorJSON), e.message == RequestParser.generateMissingInput {
                e.message = "`inputs` or `prompt` must be necessary and data type must be string."
            }
            metrics.requestReceived += 1
            metrics.requestFailed += 1
            sendError(sink, e)
            return
        }
        var reqFaults: [Fault] = []
        if configuration.headerFaults, let h = r.header("x-sim-fault"), let f = Fault.parse(h, id: "header") { reqFaults.append(f) }
        let key = nextKey
        nextKey += 1
        commonCounter += 1
        let reqId = pd?.reqId ?? r.header("req-id")
        let responseId = reqId ?? "endpoint_common_\(commonCounter)"
        var eosAfter: Int?
        if let k = r.header("x-sim-output-tokens").flatMap({ Int($0) }), k > 0 { eosAfter = k }
        let kind: SequenceKind
        if case .prefill = mode { kind = .prefillOnly } else { kind = .mixed }
        let ereq = EngineRequest(
            id: key, prompt: req.prompt, maxNewTokens: req.maxTokens, seed: req.outputSeed, eosAfter: eosAfter,
            preGenerated: req.preGenerated, kind: kind)
        metrics.requestReceived += 1
        do { try engine.submit(ereq, now: now) } catch {
            metrics.requestFailed += 1
            switch error {
            case .promptTooLong(let n, let limit):
                sendError(sink, .generation("Failed to enqueue inferRequest. The input length \(n) exceeds the limit \(limit)."))
            case .duplicateId:
                sendError(sink, .generation("Failed to enqueue inferRequest. Duplicate request id."))
            }
            return
        }
        let renderer = ResponseRenderer(
            request: req, options: configuration.wire, responseId: responseId, created: Int64(wallClock()), model: modelName,
            promptTokens: req.originalPromptLength)
        let a = ActiveRequest(key: key, request: req, renderer: renderer, mode: mode, sink: sink, arrival: now, path: r.path)
        a.reqId = reqId
        a.faults = reqFaults
        a.eosAfter = eosAfter
        a.e2eStart = wallClock()
        requests[key] = a
        if let id = reqId { byReqId[id] = key }
        sink.onClientGone = { [weak self, weak a] in
            guard let self, let a else { return }
            self.engine.cancel(a.key)
            self.finishRequest(a, success: false)
            self.pump(); self.arm()
        }
        if configuration.tokenTimeout > 0 {
            a.timeout = timers.schedule(at: now + configuration.tokenTimeout * scale) { [weak self, weak a] in
                guard let self, let a else { return }
                self.timeoutRequest(a)
            }
        }
        if configuration.e2eTimeout > 0 {
            a.e2eTimeout = timers.schedule(at: now + configuration.e2eTimeout * scale) { [weak self, weak a] in
                guard let self, let a else { return }
                self.timeoutRequest(a, reason: "server e2eTimeout")
            }
        }
    }

    func timeoutRequest(_ a: ActiveRequest, reason: String = "server tokenTimeout") {
        engine.cancel(a.key)
        if a.started {
            a.sink?.write(Array("Engine callback timeout: \(reason)".utf8))
            a.sink?.end()
        } else {
            sendError(a.sink!, .incomplete("Engine callback timeout."))
        }
        finishRequest(a, success: false)
    }

    // MARK: engine events

    /// Advances the engine to now and delivers what it produced.
    func pump() {
        let events = engine.advance(to: now)
        for e in events {
            switch e {
            case .token(let id, let index, let finish, let t):
                guard let a = requests[id] else { continue }
                onToken(a, index: index, finish: finish, at: t)
            case .preempted(let id, let generated, let requeued, _):
                if !requeued, let a = requests[id] { onDecodePreempted(a, generated: generated) }
            case .kvPulled(let id, _):
                if let a = requests[id] { onKVPulled(a) }
            }
        }
        flushDResult()
    }

    func onToken(_ a: ActiveRequest, index: Int, finish: FinishReason?, at t: Double) {
        let tok = TokenInfo.at(index, seed: a.request.outputSeed)
        metrics.generationTokens += 1
        var timing = TokenTiming(batchSize: max(1, engine.runningCount), queueWaitMs: 0)
        if a.firstTokenAt == nil {
            a.firstTokenAt = t
            a.renderer.cachedTokens = engine.takeCachedTokens(a.key) ?? a.renderer.cachedTokens
            timing.prefillMs = Int((t - a.arrival).rounded())
            if case .decode = a.mode {} else {
                metrics.ttft.observe((t - a.arrival) / 1000)
                metrics.promptTokens += UInt64(a.request.originalPromptLength)
                metrics.promptHist.observe(Double(a.request.originalPromptLength))
            }
        } else {
            timing.decodeMs = Int((t - (a.lastTokenAt ?? t)).rounded())
            metrics.tpot.observe((t - (a.lastTokenAt ?? t)) / 1000)
        }
        a.lastTokenAt = t
        a.timeout?.cancel()
        if finish == nil, configuration.tokenTimeout > 0 {
            a.timeout = timers.schedule(at: now + configuration.tokenTimeout * scale) { [weak self, weak a] in
                guard let self, let a else { return }
                self.timeoutRequest(a)
            }
        }
        switch a.mode {
        case .mixed: deliverMixed(a, tok, finish, timing)
        case .prefill(let h): deliverPrefill(a, h, tok, finish, timing)
        case .decode: deliverDecode(a, tok, finish, timing)
        case .probe: if finish != nil { a.onDone?(); finishRequest(a, success: true) }
        }
    }

    func deliverMixed(_ a: ActiveRequest, _ tok: TokenInfo, _ finish: FinishReason?, _ timing: TokenTiming) {
        guard let sink = a.sink else { return }
        if a.request.stream {
            if !a.started { sink.startStream(status: 200, headers: SimInstance.sseHeaders); a.started = true }
            for f in a.renderer.frames(for: tok, finish: finish, timing: timing) { sink.write(f.bytes) }
            a.emitted += 1
            if finish == nil, let cut = dieMidStream(a) {
                cutStream(a, cut)
                return
            }
            if finish != nil { sink.end(); finishRequest(a, success: true) }
        } else {
            a.tokens.append(tok)
            if let f = finish {
                let body = a.renderer.nonStream(a.tokens, finish: f, timing: timing)
                sink.respond(status: 200, headers: jsonHeaders, body: body)
                finishRequest(a, success: true)
            }
        }
    }

    /// The `die_mid_stream` fault for `a`, if it fires now.
    func dieMidStream(_ a: ActiveRequest) -> Fault? {
        let ctx = FaultContext(path: a.path, reqId: a.reqId, dialect: a.request.dialect, role: role.role.rawValue)
        let f = a.faults.first { $0.type == "die_mid_stream" } ?? faults.faults.first { $0.type == "die_mid_stream" }
        guard let f, a.emitted >= (f.int("after_tokens") ?? 1) else { return nil }
        if a.faults.contains(f) { return f }
        return faults.take("die_mid_stream", ctx)
    }

    func cutStream(_ a: ActiveRequest, _ f: Fault) {
        engine.cancel(a.key)
        switch f.params["how"] ?? f.mode ?? "close" {
        case "timeout_text":
            a.sink?.write(Array("Engine callback timeout: client timeout".utf8)); a.sink?.end()
        case "error_json":
            a.sink?.write(WireError.incomplete("Engine error.").body); a.sink?.end()
        default:
            a.sink?.abort()
        }
        finishRequest(a, success: false)
    }

    /// Forgets `a`; counts it.
    func finishRequest(_ a: ActiveRequest, success: Bool, stopped: Bool = false) {
        guard requests.removeValue(forKey: a.key) != nil else { return }
        a.timeout?.cancel()
        a.e2eTimeout?.cancel()
        if let id = a.reqId, byReqId[id] == a.key { byReqId[id] = nil }
        a.sink?.onClientGone = nil
        if stopped, let sink = a.sink, !sink.isFinished {
            if a.started { sink.end() } else { sendError(sink, .incomplete("Request is stopped.")) }
        }
        if case .probe = a.mode { return }
        if success {
            metrics.requestSuccess += 1
            metrics.generationHist.observe(Double(a.renderer.tokens.count))
            metrics.e2e.observe(max(0, wallClock() - a.e2eStart))
        } else if !stopped {
            metrics.requestFailed += 1
        }
    }

    /// Ends every response still bound to a connection (before the host closes its listeners). Decode work
    /// on a D goes on; its results are dropped until a new `/dresult` link opens.
    public func dropConnections() {
        for a in Array(requests.values) where a.sink != nil {
            engine.cancel(a.key)
            if let sink = a.sink, !sink.isFinished { if a.started { sink.abort() } else { sendError(sink, .unavailable("The service is unavailable.")) } }
            finishRequest(a, success: false)
        }
        closeDResult(message: nil)
        for h in hung where !h.isFinished { h.abort() }
        hung.removeAll()
        if let s = stopPending { stopPending = nil; s.respond(status: 200, headers: [], body: []) }
        pump(); arm()
    }

    /// Fails every running request (role change, role_unknown).
    func failAll(_ e: WireError) {
        for a in Array(requests.values) {
            engine.cancel(a.key)
            if let sink = a.sink, !sink.isFinished {
                if a.started { sink.write(e.body); sink.end() } else { sendError(sink, e) }
            }
            finishRequest(a, success: false)
        }
        for (_, p) in parked { p.timer.cancel(); engine.release(p.key) }
        parked.removeAll()
    }
}

/// A request in flight on this instance.
final class ActiveRequest {
    enum Mode {
        case mixed
        case prefill(PDHeaders)
        case decode(DecodeParameters)
        case probe
    }

    let key: UInt64
    let request: InferenceRequest
    var renderer: ResponseRenderer
    let mode: Mode
    var sink: (any ResponseSink)?
    let arrival: Double
    let path: String
    var reqId: String?
    var faults: [Fault] = []
    var eosAfter: Int?
    var e2eStart: Double = 0
    var started = false
    var emitted = 0
    var tokens: [TokenInfo] = []
    var firstTokenAt: Double?
    var lastTokenAt: Double?
    var timeout: TimerQueue.Timer?
    var e2eTimeout: TimerQueue.Timer?
    var onDone: (() -> Void)?

    init(key: UInt64, request: InferenceRequest, renderer: ResponseRenderer, mode: Mode, sink: (any ResponseSink)?, arrival: Double, path: String) {
        self.key = key; self.request = request; self.renderer = renderer; self.mode = mode; self.sink = sink
        self.arrival = arrival; self.path = path
    }
}
