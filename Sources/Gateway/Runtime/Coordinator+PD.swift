import Foundation
import Metrics
import MSCore
import Synchronization

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
    var timers = ArmedTimers()
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

    func cancelTimers() { timers.cancelAll() }
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
            count(t, counter)
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
        case .arm(.scheduleRetry):
            // default_scheduler semantics: no timer, the request waits for capacity to be released
            waitForCapacity(t, seen: t.capacitySeen) { [unowned self] t in
                if let pd = t.pd { self.run(t, pd, .timer(.scheduleRetry)) }
            }
        case .cancel(.scheduleRetry):
            cluster.capacity.remove(t.id)
        case .arm(let timer):
            arm(t, pd, timer)
        case .cancel(let timer):
            pd.timers.take(timer)?.cancel()
        case .checkClientBacklog:
            run(t, pd, .clientBacklog(t.responder.pendingBytes))
        case .log(let line):
            log(t, line)
        }
    }

    private func arm(_ t: TrackedRequest, _ pd: PDState, _ timer: LifecycleTimer) {
        let milliseconds = timer == .pHead && pd.pCall == nil ? 0 : timerMilliseconds(t, timer)
        pd.timers.take(timer)?.cancel()
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
        t.capacitySeen = cluster.capacity.generation
        var view = schedulingView()
        if !excluded.isEmpty { view = view.without(excluded) }
        if let d = scheduler.select(pd.features, snapshot: view.snapshot, load: view.load(), on: t.responder.loop),
           case .pair(let p, let dd) = d, let pe = view.entries[p], let de = view.entries[dd] {
            metrics.scheduled.increment()
            return run(t, pd, .placed(p: pe, d: de))
        }
        run(t, pd, .unplaceable)
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
}
