import MSCore

/// The lifecycle of one request relayed whole to one instance (docs/wire/coordinator.md §4.1, §6): single node,
/// the tokenizer, PD pass-through routes and a PD flex self-pair. Like ``PDLifecycle`` it is a value that turns
/// events into actions and does no I/O; the relay itself (bytes, retries before the head) is the proxy's.
struct SingleLifecycle<Instance: LifecycleInstance> {
    enum Event: Equatable, Sendable {
        /// Admitted: arm the schedule timeout and look for an instance.
        case start
        /// The scheduler chose this instance.
        case placed(Instance)
        /// No instance now (default_scheduler: try again until the schedule timeout).
        case unplaceable
        /// A PD flex self-pair, relayed as a single node with the PD headers (§4.2 step 7): never retried
        /// elsewhere, the headers name this instance.
        case handedOff(Instance)
        /// A PD pass-through route goes whole to this instance (nil: none is online).
        case passthrough(Instance?)
        /// A tokenizer request goes to this instance (nil: none).
        case tokenizer(Instance?)
        /// An attempt failed before the response head (`transport`: not an HTTP answer such as a 503). `attempt`
        /// counts from 1; `maxAttempts` is `max_retry`+1; `why` is for the log.
        case attemptFailed(attempt: Int, maxAttempts: Int, transport: Bool, why: String)
        /// The instance chosen for the next attempt (nil: none left).
        case rescheduled(Instance?)
        /// The response head went to the client.
        case head(status: Int)
        /// The first body bytes went to the client.
        case firstBody
        /// The relay ended (`success`: a complete answer below 400).
        case relayEnded(success: Bool)
        case timer(LifecycleTimer)
        case clientGone
        /// Ended with an error (by a timer here, or from outside: a refresh removed the instance).
        case abort(GatewayError, ProxyResult)
        /// The request's bookkeeping end: release what it still holds.
        case completed
    }

    enum Action: Equatable, Sendable {
        /// Choose an instance (the executor reports ``Event/placed(_:)`` or ``Event/unplaceable``).
        case schedule
        /// Count the request on the instance and record it as its holder.
        case take(Instance)
        /// Relay to the instance; `retries`: the proxy may ask for another before the head.
        case relay(Instance, retries: Bool)
        /// Relay a tokenizer request (no retries, no first-token accounting).
        case relayTokenizer(Instance)
        /// Choose another instance outside `excluding` for the next attempt (``Event/rescheduled(_:)``).
        case reschedule(excluding: Set<InstanceID>)
        case noteHealth(Instance, ok: Bool)
        case count(LifecycleCounter)
        case firstToken(from: Instance?)
        case stopInfer(Instance)
        case arm(LifecycleTimer)
        case cancel(LifecycleTimer)
        /// End a relayed request with an error: the proxy answers it (its status before the head, the in-stream
        /// error after it).
        case abortRelay(GatewayError, ProxyResult)
        /// End a request that was never relayed with an error reply.
        case reply(GatewayError)
        /// The request's bookkeeping end.
        case complete(success: Bool)
        case release(Instance)
        case log(LifecycleLog)
    }

    private(set) var instance: Instance?
    /// Instances an attempt went to (a retry goes elsewhere, DECISIONS 10).
    private(set) var tried: Set<InstanceID> = []
    private(set) var headSent = false
    private(set) var firstByte = false
    /// The proxy may retry elsewhere (not with PD headers).
    private(set) var retries = true
    private(set) var tokenizer = false
    private(set) var finished = false
    private var held = false

    init() {}

    mutating func handle(_ event: Event) -> [Action] {
        if case .completed = event { return completed() }
        guard !finished else { return [] }
        switch event {
        case .start:
            return [.arm(.schedule), .schedule]
        case .placed(let i):
            return dispatch(i)
        case .unplaceable:
            return [.arm(.scheduleRetry)]
        case .handedOff(let i):
            retries = false
            return dispatch(i)
        case .passthrough(let i):
            guard let i else { return fail(.notReady, .gaveUp) }
            return dispatch(i)
        case .tokenizer(let i):
            guard let i else { return fail(.notReady, .gaveUp) }
            tokenizer = true
            return take(i) + [.arm(.tokenizer), .relayTokenizer(i)]
        case .attemptFailed(let attempt, let maxAttempts, let transport, let why):
            var out: [Action] = []
            // a 503 is a busy instance, not a sick one
            if transport, let i = instance { out.append(.noteHealth(i, ok: false)) }
            // DECISIONS 10: another eligible instance, before the first byte only
            guard attempt < maxAttempts, retries else { return out }
            return out + [.count(.retry), .log(LifecycleLog(level: .debug, message: "retrying on another instance", metadata: ["why": why])),
                          .reschedule(excluding: tried)]
        case .rescheduled(let next):
            return next.map { take($0) } ?? []
        case .head(let status):
            headSent = true
            guard !tokenizer, status < 500, let i = instance else { return [] }
            return [.noteHealth(i, ok: true)]
        case .firstBody:
            firstByte = true
            return [.firstToken(from: instance), .cancel(.firstToken)]
        case .relayEnded(let success):
            finished = true
            return [.complete(success: success)]
        case .timer(let timer):
            return timerFired(timer)
        case .clientGone:
            // relayed: the proxy already closed the upstream connection (DECISIONS 8) and its end completes it
            guard instance == nil else { return [] }
            finished = true
            return [.complete(success: false)]
        case .abort(let error, let result):
            return fail(error, result)
        case .completed:
            return []
        }
    }

    private mutating func dispatch(_ i: Instance) -> [Action] {
        // the schedule timeout and the retry timer
        [.cancel(.schedule), .cancel(.scheduleRetry)] + take(i) + [.arm(.firstToken), .arm(.infer), .relay(i, retries: retries)]
    }

    private mutating func take(_ i: Instance) -> [Action] {
        var out: [Action] = []
        if let old = instance, held { out.append(.release(old)) }
        instance = i
        held = true
        tried.insert(i.id)
        out.append(.take(i))
        return out
    }

    private mutating func timerFired(_ timer: LifecycleTimer) -> [Action] {
        switch timer {
        case .schedule:
            return [.count(.timeout)] + fail(.scheduleTimeout, .timeout)
        case .scheduleRetry:
            return [.schedule]
        case .firstToken:
            // no first token in time: the instance did not answer, which counts against its health
            let health: [Action] = instance.map { [.noteHealth($0, ok: false)] } ?? []
            return [.count(.timeout)] + health + stopInfer() + fail(.firstTokenTimeout, .timeout)
        case .infer:
            return [.count(.timeout)] + stopInfer() + fail(.inferenceTimeout, .timeout)
        case .tokenizer:
            return [.count(.timeout)] + fail(.tokenizerTimeout, .timeout)
        case .pHead, .resend, .end, .slowClient:
            return []
        }
    }

    private func stopInfer() -> [Action] { instance.map { [.stopInfer($0)] } ?? [] }

    private mutating func fail(_ error: GatewayError, _ result: ProxyResult) -> [Action] {
        finished = true
        return instance == nil ? [.reply(error)] : [.abortRelay(error, result)]
    }

    private mutating func completed() -> [Action] {
        finished = true
        guard held, let i = instance else { return [] }
        held = false
        return [.release(i)]
    }
}
