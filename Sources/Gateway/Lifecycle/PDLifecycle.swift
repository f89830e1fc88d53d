import MSCore

/// The lifecycle of one PD request (docs/wire/coordinator.md §4.2–4.3) as a value: every event (a placement,
/// P's reply, a D frame, a timer, the client leaving) goes through ``handle(_:)``, which changes the state and
/// returns what the Coordinator must do. It does no I/O and reads no clock, so the tables of the spec are tested
/// on it directly (`PDLifecycleTests`).
///
/// The Coordinator executes the actions in order and stops at the first that ends the request; an action may
/// feed a new event back (a placement found by `schedule`, the client's backlog after `write`).
struct PDLifecycle<Instance: LifecycleInstance> {
    struct Settings: Equatable, Sendable {
        /// Our request id: the `req-id` P gets and the `reqId` its reply must carry.
        var requestID: String
        var stream: Bool
        var dialect: Dialect?
        /// `exception_config.max_retry`.
        var maxRetry: Int
        /// `http_config.relay_buffer_bytes`: unsent bytes a client may hold before it counts as slow.
        var clientBufferBytes: Int
    }

    enum PReply: Equatable, Sendable {
        case failed(HTTPClientError)
        case answered(status: Int, contentType: String, body: [UInt8])
    }

    enum Event: Equatable, Sendable {
        /// Admitted: arm the schedule timeout and look for a pair.
        case start
        /// The scheduler chose this pair.
        case placed(p: Instance, d: Instance)
        /// The scheduler found no pair now (sent only when a retry may give up, or by default_scheduler).
        case unplaceable
        /// P's reply head arrived.
        case pHead
        /// P's call ended.
        case pEnded(from: Instance, PReply)
        /// A `/dresult` frame for this request from D `from`.
        case decodeFrame(from: InstanceID, DFrameKind, [UInt8])
        /// The client's unsent bytes after a write.
        case clientBacklog(Int)
        /// The slow-client timer fired; the client's unsent bytes now.
        case slowClientTimer(pending: Int)
        /// Any other timer fired.
        case timer(LifecycleTimer)
        case clientGone
        /// Ended from outside (a refresh removed its instance, its D's link was lost).
        case abort(GatewayError)
        /// The request's bookkeeping end (whatever ended it): release what it still holds.
        case completed
    }

    enum Action: Equatable, Sendable {
        /// Find a pair outside the exclusions. With `giveUpIfNone`, report ``Event/unplaceable`` when there is none
        /// rather than queue (DIGS) — a retry with nowhere to go ends.
        case schedule(excludingP: Set<InstanceID>, excludingD: Set<InstanceID>, giveUpIfNone: Bool)
        /// A flex self-pair (§4.2 step 7): the request leaves the PD lifecycle for the single-node relay.
        case handOff(p: Instance, d: Instance)
        /// Count the request on both instances and record it as theirs (task counts, removals).
        case hold(p: Instance, d: Instance)
        case sendToP(p: Instance, d: Instance, recompute: Bool)
        case cancelPCall
        case noteHealth(Instance, ok: Bool)
        case release(Instance)
        /// Release the DIGS booking, if any.
        case releaseBooking
        /// P's part of the DIGS booking is done.
        case releasePrefillBooking
        /// The instances that now hold a task of the request.
        case assign([InstanceID])
        /// P's first output reached the client side (the clock for the inter-token gaps).
        case markFrameTime
        /// The request's first byte to the client.
        case firstToken(from: Instance?)
        /// A live D frame (the status page's inter-token latency).
        case noteFrame(Instance)
        case count(LifecycleCounter)
        /// One output message relayed (the access log's token count).
        case countMessage
        case startStream(contentType: String)
        case write([UInt8])
        case respond(status: Int, contentType: String, body: [UInt8])
        case end
        /// Ends the request as a success (after its reply).
        case succeed
        /// Ends the request with an error: its status before the head, an in-stream error after it.
        case fail(GatewayError)
        /// Ends the request with P's own non-MindIE error reply, status and body as P sent them.
        case relayError(status: Int, contentType: String, body: [UInt8])
        /// Ends the request without a reply (the client left).
        case cancelled
        /// stopInfer to each, in order (DECISIONS 7, 8).
        case stopInfer([Instance])
        case arm(LifecycleTimer)
        case cancel(LifecycleTimer)
        /// Report the client's backlog (``Event/clientBacklog(_:)``).
        case checkClientBacklog
        case log(LifecycleLog)
    }

    /// How a retry elsewhere ends when there is nowhere left to go.
    enum GiveUp: Equatable, Sendable {
        case fail(GatewayError)
        /// P's error reply: its MindIE error in the client's dialect, else its status and body as sent.
        case relay(pError: GatewayError?, status: Int, contentType: String, body: [UInt8])
    }

    let settings: Settings
    /// The body P gets: the client's, or D's recompute body.
    private(set) var body: [UInt8]
    private(set) var prefill: Instance?
    private(set) var decode: Instance?
    /// The load counters the request holds on P and D.
    private(set) var prefillHeld = false
    private(set) var decodeHeld = false
    /// Recompute (RETRY): `is-recompute: true` and D's body.
    private(set) var recompute = false
    /// Resends of a recompute to the same P.
    private(set) var retryCount = 0
    /// Retries on another P (or D) before its reply (DECISIONS 10).
    private(set) var pAttempts = 0
    /// P's that failed this request before its first byte, and D's a P could not reach (DECISIONS 10).
    private(set) var excludedP: Set<InstanceID> = []
    private(set) var excludedD: Set<InstanceID> = []
    private(set) var giveUp: GiveUp?
    /// The first dispatch armed the first-token and infer timeouts (they run from arrival, across retries).
    private(set) var dispatched = false
    /// FIRST_TOKEN_FINISH of the current incarnation: P's reply was handled, D frames flow.
    private(set) var firstFrameDone = false
    /// D frames that came before P's reply, in arrival order.
    private(set) var queued: [(DFrameKind, [UInt8])] = []
    /// The first D message of the current incarnation was looked at (D opens a chat stream with its own role chunk).
    private(set) var decodeStarted = false
    /// The frames of P's first output the client has seen (DECISIONS 13).
    private(set) var sentFirst: [[UInt8]] = []
    /// The client's head went out as a stream.
    private(set) var streaming = false
    private(set) var firstByte = false
    private(set) var pCallOpen = false
    /// P's call has not shown its head yet.
    private(set) var awaitingPHead = false
    private(set) var endTimerArmed = false
    private(set) var slowTimerArmed = false
    /// Ended (or handed off to the single-node relay): every later event but ``Event/completed`` is ignored.
    private(set) var finished = false

    init(settings: Settings, body: [UInt8]) {
        self.settings = settings
        self.body = body
    }

    mutating func handle(_ event: Event) -> [Action] {
        if case .completed = event { return completed() }
        guard !finished else { return [] }
        var out: [Action] = []
        switch event {
        case .start:
            out = [.arm(.schedule), scheduleAction()]
        case .placed(let p, let d):
            dispatch(p, d, &out)
        case .unplaceable:
            if let giveUp, !excludedP.union(excludedD).isEmpty { return end(giveUp) }
            // default_scheduler semantics: try again until schedule_timeout
            out = [.arm(.scheduleRetry)]
        case .pHead:
            if awaitingPHead {
                awaitingPHead = false
                out = [.cancel(.pHead)]
            }
        case .pEnded(let from, let reply):
            pCallOpen = false
            awaitingPHead = false
            out = [.cancel(.pHead)]
            guard let p = prefill, p == from else { return out }
            prefillReplied(p, reply, &out)
        case .decodeFrame(let from, let kind, let payload):
            guard let d = decode, d.id == from else { return [] }
            if !firstFrameDone {
                queued.append((kind, payload))
                return []
            }
            // frames queued before P's reply go out in one burst: only live frames time the gaps
            if kind == .data || kind == .lastData, !payload.isEmpty { out.append(.noteFrame(d)) }
            decodeFrame(kind, payload, &out)
        case .clientBacklog(let pending):
            guard pending > settings.clientBufferBytes else {
                if slowTimerArmed {
                    slowTimerArmed = false
                    out = [.cancel(.slowClient)]
                }
                return out
            }
            if pending > 4 * settings.clientBufferBytes { return dropSlowClient(pending: pending) }
            guard !slowTimerArmed else { return [] }
            slowTimerArmed = true
            out = [.arm(.slowClient)]
        case .slowClientTimer(let pending):
            slowTimerArmed = false
            if pending > settings.clientBufferBytes { return dropSlowClient(pending: pending) }
        case .timer(let timer):
            timerFired(timer, &out)
        case .clientGone:
            // DECISIONS 8: the work on P and D is cancelled at once
            finished = true
            out = stopInfer() + [.count(.cancellation), .cancelled]
        case .abort(let error):
            out = fail(error)
        case .completed:
            break
        }
        return out
    }

    // MARK: - schedule and dispatch

    private func scheduleAction() -> Action {
        .schedule(excludingP: excludedP, excludingD: excludedD,
                  giveUpIfNone: giveUp != nil && !excludedP.union(excludedD).isEmpty)
    }

    private mutating func dispatch(_ p: Instance, _ d: Instance, _ out: inout [Action]) {
        out += [.cancel(.schedule), .cancel(.scheduleRetry)]
        if p.sharesAddress(with: d) && !recompute {
            finished = true
            out.append(.handOff(p: p, d: d))
            return
        }
        prefill = p
        decode = d
        prefillHeld = true
        decodeHeld = true
        out.append(.hold(p: p, d: d))
        if !dispatched {
            dispatched = true
            out += [.arm(.firstToken), .arm(.infer)]
        }
        sendToP(&out)
    }

    private mutating func sendToP(_ out: inout [Action]) {
        guard let p = prefill, let d = decode else { return }
        pCallOpen = true
        awaitingPHead = true
        out += [.cancel(.pHead), .sendToP(p: p, d: d, recompute: recompute), .arm(.pHead)]
    }

    private mutating func timerFired(_ timer: LifecycleTimer, _ out: inout [Action]) {
        switch timer {
        case .schedule:
            guard prefill == nil else { return }
            out = [.count(.timeout)] + fail(.scheduleTimeout)
        case .scheduleRetry:
            out = [scheduleAction()]
        case .pHead:
            // the call still waits for P's head: a timeout before the response (retried on another P, counted
            // against P's circuit)
            guard awaitingPHead, let p = prefill else { return }
            pCallOpen = false
            awaitingPHead = false
            out = [.cancelPCall]
            prefillReplied(p, .failed(.timeout), &out)
        case .resend:
            sendToP(&out)
        case .firstToken:
            out = [.count(.timeout)] + stopInfer() + fail(.firstTokenTimeout)
        case .infer:
            out = [.count(.timeout)] + stopInfer() + fail(.inferenceTimeout)
        case .end:
            out = endStream()
        case .slowClient, .tokenizer:
            // the Coordinator reports the first with the backlog (``Event/slowClientTimer(pending:)``); PD arms
            // no tokenizer timer
            break
        }
    }

    // MARK: - P's reply (the table of §4.2 step 3)

    private mutating func prefillReplied(_ p: Instance, _ reply: PReply, _ out: inout [Action]) {
        switch reply {
        case .failed(let error):
            out.append(.noteHealth(p, ok: false))
            out.append(.log(LifecycleLog(level: .debug, message: "P call failed",
                                         metadata: ["instance": "\(p.id)", "error": "\(error)"])))
            if recompute { return resendRecompute(&out) }
            if error.isBeforeResponse { return retryElsewhere(giveUp: .fail(.connectPFailed), &out) }
            out += fail(.receivePFailed)
        case .answered(let status, let contentType, let body):
            out.append(.noteHealth(p, ok: true))
            guard status == 200 else {
                if recompute { return resendRecompute(&out) }
                let pError = Self.instanceError(status: status, body: body)
                let relay = GiveUp.relay(pError: pError, status: status, contentType: contentType, body: body)
                if status == 503 { return retryElsewhere(giveUp: relay, &out) }
                if let pError, pError.message.contains("Send D request failed") {
                    // P is fine but could not hand the request to its D: another D (DECISIONS 10)
                    return retryElsewhere(excludeDecode: true, giveUp: relay, &out)
                }
                out += end(relay)
                return
            }
            guard let j = try? JSON.parse(body, maxDepth: 8), let rid = j["reqId"]?.stringValue, j["isStream"]?.boolValue != nil,
                  j["isLastResp"] == nil || j["isLastResp"]?.boolValue != nil, j["output"] == nil || j["output"]?.stringValue != nil,
                  !(settings.stream && (j["isLastResp"] == nil || j["output"] == nil)) else {
                out += fail(.pInstanceError)
                return
            }
            guard rid == settings.requestID else {
                // docs/wire/coordinator.md §4.2: a reply for another request is ignored (the request ends by its timeouts)
                out.append(.log(LifecycleLog(level: .warning, message: "P reply with a foreign reqId ignored", metadata: ["reqId": rid])))
                return
            }
            let isLast = j["isLastResp"]?.boolValue ?? false
            if isLast, j["output"] == nil {
                out += fail(.pInstanceError)
                return
            }
            firstFrame(isLast: isLast, output: Array((j["output"]?.stringValue ?? "").utf8), &out)
        }
    }

    /// A MindIE error body (`{"error":"<text>","error_type":"<type>"}`) as a ``GatewayError``; nil for other bodies.
    static func instanceError(status: Int, body: [UInt8]) -> GatewayError? {
        guard let j = try? JSON.parse(body, maxDepth: 4), let message = j["error"]?.stringValue else { return nil }
        return GatewayError(status: status, message: message, tgiErrorType: j["error_type"]?.stringValue)
    }

    /// Before the first byte, another P — or, when P could not reach its D, another D — (DECISIONS 10), up to
    /// `max_retry` times.
    private mutating func retryElsewhere(excludeDecode: Bool = false, giveUp: GiveUp, _ out: inout [Action]) {
        pAttempts += 1
        guard pAttempts <= settings.maxRetry, !streaming, let p = prefill, let d = decode else {
            out += end(giveUp)
            return
        }
        let excluded = excludeDecode ? d.id : p.id
        out.append(.count(.retry))
        out.append(.log(LifecycleLog(level: .debug, message: "PD retry elsewhere", metadata: ["excluded": "\(excluded)"])))
        if excludeDecode { excludedD.insert(excluded) } else { excludedP.insert(excluded) }
        self.giveUp = giveUp
        out += releaseHeld()
        prefill = nil
        decode = nil
        // frames the old D sent for this incarnation must not reach the client with the next one
        queued = []
        decodeStarted = false
        // dispatch cancelled the schedule timeout: a retry that finds no place must still end
        out += [.assign([]), .arm(.schedule), scheduleAction()]
    }

    /// A recompute POST failed: the same P again after 1 s, until the counter passes `max_retry`.
    private mutating func resendRecompute(_ out: inout [Action]) {
        retryCount += 1
        guard retryCount <= settings.maxRetry else {
            out += fail(.retryFailed)
            return
        }
        out += [.count(.retry), .arm(.resend)]
    }

    /// FIRST_TOKEN_FINISH: the task moves from P to D; P's output goes out, then the queued D frames.
    private mutating func firstFrame(isLast: Bool, output: [UInt8], _ out: inout [Action]) {
        retryCount = 0
        firstFrameDone = true
        out.append(.markFrameTime)
        if let p = prefill, prefillHeld {
            prefillHeld = false
            out.append(.release(p))
        }
        if let d = decode { out.append(.assign([d.id])) }
        out.append(.releasePrefillBooking)
        if !output.isEmpty { out.append(.countMessage) }
        if !firstByte {
            firstByte = true
            out += [.firstToken(from: prefill), .cancel(.firstToken)]
        }
        if settings.stream {
            var sent = output
            let delimiter: [UInt8] = settings.dialect == .vllm ? [0] : [10, 10]
            if streaming {
                // after a recompute: drop what the client has already seen (DECISIONS 13)
                sent = PDFraming.frames(output, delimiter: delimiter).filter { !sentFirst.contains($0) }.flatMap { $0 }
            } else {
                sentFirst = PDFraming.frames(output, delimiter: delimiter)
            }
            if isLast {
                if streaming {
                    if !sent.isEmpty { out.append(.write(sent)) }
                    out.append(.end)
                } else {
                    out.append(.respond(status: 200, contentType: PDFraming.sseType, body: output))
                }
                out += succeed()
                return
            }
            if !streaming {
                streaming = true
                out.append(.startStream(contentType: PDFraming.sseType))
            }
            if !sent.isEmpty { out.append(.write(sent)) }
        } else if isLast {
            out.append(.respond(status: 200, contentType: PDFraming.jsonType, body: output))
            out += succeed()
            return
        }
        let waiting = queued
        queued = []
        for (kind, payload) in waiting {
            // a retry in the queue starts a new incarnation; what follows it is stale
            guard !finished, firstFrameDone else { break }
            decodeFrame(kind, payload, &out)
        }
    }

    // MARK: - D frames (the table of §4.2 step 4)

    private mutating func decodeFrame(_ kind: DFrameKind, _ payload: [UInt8], _ out: inout [Action]) {
        let stream = settings.stream, dialect = settings.dialect
        var payload = payload
        if dialect == .vllm, stream, kind == .data || kind == .lastData, !payload.isEmpty, payload.last != 0 {
            payload.append(0) // the NUL that ended the vLLM frame also ended the message
        }
        if kind == .data || kind == .lastData, !decodeStarted {
            decodeStarted = true
            // P's output already opened the chat stream with the role chunk; D's own would be a second one
            if stream, dialect == .openAI { payload = PDFraming.droppingRoleChunk(payload) }
            if payload.isEmpty, kind == .data { return }
        }
        switch kind {
        case .data:
            guard !payload.isEmpty else { return }
            out.append(.countMessage)
            if !streaming {
                streaming = true
                out.append(.startStream(contentType: stream ? PDFraming.sseType : PDFraming.jsonType))
            }
            out += [.write(payload), .checkClientBacklog]
        case .lastData:
            // a chat stream's separate `[DONE]` message carries no token
            if !payload.isEmpty, !(stream && PDFraming.isDoneOnly(payload)) { out.append(.countMessage) }
            if streaming || stream {
                if !streaming {
                    streaming = true
                    out.append(.startStream(contentType: PDFraming.sseType))
                }
                if !payload.isEmpty { out.append(.write(payload)) }
                if stream, dialect == .openAI, !endTimerArmed, !String(decoding: payload, as: UTF8.self).contains("[DONE]") {
                    // a chat stream's last step comes as two lastData messages: the finish chunk, then [DONE]
                    endTimerArmed = true
                    out.append(.arm(.end))
                    return
                }
                out += endStream()
            } else {
                out.append(.respond(status: 200, contentType: PDFraming.jsonType, body: payload))
                out += succeed()
            }
        case .error:
            out.append(.count(.upstreamError))
            out += fail(GatewayError(status: 500, message: String(decoding: payload, as: UTF8.self)))
        case .retry:
            recomputeWith(body: payload, &out)
        }
    }

    /// `retry:<body>` (§4.2 step 6): booking released, re-scheduled under the same id with D's body.
    private mutating func recomputeWith(body newBody: [UInt8], _ out: inout [Action]) {
        out.append(.count(.retry))
        pCallOpen = false
        awaitingPHead = false
        out.append(.cancelPCall)
        out += releaseHeld()
        prefill = nil
        decode = nil
        firstFrameDone = false
        queued = []
        decodeStarted = false
        body = newBody
        recompute = true
        retryCount = 0
        excludedP = []
        excludedD = []
        giveUp = nil
        out += [.assign([]), .arm(.schedule), scheduleAction()]
    }

    // MARK: - ends

    private mutating func releaseHeld() -> [Action] {
        var out: [Action] = []
        if let p = prefill, prefillHeld {
            prefillHeld = false
            out.append(.release(p))
        }
        if let d = decode, decodeHeld {
            decodeHeld = false
            out.append(.release(d))
        }
        out.append(.releaseBooking)
        return out
    }

    /// stopInfer to P and then D (§4.3; DECISIONS 7, 8).
    private func stopInfer() -> [Action] {
        let targets = [prefill, decode].compactMap { $0 }
        return targets.isEmpty ? [] : [.stopInfer(targets)]
    }

    private mutating func dropSlowClient(pending: Int) -> [Action] {
        [.log(LifecycleLog(level: .warning, message: "PD stream dropped: client too slow", metadata: ["unsent": "\(pending)"])),
         .count(.timeout)] + stopInfer() + fail(.clientTooSlow(bytes: settings.clientBufferBytes))
    }

    private mutating func fail(_ error: GatewayError) -> [Action] {
        finished = true
        return [.fail(error)]
    }

    private mutating func succeed() -> [Action] {
        finished = true
        return [.succeed]
    }

    private mutating func endStream() -> [Action] {
        finished = true
        return [.end, .succeed]
    }

    private mutating func end(_ giveUp: GiveUp) -> [Action] {
        switch giveUp {
        case .fail(let error):
            return fail(error)
        case .relay(let pError, let status, let contentType, let body):
            // P's own text, in the client's dialect (DECISIONS 2), not the server's TGI-shaped body
            if let pError { return [.count(.upstreamError)] + fail(pError) }
            finished = true
            return [.count(.upstreamError), .relayError(status: status, contentType: contentType, body: body)]
        }
    }

    private mutating func completed() -> [Action] {
        finished = true
        var out: [Action] = []
        if pCallOpen {
            pCallOpen = false
            awaitingPHead = false
            out.append(.cancelPCall)
        }
        return out + releaseHeld()
    }
}

/// The byte-level pieces of a PD reply (pure; unit-tested).
enum PDFraming {
    static let sseType = "text/event-stream; charset=utf-8"
    static let jsonType = "application/json; charset=utf-8"

    /// `bytes` cut after each `delimiter` (the rest, if any, is the last piece).
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
}
