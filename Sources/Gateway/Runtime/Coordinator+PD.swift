import Foundation
import Logging
import MSCore

/// The PD state of one request (docs/wire/coordinator.md §4.2): its ``PDLifecycle`` and what executing it needs
/// (P's call, the armed timers, a clock reading). Loop-bound like its ``TrackedRequest``.
final class PDState {
    typealias Lifecycle = PDLifecycle<InstanceEntry>
    /// Path and query, forwarded to P unchanged.
    let target: String
    /// The client's headers that go to P (hop-by-hop and PD headers removed).
    let headers: [(String, String)]
    let features: RequestFeatures
    var lifecycle: Lifecycle
    var pCall: ClientCall?
    var timers: [LifecycleTimer: LoopTimer] = [:]
    /// Uptime (ns) of the last result relayed to the client (the status page's inter-token latency).
    var lastFrameNanos: UInt64 = 0

    var prefill: InstanceEntry? { lifecycle.prefill }
    var decode: InstanceEntry? { lifecycle.decode }

    init(target: String, headers: [(String, String)], body: [UInt8], features: RequestFeatures, settings: Lifecycle.Settings) {
        self.target = target
        self.headers = headers
        self.features = features
        self.lifecycle = Lifecycle(settings: settings, body: body)
    }

    func cancelTimers() {
        for t in timers.values { t.cancel() }
        timers.removeAll()
    }
}

/// Headers the Coordinator never forwards to P (hop-by-hop, or its own PD headers).
private let droppedHeaders: Set<String> = [
    "host", "content-length", "connection", "transfer-encoding", "keep-alive", "te", "upgrade", "expect",
    "req-type", "req-id", "d-target", "d-port", "is-recompute",
]

extension GatewayError {
    /// In-flight requests of a D whose `/dresult` link broke (their results cannot arrive).
    static let decodeLinkLost = GatewayError(status: 500, message: "Decode result link to D instance lost")
    /// A PD stream whose client left too many bytes unread for too long (its D work is stopped).
    static func clientTooSlow(bytes: Int) -> GatewayError {
        GatewayError(status: 408, message: "Client reads too slowly: more than \(bytes) bytes of the stream unsent")
    }
}

/// Executes the PD lifecycle's actions (loop thread of the request).
extension Coordinator {
    var usesDIGS: Bool { config.scheduler.algorithm == .loadBalance }

    /// The view PD scheduling uses: without the D's whose `/dresult` link is down.
    func schedulingView() -> ClusterView {
        let v = cluster.routableView()
        let ex = unlinked.withLock { $0 }
        return ex.isEmpty ? v : v.without(ex)
    }

    func startPD(_ t: TrackedRequest, _ req: HTTPRequest, target: String, features: RequestFeatures) {
        let headers = req.headers.all.filter { !droppedHeaders.contains($0.name.lowercased()) }.map { ($0.name, $0.value) }
        let settings = PDState.Lifecycle.Settings(requestID: t.idString, stream: t.stream, dialect: t.dialect,
                                                  maxRetry: config.exceptions.maxRetry, clientBufferBytes: clientBufferBytes)
        let pd = PDState(target: target, headers: headers + t.traceHeaders, body: req.body, features: features, settings: settings)
        t.pd = pd
        run(t, pd, .start)
    }

    /// Feeds `event` to the request's lifecycle and executes what it returns.
    func run(_ t: TrackedRequest, _ pd: PDState, _ event: PDState.Lifecycle.Event) {
        guard !t.finished, t.pd === pd else { return }
        execute(t, pd, pd.lifecycle.handle(event))
    }

    private func execute(_ t: TrackedRequest, _ pd: PDState, _ actions: [PDState.Lifecycle.Action]) {
        for action in actions {
            // an action ended the request (or handed it off): what the lifecycle planned after it is moot
            guard !t.finished, t.pd === pd else { return }
            perform(t, pd, action)
        }
    }

    private func perform(_ t: TrackedRequest, _ pd: PDState, _ action: PDState.Lifecycle.Action) {
        switch action {
        case .schedule(let excludedP, let excludedD, let giveUpIfNone):
            schedulePD(t, pd, excludedP: excludedP, excludedD: excludedD, giveUpIfNone: giveUpIfNone)
        case .handOff(let p, let d):
            // flex self-pair (§4.2 step 7): the single-node relay, with the PD headers
            // the proxy forwards the client's own headers and adds req-id; only the other PD headers are added here
            let own = Set(["req-type", "d-target", "d-port", "is-recompute"])
            let headers = pdHeaders(t, pd, d).suffix(5).filter { own.contains($0.0) }
            t.single.extraHeaders = Array(headers)
            t.pd = nil
            run(t, .handedOff(p))
        case .hold(let p, let d):
            p.load.inFlight.add(1, ordering: .relaxed)
            d.load.inFlight.add(1, ordering: .relaxed)
            let now = DispatchTime.now().uptimeNanoseconds
            p.load.stats.dispatched.add(now: now)
            d.load.stats.dispatched.add(now: now)
            registry.assign(t.id, toAll: [p.info.id, d.info.id])
        case .sendToP(let p, let d, _):
            sendToP(t, pd, p, d)
        case .cancelPCall:
            pd.pCall?.cancel()
            pd.pCall = nil
        case .noteHealth(let i, let ok):
            if ok { noteSuccess(i) } else { noteFailure(i) }
        case .release(let i):
            release(i)
        case .releaseBooking:
            releaseBooking(t)
        case .releasePrefillBooking:
            if t.digsBooked {
                digs.withLock { $0?.releasePrefill(t.id) }
                digsPass()
            }
        case .assign(let ids):
            registry.assign(t.id, toAll: ids)
        case .markFrameTime:
            pd.lastFrameNanos = DispatchTime.now().uptimeNanoseconds
        case .firstToken(let from):
            t.firstByte = true
            t.firstByteNanos = pd.lastFrameNanos
            metrics.firstByte(since: t.arrivalNanos)
            noteFirstToken(t, from: from)
        case .noteFrame(let d):
            noteFrame(pd, from: d)
        case .count(let counter):
            switch counter {
            case .retry:
                metrics.retries.increment()
                t.retries += 1
            case .upstreamError: metrics.upstreamErrors.increment()
            case .timeout: metrics.timeouts.increment()
            case .cancellation: metrics.cancellations.increment()
            }
        case .countMessage:
            t.messagesOut += 1
        case .startStream(let contentType):
            t.responder.startStream(status: 200, headers: [("content-type", contentType)])
            t.headSent = true
        case .write(let bytes):
            t.responder.write(bytes)
        case .respond(let status, let contentType, let body):
            t.responder.respond(status: status, headers: [("content-type", contentType)], body: body)
        case .end:
            t.responder.end()
        case .succeed:
            metrics.reply(dialect: t.dialect, status: 200)
            complete(t, success: true)
        case .fail(let error):
            failPD(t, pd, error)
        case .relayError(let status, let contentType, let body):
            if t.responder.isStreaming {
                t.responder.write(GatewayError(status: status, message: String(decoding: body, as: UTF8.self))
                    .streamErrorEvent(dialect: t.dialect, stream: t.stream))
                t.responder.end()
            } else {
                t.responder.respond(status: status, headers: [("content-type", contentType)], body: body)
            }
            metrics.reply(dialect: t.dialect, status: status)
            complete(t, success: false)
        case .cancelled:
            complete(t, success: false)
        case .stopInfer(let targets):
            for i in targets { sendStopInfer(t, to: i) }
        case .arm(let timer):
            arm(t, pd, timer)
        case .cancel(let timer):
            pd.timers.removeValue(forKey: timer)?.cancel()
        case .checkClientBacklog:
            run(t, pd, .clientBacklog(t.responder.pendingBytes))
        case .log(let line):
            var metadata: Logger.Metadata = ["req": "\(t.idString)"]
            for (k, v) in line.metadata { metadata[k] = "\(v)" }
            switch line.level {
            case .debug: logger.debug("\(line.message)", metadata: metadata)
            case .warning: logger.warning("\(line.message)", metadata: metadata)
            }
        }
    }

    private func arm(_ t: TrackedRequest, _ pd: PDState, _ timer: LifecycleTimer) {
        let milliseconds = timer == .pHead && pd.pCall == nil ? 0 : timerMilliseconds(t, timer)
        pd.timers.removeValue(forKey: timer)?.cancel()
        guard milliseconds > 0 else { return }
        pd.timers[timer] = t.responder.loop.schedule(afterMilliseconds: milliseconds) { [unowned self] in
            pd.timers[timer] = nil
            guard !t.finished else { return }
            if timer == .slowClient {
                self.run(t, pd, .slowClientTimer(pending: t.responder.pendingBytes))
            } else {
                self.run(t, pd, .timer(timer))
            }
        }
    }

    // MARK: - schedule

    private func schedulePD(_ t: TrackedRequest, _ pd: PDState, excludedP: Set<InstanceID>, excludedD: Set<InstanceID>, giveUpIfNone: Bool) {
        let excluded = excludedP.union(excludedD)
        if usesDIGS {
            if giveUpIfNone, !Self.hasPair(schedulingView().snapshot, excludedP: excludedP, excludedD: excludedD) {
                // nothing left to retry on: DIGS would keep it queued until a timeout
                return run(t, pd, .unplaceable)
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
            return run(t, pd, .placed(p: pe, d: de))
        }
        run(t, pd, .unplaceable)
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
                if let pd = t.pd { self.run(t, pd, .placed(p: pe, d: de)) }
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

    func releaseBooking(_ t: TrackedRequest) {
        guard t.digsBooked else { return }
        t.digsBooked = false
        digs.withLock { $0?.finish(t.id) }
        digsPass()
    }

    // MARK: - P

    func pdHeaders(_ t: TrackedRequest, _ pd: PDState, _ d: InstanceEntry) -> [(String, String)] {
        let target = config.scheduler.deployMode == .pdDisaggregationSingleContainer ? "\(d.ip);\(d.interCommPort)" : d.ip
        var h = pd.headers
        h.append(("req-type", "prefill"))
        h.append(("req-id", t.idString))
        h.append(("d-target", target))
        h.append(("d-port", String(d.port)))
        if pd.lifecycle.recompute { h.append(("is-recompute", "true")) }
        return h
    }

    private func sendToP(_ t: TrackedRequest, _ pd: PDState, _ p: InstanceEntry, _ d: InstanceEntry) {
        let req = HTTPClientRequest(method: "POST", host: p.ip, port: p.port, path: pd.target, headers: pdHeaders(t, pd, d),
                                    body: pd.lifecycle.body, timeoutMilliseconds: UInt64(max(config.exceptions.inferTimeout, 600)) * 1000)
        var status = 0
        var contentType = "application/json"
        var body: [UInt8] = []
        pd.pCall = sideClient.stream(req, on: t.responder.loop, onHead: { [unowned self] s, h in
            status = s
            if let ct = h["content-type"] { contentType = ct }
            self.run(t, pd, .pHead)
        }, onBody: { body += $0 }, onEnd: { [unowned self] err in
            pd.pCall = nil
            let reply: PDState.Lifecycle.PReply = err.map { .failed($0) } ?? .answered(status: status, contentType: contentType, body: body)
            self.run(t, pd, .pEnded(from: p, reply))
        })
    }

    /// A MindIE error body (`{"error":"<text>","error_type":"<type>"}`) as a ``GatewayError``; nil for other bodies.
    static func instanceError(status: Int, body: [UInt8]) -> GatewayError? {
        PDState.Lifecycle.instanceError(status: status, body: body)
    }

    static func frames(_ bytes: [UInt8], delimiter: [UInt8]) -> [[UInt8]] {
        PDFraming.frames(bytes, delimiter: delimiter)
    }

    // MARK: - ends

    /// A PD request ends with an error: its own status before the head, an in-stream error event after it.
    private func failPD(_ t: TrackedRequest, _ pd: PDState, _ error: GatewayError) {
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

    /// The bookkeeping end of a PD request (from ``complete(_:success:)``): the timers, P's call, and what it holds.
    func completePD(_ t: TrackedRequest, _ pd: PDState) {
        pd.cancelTimers()
        for action in pd.lifecycle.handle(.completed) { perform(t, pd, action) }
    }

    // MARK: - D frames

    /// A frame from D `from`'s link, for request `id` (link loop → the request's loop).
    func deliverDecodeFrame(reqId: String, from d: InstanceID, kind: DFrameKind, payload: [UInt8]) {
        guard let id = UInt64(reqId), let handle = registry.handle(id) else { return }
        handle.loop.execute { [self] in
            let t = handle.request
            guard let pd = t.pd else { return }
            self.run(t, pd, .decodeFrame(from: d, kind, payload))
        }
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
                    let box = LinkBox(link: link)
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
        let box = LinkBox(link: link)
        link.relinkTimer = linkLoop.schedule(afterMilliseconds: first ? 200 : 500) { [weak self] in
            guard let self, !box.link.closed else { return }
            box.link.relinkTimer = nil
            self.logger.debug("/dresult relink", metadata: ["instance": "\(box.link.instance)", "attempt": "\(box.link.relinkAttempts + 1)"])
            self.openLink(box.link)
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
