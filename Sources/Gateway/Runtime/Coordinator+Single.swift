import Foundation
import Metrics
import MSCore
import Synchronization

/// A relayed request's ``SingleLifecycle`` and what executing it needs. Loop-bound like its ``TrackedRequest``.
struct SingleState {
    var lifecycle = SingleLifecycle<InstanceEntry>()
    var timers = ArmedTimers()
    /// What the scheduler places by.
    var features = RequestFeatures(dialect: .openAI)
    /// A flex self-pair's PD headers (§4.2 step 7).
    var extraHeaders: [(String, String)] = []

    mutating func cancelTimers() { timers.cancelAll() }
}

/// A request's armed timers, one slot per ``LifecycleTimer``: a request arms a few at most, and fixed slots cost
/// no hashing and no allocation per arm (a dictionary here was ~3% of a small request's CPU).
struct ArmedTimers {
    private var slots = InlineArray<9, LoopTimer?>(repeating: nil)

    init() {
        assert(LifecycleTimer.allCases.count == slots.count, "a LifecycleTimer without a slot")
    }

    subscript(timer: LifecycleTimer) -> LoopTimer? {
        get { slots[timer.rawValue] }
        set { slots[timer.rawValue] = newValue }
    }

    /// Removes `timer`'s slot, returning what was armed there.
    mutating func take(_ timer: LifecycleTimer) -> LoopTimer? {
        let armed = slots[timer.rawValue]
        slots[timer.rawValue] = nil
        return armed
    }

    mutating func cancelAll() {
        for i in slots.indices {
            slots[i]?.cancel()
            slots[i] = nil
        }
    }
}

/// Executes the single-node lifecycle's actions (loop thread of the request): single node, the tokenizer, PD
/// pass-through routes and flex self-pairs.
extension Coordinator {
    typealias Single = SingleLifecycle<InstanceEntry>

    /// Feeds `event` to the request's lifecycle and executes what it returns.
    func run(_ t: TrackedRequest, _ event: Single.Event) {
        guard !t.finished else { return }
        execute(t, t.single.lifecycle.handle(event))
    }

    private func execute(_ t: TrackedRequest, _ actions: [Single.Action]) {
        for action in actions {
            // an action ended the request: what the lifecycle planned after it is moot
            guard !t.finished else { return }
            perform(t, action)
        }
    }

    /// The bookkeeping end of a relayed request (from ``complete(_:success:)``): its timers and what it holds.
    func completeSingle(_ t: TrackedRequest) {
        t.single.cancelTimers()
        for action in t.single.lifecycle.handle(.completed) { perform(t, action) }
    }

    private func perform(_ t: TrackedRequest, _ action: Single.Action) {
        switch action {
        case .schedule:
            t.capacitySeen = cluster.capacity.generation
            let view = cluster.routableView()
            if let decision = scheduler.select(t.single.features, snapshot: view.snapshot, load: view.load(), on: t.responder.loop),
               case .single(let id) = decision, let entry = view.entries[id] {
                metrics.scheduled.increment()
                return run(t, .placed(entry))
            }
            run(t, .unplaceable)
        case .take(let entry):
            entry.load.inFlight.add(1, ordering: .relaxed)
            entry.load.stats.dispatched.add(now: DispatchTime.now().uptimeNanoseconds)
            registry.assign(t.id, to: entry.info.id)
        case .relay(let entry, _):
            relay(t, to: entry)
        case .relayTokenizer(let entry):
            t.responder.proxy(to: entry.upstream, options: ProxyOptions(extraHeaders: [("req-id", t.idString)] + t.traceHeaders,
                                                                        clientBufferBytes: config.http.relayBufferBytes,
                                                                        errorReply: Self.errorReply(t.dialect)),
                              head: { [unowned self] status in
                                  t.headSent = true
                                  t.status = status
                                  self.run(t, .head(status: status))
                              },
                              finish: { [unowned self] outcome in self.proxyFinished(t, outcome) })
        case .reschedule(let excluded):
            let view = cluster.routableView().without(excluded)
            guard let d = scheduler.select(RequestFeatures(dialect: t.dialect ?? .openAI), snapshot: view.snapshot, load: view.load(),
                                           on: t.responder.loop),
                  case .single(let id) = d, let next = view.entries[id] else { return run(t, .rescheduled(nil)) }
            run(t, .rescheduled(next))
        case .noteHealth(let entry, let ok):
            if ok { noteSuccess(entry) } else { noteFailure(entry) }
        case .count(let counter):
            count(t, counter)
        case .firstToken(let from):
            t.firstByte = true
            t.firstByteNanos = DispatchTime.now().uptimeNanoseconds
            metrics.firstByte(since: t.arrivalNanos)
            noteFirstToken(t, from: from)
        case .stopInfer(let entry):
            sendStopInfer(t, to: entry)
        case .arm(.scheduleRetry):
            // default_scheduler semantics: no timer, the request waits for capacity to be released
            waitForCapacity(t, seen: t.capacitySeen) { [unowned self] t in self.run(t, .timer(.scheduleRetry)) }
        case .cancel(.scheduleRetry):
            cluster.capacity.remove(t.id)
        case .arm(let timer):
            t.single.timers.take(timer)?.cancel()
            let milliseconds = timerMilliseconds(t, timer)
            guard milliseconds > 0 else { return }
            t.single.timers[timer] = t.responder.loop.schedule(afterMilliseconds: milliseconds) { [unowned self] in
                t.single.timers[timer] = nil
                self.run(t, .timer(timer))
            }
        case .cancel(let timer):
            t.single.timers.take(timer)?.cancel()
        case .abortRelay(let error, let result):
            let body = t.headSent ? error.streamErrorEvent(dialect: t.dialect, stream: t.stream) : error.body(dialect: t.dialect)
            t.errorMessage = error.message
            // the abort's reply or in-stream error is the proxy's, not the responder's: counted here
            if !t.headSent { t.status = error.status }
            t.proxyBytes += UInt64(body.count)
            t.errorNoted = true
            live.errors.record(status: error.status, message: error.message, instance: t.instance?.info.id)
            // the proxy answers; its finish hook comes after the request's end
            t.responder.abortProxy(status: error.status, headers: [("content-type", GatewayError.contentType)], body: body, result: result)
            complete(t, success: false)
        case .reply(let error):
            t.errorMessage = error.message
            reply(t.responder, error, dialect: t.dialect, instance: t.instance?.info.id)
            complete(t, success: false)
        case .complete(let success):
            complete(t, success: success)
        case .release(let entry):
            release(entry)
        case .log(let line):
            log(t, line)
        }
    }

    /// How long `timer` runs, from the config; 0 leaves it off. The request timeouts run from arrival.
    func timerMilliseconds(_ t: TrackedRequest, _ timer: LifecycleTimer) -> UInt64 {
        let ex = config.exceptions
        func fromArrival(_ seconds: Int) -> UInt64 {
            guard seconds > 0 else { return 0 }
            let elapsed = Int((DispatchTime.now().uptimeNanoseconds - t.arrivalNanos) / 1_000_000_000)
            return UInt64(max(seconds - elapsed, 1)) * 1000
        }
        return switch timer {
        case .schedule: UInt64(max(effectiveScheduleTimeout, 0)) * 1000
        case .scheduleRetry: 10
        case .pHead: UInt64(max(config.health.firstByteTimeoutMs, 0))
        case .resend: 1000
        case .firstToken: fromArrival(ex.firstTokenTimeout)
        case .infer: fromArrival(ex.inferTimeout)
        case .tokenizer: UInt64(max(ex.tokenizerTimeout, 0)) * 1000
        case .end: 200
        case .slowClient: slowClientTimeoutMilliseconds
        }
    }

    func release(_ entry: InstanceEntry) {
        entry.load.inFlight.subtract(1, ordering: .relaxed)
    }

    private func relay(_ t: TrackedRequest, to entry: InstanceEntry) {
        let errorTail = Self.readFailedTail(dialect: t.dialect, stream: t.stream)
        let maxAttempts = config.exceptions.maxRetry + 1
        t.responder.proxy(
            to: entry.upstream,
            options: ProxyOptions(extraHeaders: [("req-id", t.idString)] + t.traceHeaders + t.single.extraHeaders, errorTail: errorTail,
                                  clientBufferBytes: config.http.relayBufferBytes, errorReply: Self.errorReply(t.dialect),
                                  connectTimeoutMilliseconds: UInt64(config.health.connectTimeoutMs),
                                  // a non-streamed reply's head comes with the whole answer: only streams get one
                                  headTimeoutMilliseconds: t.stream ? UInt64(config.health.firstByteTimeoutMs) : 0),
            retry: { [unowned self] attempt, _, why in
                let transport = if case .transport = why { true } else { false }
                let before = t.instance
                self.run(t, .attemptFailed(attempt: attempt, maxAttempts: maxAttempts, transport: transport, why: "\(why)"))
                guard !t.finished, let next = t.instance, next !== before else { return nil }
                return next.upstream
            },
            head: { [unowned self] status in
                t.headSent = true
                t.status = status
                self.run(t, .head(status: status))
            },
            firstBody: { [unowned self] in self.run(t, .firstBody) },
            finish: { [unowned self] outcome in self.proxyFinished(t, outcome) })
    }
}
