import Foundation
import MSCore

/// The PD state of one request (docs/wire/coordinator.md §4.2). Loop-bound like its ``TrackedRequest``.
final class PDState {
    /// Path and query, forwarded to P unchanged.
    let target: String
    /// The client's headers that go to P (hop-by-hop and PD headers removed).
    let headers: [(String, String)]
    /// The body P gets: the client's, or D's recompute body.
    var body: [UInt8]
    let features: RequestFeatures
    var prefill: InstanceEntry?
    var decode: InstanceEntry?
    var prefillHeld = false
    var decodeHeld = false
    /// Recompute (RETRY): `is-recompute: true` and D's body.
    var recompute = false
    /// Resends of a recompute to the same P.
    var retryCount = 0
    /// Retries on another P before its reply (DECISIONS 10).
    var pAttempts = 0
    /// P's that failed this request before its first byte, and D's a P could not reach (DECISIONS 10).
    var excludedP: Set<InstanceID> = []
    var excludedD: Set<InstanceID> = []
    var giveUp: (() -> Void)?
    var dispatched = false
    /// FIRST_TOKEN_FINISH of the current incarnation: P's reply was handled, D frames flow.
    var firstFrameDone = false
    /// D frames that came before P's reply, in arrival order.
    var queued: [(DFrameKind, [UInt8])] = []
    /// The first D message of the current incarnation was looked at (D opens a chat stream with its own role chunk).
    var decodeStarted = false
    var pCall: ClientCall?
    /// P's reply (it comes after prefill) must start within `first_byte_timeout_ms`: a frozen P still accepts
    /// connections in its kernel, and without a deadline its requests wait for the first-token timeout.
    var pHeadTimer: LoopTimer?
    /// The frames of P's first output the client has seen (DECISIONS 13).
    var sentFirst: [[UInt8]] = []
    var scheduleTimer: LoopTimer?
    var retryTimer: LoopTimer?
    var firstTokenTimer: LoopTimer?
    /// After a chat stream's finish chunk: waiting for D's separate `[DONE]` message.
    var endTimer: LoopTimer?
    /// Armed while the client's unsent bytes are over the bound (a slow reader on a shared `/dresult` link).
    var slowTimer: LoopTimer?
    /// Uptime (ns) of the last result relayed to the client (the status page's inter-token latency).
    var lastFrameNanos: UInt64 = 0

    init(target: String, headers: [(String, String)], body: [UInt8], features: RequestFeatures) {
        self.target = target
        self.headers = headers
        self.body = body
        self.features = features
    }

    func cancelTimers() {
        for t in [scheduleTimer, retryTimer, firstTokenTimer, endTimer, slowTimer, pHeadTimer] { t?.cancel() }
        pHeadTimer = nil
        scheduleTimer = nil
        retryTimer = nil
        firstTokenTimer = nil
        endTimer = nil
        slowTimer = nil
    }
}

/// Headers the Coordinator never forwards to P (hop-by-hop, or its own PD headers).
private let droppedHeaders: Set<String> = [
    "host", "content-length", "connection", "transfer-encoding", "keep-alive", "te", "upgrade", "expect",
    "req-type", "req-id", "d-target", "d-port", "is-recompute",
]

private let sseType = "text/event-stream; charset=utf-8"
private let jsonType = "application/json; charset=utf-8"

extension GatewayError {
    /// In-flight requests of a D whose `/dresult` link broke (their results cannot arrive).
    static let decodeLinkLost = GatewayError(status: 500, message: "Decode result link to D instance lost")
    /// A PD stream whose client left too many bytes unread for too long (its D work is stopped).
    static func clientTooSlow(bytes: Int) -> GatewayError {
        GatewayError(status: 408, message: "Client reads too slowly: more than \(bytes) bytes of the stream unsent")
    }
}

extension Coordinator {
    var usesDIGS: Bool { config.scheduler.algorithm == .loadBalance }

    /// The view PD scheduling uses: without the D's whose `/dresult` link is down.
    func schedulingView() -> ClusterView {
        let v = cluster.routableView()
        let ex = unlinked.withLock { $0 }
        return ex.isEmpty ? v : v.without(ex)
    }

    // MARK: - admission → schedule

    func startPD(_ t: TrackedRequest, _ req: HTTPRequest, target: String, features: RequestFeatures) {
        let headers = req.headers.all.filter { !droppedHeaders.contains($0.name.lowercased()) }.map { ($0.name, $0.value) }
        let pd = PDState(target: target, headers: headers + t.traceHeaders, body: req.body, features: features)
        t.pd = pd
        armScheduleTimeout(t, pd)
        schedulePD(t)
    }

    func armScheduleTimeout(_ t: TrackedRequest, _ pd: PDState) {
        guard effectiveScheduleTimeout > 0 else { return }
        pd.scheduleTimer = t.responder.loop.schedule(afterMilliseconds: UInt64(effectiveScheduleTimeout) * 1000) { [unowned self] in
            guard !t.finished, pd.prefill == nil else { return }
            self.metrics.timeouts.increment()
            self.fail(t, .scheduleTimeout, result: .timeout)
        }
    }

    func schedulePD(_ t: TrackedRequest) {
        guard !t.finished, let pd = t.pd else { return }
        pd.retryTimer = nil
        let excluded = pd.excludedP.union(pd.excludedD)
        if usesDIGS {
            if !excluded.isEmpty, let giveUp = pd.giveUp, !Self.hasPair(schedulingView().snapshot, excludedP: pd.excludedP, excludedD: pd.excludedD) {
                // nothing left to retry on: DIGS would keep it queued until a timeout
                return giveUp()
            }
            t.digsBooked = true
            digs.withLock { $0?.enqueue(t.id, features: pd.features, excluding: excluded) }
            digsPass()
            return
        }
        var view = schedulingView()
        if !excluded.isEmpty { view = view.without(excluded) }
        if let d = scheduler.select(pd.features, snapshot: view.snapshot, load: view.load()),
           case .pair(let p, let dd) = d, let pe = view.entries[p], let de = view.entries[dd] {
            metrics.scheduled.increment()
            dispatchPD(t, pe, de)
            return
        }
        if !excluded.isEmpty, let giveUp = pd.giveUp {
            // no other pair to retry on
            giveUp()
            return
        }
        // default_scheduler semantics: try again until schedule_timeout
        pd.retryTimer = t.responder.loop.schedule(afterMilliseconds: 10) { [unowned self] in self.schedulePD(t) }
    }

    /// Whether a P outside `excludedP` has a D outside `excludedD` (in its group, listing it as a peer).
    static func hasPair(_ s: InstanceSnapshot, excludedP: Set<InstanceID>, excludedD: Set<InstanceID>) -> Bool {
        s.instances(role: .prefill).contains { p in
            !excludedP.contains(p.id) && s.decodes(for: p.id).contains { $0.groupID == p.groupID && !excludedD.contains($0.id) }
        }
    }

    /// One DIGS pass (§5.1): placements go to their requests' loops.
    func digsPass() {
        let view = schedulingView()
        let placed = digs.withLock { $0?.schedule(snapshot: view.snapshot) ?? [] }
        for (id, decision) in placed {
            guard case .pair(let p, let d) = decision, let handle = registry.handle(id) else {
                digs.withLock { $0?.finish(id) }
                continue
            }
            let pe = view.entries[p], de = view.entries[d]
            handle.loop.execute { [self] in
                let t = handle.request
                guard !t.finished else { return }
                guard let pe, let de else {
                    self.digs.withLock { $0?.requeue(id) }
                    return
                }
                self.metrics.scheduled.increment()
                self.dispatchPD(t, pe, de)
            }
        }
    }

    /// Starts the DIGS loop's periodic pass (at least every 100 ms).
    func startDIGSTicker() {
        linkLoop.execute { [weak self] in self?.digsTick() }
    }

    private func digsTick() {
        guard !isShutDown.load(ordering: .relaxed) else { return }
        digsPass()
        linkLoop.schedule(afterMilliseconds: 100) { [weak self] in self?.digsTick() }
    }

    // MARK: - dispatch to P

    func dispatchPD(_ t: TrackedRequest, _ p: InstanceEntry, _ d: InstanceEntry) {
        guard !t.finished, let pd = t.pd else { return }
        pd.scheduleTimer?.cancel()
        pd.scheduleTimer = nil
        pd.retryTimer?.cancel()
        pd.retryTimer = nil
        if p.ip == d.ip && p.port == d.port && !pd.recompute {
            // flex self-pair (§4.2 step 7): the single-node relay, with the PD headers
            // the proxy forwards the client's own headers and adds req-id; only the other PD headers are added here
            let own = Set(["req-type", "d-target", "d-port", "is-recompute"])
            let headers = pdHeaders(t, pd, d).suffix(5).filter { own.contains($0.0) }
            t.pd = nil
            dispatch(t, to: p, extraHeaders: Array(headers))
            return
        }
        pd.prefill = p
        pd.decode = d
        p.load.inFlight.add(1, ordering: .relaxed)
        d.load.inFlight.add(1, ordering: .relaxed)
        let now = DispatchTime.now().uptimeNanoseconds
        p.load.stats.dispatched.add(now: now)
        d.load.stats.dispatched.add(now: now)
        pd.prefillHeld = true
        pd.decodeHeld = true
        registry.assign(t.id, toAll: [p.info.id, d.info.id])
        if !pd.dispatched {
            pd.dispatched = true
            let elapsed = Int((DispatchTime.now().uptimeNanoseconds - t.arrivalNanos) / 1_000_000_000)
            if config.exceptions.firstTokenTimeout > 0 {
                pd.firstTokenTimer = arm(t, seconds: max(config.exceptions.firstTokenTimeout - elapsed, 1), .firstTokenTimeout, stopInfer: true)
            }
            if config.exceptions.inferTimeout > 0 {
                arm(t, seconds: max(config.exceptions.inferTimeout - elapsed, 1), .inferenceTimeout, stopInfer: true)
            }
        }
        sendToP(t)
    }

    func pdHeaders(_ t: TrackedRequest, _ pd: PDState, _ d: InstanceEntry) -> [(String, String)] {
        let target = config.scheduler.deployMode == .pdDisaggregationSingleContainer ? "\(d.ip);\(d.interCommPort)" : d.ip
        var h = pd.headers
        h.append(("req-type", "prefill"))
        h.append(("req-id", t.idString))
        h.append(("d-target", target))
        h.append(("d-port", String(d.port)))
        if pd.recompute { h.append(("is-recompute", "true")) }
        return h
    }

    func sendToP(_ t: TrackedRequest) {
        guard !t.finished, let pd = t.pd, let p = pd.prefill, let d = pd.decode else { return }
        let req = HTTPClientRequest(method: "POST", host: p.ip, port: p.port, path: pd.target, headers: pdHeaders(t, pd, d),
                                    body: pd.body, timeoutMilliseconds: UInt64(max(config.exceptions.inferTimeout, 600)) * 1000)
        var status = 0
        var contentType = "application/json"
        var body: [UInt8] = []
        pd.pHeadTimer?.cancel()
        pd.pHeadTimer = nil
        let call = sideClient.stream(req, on: t.responder.loop, onHead: { s, h in
            pd.pHeadTimer?.cancel()
            pd.pHeadTimer = nil
            status = s
            if let ct = h["content-type"] { contentType = ct }
        }, onBody: { body += $0 }, onEnd: { [unowned self] err in
            pd.pHeadTimer?.cancel()
            pd.pHeadTimer = nil
            pd.pCall = nil
            self.prefillReplied(t, p, status: status, contentType: contentType, body: body, error: err)
        })
        pd.pCall = call
        let deadline = UInt64(config.health.firstByteTimeoutMs)
        guard deadline > 0, pd.pCall != nil else { return }
        pd.pHeadTimer = t.responder.loop.schedule(afterMilliseconds: deadline) { [unowned self] in
            pd.pHeadTimer = nil
            // the call still waits for P's head: a timeout before the response (retried on another P, counted
            // against P's circuit)
            guard let c = pd.pCall, c === call else { return }
            c.cancel()
            pd.pCall = nil
            self.prefillReplied(t, p, status: 0, contentType: contentType, body: [], error: .timeout)
        }
    }

    // MARK: - P's reply (the table of §4.2 step 3)

    func prefillReplied(_ t: TrackedRequest, _ p: InstanceEntry, status: Int, contentType: String, body: [UInt8], error: HTTPClientError?) {
        guard !t.finished, let pd = t.pd, pd.prefill === p else { return }
        if error != nil { noteFailure(p) } else { noteSuccess(p) }
        if let error {
            logger.debug("P call failed", metadata: ["req": "\(t.idString)", "instance": "\(p.info.id)", "error": "\(error)"])
            if pd.recompute { return resendRecompute(t, pd) }
            if error.isBeforeResponse {
                return retryElsewhere(t, pd) { [unowned self] in self.fail(t, .connectPFailed, result: .upstreamError) }
            }
            return fail(t, .receivePFailed, result: .upstreamError)
        }
        guard status == 200 else {
            if pd.recompute { return resendRecompute(t, pd) }
            let pError = Self.instanceError(status: status, body: body)
            let relay = { [unowned self] in
                self.metrics.upstreamErrors.increment()
                if let pError {
                    // P's own text, in the client's dialect (DECISIONS 2), not the server's TGI-shaped body
                    self.fail(t, pError, result: .upstreamError)
                    return
                }
                if t.responder.isStreaming {
                    t.responder.write(GatewayError(status: status, message: String(decoding: body, as: UTF8.self))
                        .streamErrorEvent(dialect: t.dialect, stream: t.stream))
                    t.responder.end()
                } else {
                    t.responder.respond(status: status, headers: [("content-type", contentType)], body: body)
                }
                self.metrics.reply(dialect: t.dialect, status: status)
                self.complete(t, success: false)
            }
            if status == 503 { return retryElsewhere(t, pd, giveUp: relay) }
            if let pError, pError.message.contains("Send D request failed") {
                // P is fine but could not hand the request to its D: another D (DECISIONS 10)
                return retryElsewhere(t, pd, excludeDecode: true, giveUp: relay)
            }
            return relay()
        }
        guard let j = try? JSON.parse(body, maxDepth: 8), let rid = j["reqId"]?.stringValue, j["isStream"]?.boolValue != nil,
              j["isLastResp"] == nil || j["isLastResp"]?.boolValue != nil, j["output"] == nil || j["output"]?.stringValue != nil,
              !(t.stream && (j["isLastResp"] == nil || j["output"] == nil)) else {
            return fail(t, .pInstanceError, result: .upstreamError)
        }
        guard rid == t.idString else {
            // docs/wire/coordinator.md §4.2: a reply for another request is ignored (the request ends by its timeouts)
            logger.warning("P reply with a foreign reqId ignored", metadata: ["req": "\(t.idString)", "reqId": "\(rid)"])
            return
        }
        let isLast = j["isLastResp"]?.boolValue ?? false
        if isLast, j["output"] == nil { return fail(t, .pInstanceError, result: .upstreamError) }
        let output = Array((j["output"]?.stringValue ?? "").utf8)
        firstFrame(t, pd, isLast: isLast, output: output)
    }

    /// FIRST_TOKEN_FINISH: the task moves from P to D; P's output goes out, then the queued D frames.
    func firstFrame(_ t: TrackedRequest, _ pd: PDState, isLast: Bool, output: [UInt8]) {
        pd.retryCount = 0
        pd.firstFrameDone = true
        pd.lastFrameNanos = DispatchTime.now().uptimeNanoseconds
        if let p = pd.prefill, pd.prefillHeld {
            pd.prefillHeld = false
            release(p)
        }
        if let d = pd.decode { registry.assign(t.id, toAll: [d.info.id]) }
        if t.digsBooked {
            digs.withLock { $0?.releasePrefill(t.id) }
            digsPass()
        }
        if !output.isEmpty { t.messagesOut += 1 }
        if !t.firstByte {
            t.firstByte = true
            t.firstByteNanos = pd.lastFrameNanos
            metrics.firstByte(since: t.arrivalNanos)
            noteFirstToken(t, from: pd.prefill)
            pd.firstTokenTimer?.cancel()
            pd.firstTokenTimer = nil
        }
        if t.stream {
            var out = output
            let delimiter: [UInt8] = t.dialect == .vllm ? [0] : [10, 10]
            if t.responder.isStreaming {
                // after a recompute: drop what the client has already seen (DECISIONS 13)
                out = Self.frames(output, delimiter: delimiter).filter { !pd.sentFirst.contains($0) }.flatMap { $0 }
            } else {
                pd.sentFirst = Self.frames(output, delimiter: delimiter)
            }
            if isLast {
                if t.responder.isStreaming {
                    if !out.isEmpty { t.responder.write(out) }
                    t.responder.end()
                } else {
                    t.responder.respond(status: 200, headers: [("content-type", sseType)], body: output)
                }
                return succeed(t)
            }
            if !t.responder.isStreaming {
                t.responder.startStream(status: 200, headers: [("content-type", sseType)])
                t.headSent = true
            }
            if !out.isEmpty { t.responder.write(out) }
        } else if isLast {
            t.responder.respond(status: 200, headers: [("content-type", jsonType)], body: output)
            return succeed(t)
        }
        let queued = pd.queued
        pd.queued = []
        for (kind, payload) in queued {
            // a retry in the queue starts a new incarnation; what follows it is stale
            guard !t.finished, pd.firstFrameDone else { break }
            decodeFrame(t, pd, kind, payload)
        }
    }

    static func frames(_ bytes: [UInt8], delimiter: [UInt8]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = 0, i = 0
        while i + delimiter.count <= bytes.count {
            if bytes[i..<(i + delimiter.count)].elementsEqual(delimiter) {
                out.append(Array(bytes[start..<(i + delimiter.count)]))
                i += delimiter.count
                start = i
            } else {
                i += 1
            }
        }
        if start < bytes.count { out.append(Array(bytes[start...])) }
        return out
    }

    func succeed(_ t: TrackedRequest) {
        metrics.reply(dialect: t.dialect, status: 200)
        complete(t, success: true)
    }

    /// Before the first byte, another P — or, when P could not reach its D, another D — (DECISIONS 10), up to
    /// `max_retry` times.
    func retryElsewhere(_ t: TrackedRequest, _ pd: PDState, excludeDecode: Bool = false, giveUp: @escaping () -> Void) {
        pd.pAttempts += 1
        guard pd.pAttempts <= config.exceptions.maxRetry, !t.responder.isStreaming, let p = pd.prefill, let d = pd.decode else {
            return giveUp()
        }
        metrics.retries.increment()
        t.retries += 1
        logger.debug("PD retry elsewhere", metadata: ["req": "\(t.idString)", "excluded": "\(excludeDecode ? d.info.id : p.info.id)"])
        if excludeDecode { pd.excludedD.insert(d.info.id) } else { pd.excludedP.insert(p.info.id) }
        pd.giveUp = giveUp
        releasePD(t, pd)
        pd.prefill = nil
        pd.decode = nil
        // frames the old D sent for this incarnation must not reach the client with the next one
        pd.queued = []
        pd.decodeStarted = false
        registry.assign(t.id, toAll: [])
        // dispatch cancelled the schedule timeout: a retry that finds no place must still end
        armScheduleTimeout(t, pd)
        schedulePD(t)
    }

    /// A MindIE error body (`{"error":"<text>","error_type":"<type>"}`) as a ``GatewayError``; nil for other bodies.
    static func instanceError(status: Int, body: [UInt8]) -> GatewayError? {
        guard let j = try? JSON.parse(body, maxDepth: 4), let message = j["error"]?.stringValue else { return nil }
        return GatewayError(status: status, message: message, tgiErrorType: j["error_type"]?.stringValue)
    }

    /// A recompute POST failed: the same P again after 1 s, until the counter passes `max_retry`.
    func resendRecompute(_ t: TrackedRequest, _ pd: PDState) {
        pd.retryCount += 1
        guard pd.retryCount <= config.exceptions.maxRetry else { return fail(t, .retryFailed, result: .upstreamError) }
        metrics.retries.increment()
        t.retries += 1
        pd.retryTimer = t.responder.loop.schedule(afterMilliseconds: 1000) { [unowned self] in self.sendToP(t) }
    }

    // MARK: - D frames

    /// A frame from D `from`'s link, for request `id` (link loop → the request's loop).
    func deliverDecodeFrame(reqId: String, from d: InstanceID, kind: DFrameKind, payload: [UInt8]) {
        guard let id = UInt64(reqId), let handle = registry.handle(id) else { return }
        handle.loop.execute { [self] in
            let t = handle.request
            guard !t.finished, let pd = t.pd, pd.decode?.info.id == d else { return }
            if !pd.firstFrameDone {
                pd.queued.append((kind, payload))
                return
            }
            // frames queued before P's reply go out in one burst: only live frames time the gaps
            if kind == .data || kind == .lastData, !payload.isEmpty, let d = pd.decode { self.noteFrame(pd, from: d) }
            self.decodeFrame(t, pd, kind, payload)
        }
    }

    func decodeFrame(_ t: TrackedRequest, _ pd: PDState, _ kind: DFrameKind, _ payload: [UInt8]) {
        var payload = payload
        if t.dialect == .vllm, t.stream, kind == .data || kind == .lastData, !payload.isEmpty, payload.last != 0 {
            payload.append(0) // the NUL that ended the vLLM frame also ended the message
        }
        if kind == .data || kind == .lastData, !pd.decodeStarted {
            pd.decodeStarted = true
            // P's output already opened the chat stream with the role chunk; D's own would be a second one
            if t.stream, t.dialect == .openAI { payload = Self.droppingRoleChunk(payload) }
            if payload.isEmpty, kind == .data { return }
        }
        switch kind {
        case .data:
            guard !payload.isEmpty else { return }
            t.messagesOut += 1
            if !t.responder.isStreaming {
                t.responder.startStream(status: 200, headers: [("content-type", t.stream ? sseType : jsonType)])
                t.headSent = true
            }
            t.responder.write(payload)
            watchClientBuffer(t, pd)
        case .lastData:
            // a chat stream's separate `[DONE]` message carries no token
            if !payload.isEmpty, !(t.stream && Self.isDoneOnly(payload)) { t.messagesOut += 1 }
            if t.responder.isStreaming || t.stream {
                if !t.responder.isStreaming {
                    t.responder.startStream(status: 200, headers: [("content-type", sseType)])
                    t.headSent = true
                }
                if !payload.isEmpty { t.responder.write(payload) }
                if t.stream, t.dialect == .openAI, pd.endTimer == nil, !String(decoding: payload, as: UTF8.self).contains("[DONE]") {
                    // a chat stream's last step comes as two lastData messages: the finish chunk, then [DONE]
                    pd.endTimer = t.responder.loop.schedule(afterMilliseconds: 200) { [unowned self] in self.endStream(t) }
                    return
                }
                endStream(t)
            } else {
                t.responder.respond(status: 200, headers: [("content-type", jsonType)], body: payload)
                succeed(t)
            }
        case .error:
            metrics.upstreamErrors.increment()
            fail(t, GatewayError(status: 500, message: String(decoding: payload, as: UTF8.self)), result: .upstreamError)
        case .retry:
            recompute(t, pd, body: payload)
        }
    }

    /// `payload` without a leading OpenAI chat chunk that only announces the role
    /// (`delta:{"role":"assistant","content":""}`), so a PD stream shows exactly one, as a single node's does.
    static func droppingRoleChunk(_ payload: [UInt8]) -> [UInt8] {
        guard let first = frames(payload, delimiter: [10, 10]).first, isRoleOnlyChunk(first) else { return payload }
        return Array(payload[first.count...])
    }

    /// `data: [DONE]` alone (blank lines around it allowed).
    static func isDoneOnly(_ payload: [UInt8]) -> Bool {
        let trimmed = payload.drop(while: { $0 == 10 || $0 == 13 || $0 == 32 }).reversed().drop(while: { $0 == 10 || $0 == 13 || $0 == 32 || $0 == 0 })
        return trimmed.reversed().elementsEqual(Array("data: [DONE]".utf8))
    }

    static func isRoleOnlyChunk(_ frame: [UInt8]) -> Bool {
        let prefix = Array("data:".utf8)
        guard frame.starts(with: prefix) else { return false }
        guard let j = try? JSON.parse(Array(frame.dropFirst(prefix.count)), maxDepth: 8),
              let choices = j["choices"]?.arrayValue, choices.count == 1,
              choices[0]["finish_reason"].map({ $0 == .null }) ?? true,
              let delta = choices[0]["delta"]?.objectValue, delta.contains(where: { $0.0 == "role" }) else { return false }
        return delta.allSatisfy { key, value in key == "role" || (key == "content" && (value == .null || value.stringValue == "")) }
    }

    /// The `/dresult` link is shared and never waits for one client: a stream whose client leaves more than
    /// ``clientBufferBytes`` unsent for ``slowClientTimeoutMilliseconds`` (or 4× that many bytes at all) is failed
    /// with an in-stream error and its D work stopped, so one slow reader cannot hold unbounded memory.
    func watchClientBuffer(_ t: TrackedRequest, _ pd: PDState) {
        let pending = t.responder.pendingBytes
        guard pending > clientBufferBytes else {
            pd.slowTimer?.cancel()
            pd.slowTimer = nil
            return
        }
        if pending > 4 * clientBufferBytes { return dropSlowClient(t, pd) }
        guard pd.slowTimer == nil else { return }
        pd.slowTimer = t.responder.loop.schedule(afterMilliseconds: slowClientTimeoutMilliseconds) { [unowned self] in
            pd.slowTimer = nil
            guard !t.finished, t.responder.pendingBytes > self.clientBufferBytes else { return }
            self.dropSlowClient(t, pd)
        }
    }

    func dropSlowClient(_ t: TrackedRequest, _ pd: PDState) {
        guard !t.finished else { return }
        logger.warning("PD stream dropped: client too slow", metadata: ["req": "\(t.idString)", "unsent": "\(t.responder.pendingBytes)"])
        metrics.timeouts.increment()
        stopInferPD(t, pd)
        fail(t, .clientTooSlow(bytes: clientBufferBytes), result: .timeout)
    }

    func endStream(_ t: TrackedRequest) {
        guard !t.finished else { return }
        t.responder.end()
        succeed(t)
    }

    /// `retry:<body>` (§4.2 step 6): booking released, re-scheduled under the same id with D's body.
    func recompute(_ t: TrackedRequest, _ pd: PDState, body: [UInt8]) {
        metrics.retries.increment()
        t.retries += 1
        pd.pCall?.cancel()
        pd.pCall = nil
        releasePD(t, pd)
        pd.prefill = nil
        pd.decode = nil
        pd.firstFrameDone = false
        pd.queued = []
        pd.decodeStarted = false
        pd.body = body
        pd.recompute = true
        pd.retryCount = 0
        pd.excludedP = []
        pd.excludedD = []
        pd.giveUp = nil
        registry.assign(t.id, toAll: [])
        armScheduleTimeout(t, pd)
        schedulePD(t)
    }

    /// Releases the load counters and the DIGS booking the request holds.
    func releasePD(_ t: TrackedRequest, _ pd: PDState) {
        if let p = pd.prefill, pd.prefillHeld {
            pd.prefillHeld = false
            release(p)
        }
        if let d = pd.decode, pd.decodeHeld {
            pd.decodeHeld = false
            release(d)
        }
        releaseBooking(t)
    }

    func releaseBooking(_ t: TrackedRequest) {
        guard t.digsBooked else { return }
        t.digsBooked = false
        digs.withLock { $0?.finish(t.id) }
        digsPass()
    }

    // MARK: - ends

    /// A PD request ends with an error: its own status before the head, an in-stream error event after it.
    func failPD(_ t: TrackedRequest, _ pd: PDState, _ error: GatewayError) {
        t.errorMessage = error.message
        pd.pCall?.cancel()
        pd.pCall = nil
        metrics.reply(dialect: t.dialect, status: error.status)
        live.errors.record(status: error.status, message: error.message, instance: (pd.decode ?? pd.prefill)?.info.id)
        if t.responder.isStreaming {
            t.responder.write(error.streamErrorEvent(dialect: t.dialect, stream: t.stream))
            t.responder.end()
        } else {
            t.responder.respond(status: error.status, headers: [("content-type", GatewayError.contentType)], body: error.body(dialect: t.dialect))
        }
        complete(t, success: false)
    }

    /// stopInfer to P and then D (§4.3; DECISIONS 7, 8).
    func stopInferPD(_ t: TrackedRequest, _ pd: PDState) {
        if let p = pd.prefill { sendStopInfer(t, to: p) }
        if let d = pd.decode { sendStopInfer(t, to: d) }
    }

    // MARK: - /dresult links (on the link loop)

    /// Opens `link`; `opened` reports the first outcome. Later losses relink (§4.3).
    func openLink(_ link: DResultLink, opened: ((Bool) -> Void)? = nil) {
        let req = HTTPClientRequest(method: "GET", host: link.ip, port: link.port, path: "/dresult",
                                    headers: [("user-agent", config.http.userAgent)], timeoutMilliseconds: 30_000)
        var ok = false
        var reported = false
        link.parser = DResultParser()
        let id = link.instance
        let settled = { [weak self] in
            guard let self, !reported else { return }
            reported = true
            self.logger.debug("/dresult link open", metadata: ["instance": "\(id)", "head": "\(ok)"])
            link.open = true
            link.relinkAttempts = 0
            _ = self.unlinked.withLock { $0.remove(id) }
            opened?(true)
        }
        link.call = sideClient.stream(req, on: linkLoop, onHead: { status, _ in
            guard status == 200 else { return }
            ok = true
            settled()
        }, onBody: { [weak self] bytes in
            guard let self, ok, link.call != nil else { return }
            for event in link.parser.feed(bytes) {
                switch event {
                case .frame(let reqId, let kind, let payload):
                    self.deliverDecodeFrame(reqId: reqId, from: id, kind: kind, payload: payload)
                case .close:
                    // never cancel a call inside its own callback (the C side frees it on return):
                    // drop it on the next turn of the loop
                    let call = link.call
                    link.call = nil
                    let box = LoopBound(link, on: self.linkLoop)
                    self.linkLoop.schedule(afterMilliseconds: 0) { call?.cancel(); _ = box }
                    ok = false
                    self.linkLost(link, why: "close message")
                    return
                }
            }
        }, onEnd: { [weak self] err in
            guard let self else { return }
            if link.call == nil && !ok && reported { return } // already handled (close message)
            link.call = nil
            if !reported {
                self.logger.debug("/dresult link not opened", metadata: ["instance": "\(id)", "error": "\(String(describing: err))"])
                reported = true
                if let opened { opened(false) } else { self.relinkFailed(link) }
                return
            }
            self.linkLost(link, why: err.map { "\($0)" } ?? "link ended")
        })
        // A D may hold the response head until its first message (a heartbeat comes after 5 s idle): a link that
        // neither failed nor was refused within 300 ms counts as open; a later failure is a link loss.
        // A relink must see the head (or a message): a D that accepts but never answers is not back.
        let call = link.call
        let relink = opened == nil
        linkLoop.schedule(afterMilliseconds: relink ? linkHeadTimeoutMilliseconds : 300) { [weak self] in
            guard let self, link.call === call, let call, !reported else { return }
            if !relink { return settled() }
            reported = true
            link.call = nil
            call.cancel()
            self.logger.debug("/dresult relink got no answer", metadata: ["instance": "\(id)"])
            self.relinkFailed(link)
        }
    }

    func linkLost(_ link: DResultLink, why: String) {
        guard !link.closed, !isShutDown.load(ordering: .relaxed) else { return }
        logger.warning("/dresult link lost", metadata: ["instance": "\(link.instance)", "why": "\(why)"])
        let dID = link.instance
        _ = unlinked.withLock { $0.insert(dID) }
        // their results cannot arrive any more: fail them now (DECISIONS 9, 11) rather than let them stall
        for handle in registry.handles(on: [link.instance]) {
            handle.loop.execute { [self] in
                guard let pd = handle.request.pd, pd.decode?.info.id == dID else { return }
                self.fail(handle.request, .decodeLinkLost, result: .upstreamError)
            }
        }
        relinkFailed(link, first: true)
    }

    /// Schedules the next relink, or gives the D up after `max_retry` attempts.
    func relinkFailed(_ link: DResultLink, first: Bool = false) {
        guard !link.closed, !isShutDown.load(ordering: .relaxed) else { return }
        if !first { link.relinkAttempts += 1 }
        guard link.relinkAttempts < config.exceptions.maxRetry else { return markFaulty(link) }
        let box = LoopBound(link, on: linkLoop)
        link.relinkTimer = linkLoop.schedule(afterMilliseconds: first ? 200 : 500) { [weak self] in
            guard let self, !box.value.closed else { return }
            box.value.relinkTimer = nil
            self.logger.debug("/dresult relink", metadata: ["instance": "\(box.value.instance)", "attempt": "\(box.value.relinkAttempts + 1)"])
            self.openLink(box.value)
        }
    }

    /// The D and every instance sharing its virtual_id are removed and kept out for 2 minutes (§4.3).
    func markFaulty(_ link: DResultLink) {
        link.close()
        links[link.instance] = nil
        let until = DispatchTime.now().uptimeNanoseconds + 120 * 1_000_000_000
        faultyIDs[link.instance] = until
        if link.virtualID != 0 { faultyVirtualIDs[link.virtualID] = until }
        let old = cluster.view
        let keep = old.snapshot.instances.compactMap { info -> InstanceEntry? in
            guard let e = old.entries[info.id] else { return nil }
            return isFaulty(id: info.id, virtualID: e.virtualID) ? nil : e
        }
        let removed = Set(old.entries.keys).subtracting(keep.map(\.info.id))
        let view = ClusterView(entries: keep, initialized: old.initialized, deployPD: old.deployPD)
        cluster.replace(view)
        noteRemoved(old: old, new: view, reason: "faulty: its /dresult link could not be restored")
        _ = unlinked.withLock { $0.remove(link.instance) }
        for id in removed where id != link.instance { links.removeValue(forKey: id)?.close() }
        logger.error("D instance marked faulty for 2 minutes", metadata: ["instance": "\(link.instance)", "removed": "\(removed.sorted())"])
        for handle in registry.handles(on: removed) {
            handle.loop.execute { [self] in self.fail(handle.request, .instanceRemoved, result: .upstreamError) }
        }
    }

    func isFaulty(id: InstanceID, virtualID: UInt64) -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        if let t = faultyIDs[id], t > now { return true }
        if virtualID != 0, let t = faultyVirtualIDs[virtualID], t > now { return true }
        return false
    }
}
