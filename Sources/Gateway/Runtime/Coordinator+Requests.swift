import Foundation
import Logging
import Metrics
import MSCore
import Synchronization

/// The data path of an inference request (loop thread; never blocks): admission, the bookkeeping end every
/// request goes through, the access log line, stopInfer and the tokenizer.
extension Coordinator {
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
        guard view.available, isServing else {
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
        tracked.single.features = RequestFeatures(parsed)
        run(tracked, .start)
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

    /// The error tail of every proxied request is one of a few constants; rendering it per request was ~5% of the
    /// Coordinator's CPU on small requests, for bytes sent only when a stream breaks.
    private static let readFailedTails: [[UInt8]] = ([Dialect?.none] + Dialect.allCases.map(Optional.some)).flatMap { d in
        [false, true].map { GatewayError.readInstanceFailed.streamErrorEvent(dialect: d, stream: $0) }
    }

    static func readFailedTail(dialect: Dialect?, stream: Bool) -> [UInt8] {
        readFailedTails[Dialect.slot(dialect) * 2 + (stream ? 1 : 0)]
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
        // the status the client got: the proxy's 504, our own abort's 408, or the head already sent
        case .timeout: metrics.reply(dialect: t.dialect, status: t.status)
        }
        run(t, .relayEnded(success: outcome.result == .ok && outcome.status < 400))
    }

    /// Bookkeeping at the end of a request, whatever ended it (exactly once).
    func complete(_ t: TrackedRequest, success: Bool) {
        guard !t.finished else { return }
        t.finished = true
        if let accessLog { logAccess(t, accessLog) }
        // the responder's hook captures the request, which holds the responder: break the cycle
        t.responder.onClientGone = nil
        t.cancelTimers()
        completeSingle(t)
        if let pd = t.pd { completePD(t, pd) }
        releaseBooking(t)
        cluster.capacity.remove(t.id)
        registry.remove(t.id)
        inFlightTotal.subtract(1, ordering: .relaxed)
        metrics.completed(success: success, since: t.arrivalNanos)
        lengthStats.withLock { $0.finished() }
    }

    /// Ends a request with an error reply (before the head) or an in-stream error (after it).
    func fail(_ t: TrackedRequest, _ error: GatewayError, result: ProxyResult) {
        if let pd = t.pd { return run(t, pd, .abort(error)) }
        run(t, .abort(error, result))
    }

    func clientLeft(_ t: TrackedRequest) {
        t.clientDisconnect = true
        if let pd = t.pd { return run(t, pd, .clientGone) }
        run(t, .clientGone)
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
        let target = Scheduler.tokenizerTarget(view.snapshot, load: view.load()).flatMap { view.entries[$0] }
        run(t, .tokenizer(target))
    }

    // MARK: - what both lifecycles ask for

    func count(_ t: TrackedRequest, _ counter: LifecycleCounter) {
        switch counter {
        case .retry:
            metrics.retries.increment()
            t.retries += 1
        case .upstreamError: metrics.upstreamErrors.increment()
        case .timeout: metrics.timeouts.increment()
        case .cancellation: metrics.cancellations.increment()
        }
    }

    func log(_ t: TrackedRequest, _ line: LifecycleLog) {
        var metadata: Logger.Metadata = ["req": "\(t.idString)"]
        for (k, v) in line.metadata { metadata[k] = "\(v)" }
        switch line.level {
        case .debug: logger.debug("\(line.message)", metadata: metadata)
        case .warning: logger.warning("\(line.message)", metadata: metadata)
        }
    }
}
