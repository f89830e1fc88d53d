import MSCore
import Testing

@testable import Gateway

/// The PD tables of docs/wire/coordinator.md §4.2–4.3, on the lifecycle value alone (no sockets, no clock).
struct PDLifecycleTests {
    struct Inst: LifecycleInstance, CustomStringConvertible {
        let id: InstanceID
        let address: String
        func sharesAddress(with other: Inst) -> Bool { address == other.address }
        var description: String { "#\(id)" }
    }
    typealias L = PDLifecycle<Inst>

    static let p1 = Inst(id: 1, address: "10.0.0.1:1025"), p2 = Inst(id: 2, address: "10.0.0.2:1025")
    static let d1 = Inst(id: 11, address: "10.0.1.1:1025"), d2 = Inst(id: 12, address: "10.0.1.2:1025")
    static let requestID = "4242"

    static func lifecycle(stream: Bool = false, dialect: Dialect = .openAI, maxRetry: Int = 2, buffer: Int = 100) -> L {
        L(settings: .init(requestID: requestID, stream: stream, dialect: dialect, maxRetry: maxRetry, clientBufferBytes: buffer),
          body: Array("{}".utf8))
    }

    /// Admitted and placed on (p1, d1): the POST to P is out.
    static func dispatched(stream: Bool = false, dialect: Dialect = .openAI, maxRetry: Int = 2, buffer: Int = 100) -> L {
        var l = lifecycle(stream: stream, dialect: dialect, maxRetry: maxRetry, buffer: buffer)
        _ = l.handle(.start)
        _ = l.handle(.placed(p: p1, d: d1))
        return l
    }

    static func pJSON(reqId: String = requestID, isStream: String = "false", isLast: String? = nil, output: String? = nil) -> [UInt8] {
        var fields = ["\"reqId\":\"\(reqId)\"", "\"isStream\":\(isStream)"]
        if let isLast { fields.append("\"isLastResp\":\(isLast)") }
        if let output { fields.append("\"output\":\(output)") }
        return Array("{\(fields.joined(separator: ","))}".utf8)
    }

    static func answered(_ status: Int = 200, _ body: [UInt8], from p: Inst = p1) -> L.Event {
        .pEnded(from: p, .answered(status: status, contentType: "application/json", body: body))
    }

    /// What an event did to the client, in the words of the spec's tables.
    enum Outcome: Equatable {
        case failed(GatewayError)
        case relayed(status: Int)
        case retried(excludingP: Set<InstanceID>, excludingD: Set<InstanceID>)
        case resent
        case replied(status: Int, contentType: String, body: String)
        case streamed(contentType: String?, written: String, ended: Bool)
        case nothing
    }

    static func outcome(_ actions: [L.Action]) -> Outcome {
        var contentType: String?
        var written = ""
        var ended = false
        for a in actions {
            switch a {
            case .fail(let e): return .failed(e)
            case .relayError(let s, _, _): return .relayed(status: s)
            case .schedule(let p, let d, _): return .retried(excludingP: p, excludingD: d)
            case .arm(.resend): return .resent
            case .respond(let s, let ct, let b): return .replied(status: s, contentType: ct, body: String(decoding: b, as: UTF8.self))
            case .startStream(let ct): contentType = ct
            case .write(let b): written += String(decoding: b, as: UTF8.self)
            case .end: ended = true
            default: break
            }
        }
        return contentType == nil && written.isEmpty && !ended ? .nothing : .streamed(contentType: contentType, written: written, ended: ended)
    }

    // MARK: - §4.2 step 3: P's reply

    struct PRow: CustomTestStringConvertible, Sendable {
        let name: String
        let stream: Bool
        let status: Int
        let body: [UInt8]
        let expected: Outcome
        var testDescription: String { name }
    }

    static let sse = PDFraming.sseType, json = PDFraming.jsonType

    static let pRows: [PRow] = [
        PRow(name: "status ≠ 200, plain body: relayed", stream: false, status: 500, body: Array("boom".utf8), expected: .relayed(status: 500)),
        PRow(name: "status ≠ 200, MindIE error: in the client's dialect", stream: false, status: 422,
             body: Array(#"{"error":"bad input","error_type":"validation"}"#.utf8),
             expected: .failed(GatewayError(status: 422, message: "bad input", tgiErrorType: "validation"))),
        PRow(name: "503: another P", stream: false, status: 503, body: [], expected: .retried(excludingP: [1], excludingD: [])),
        PRow(name: "P could not reach D: another D", stream: false, status: 500,
             body: Array(#"{"error":"Send D request failed: refused"}"#.utf8), expected: .retried(excludingP: [], excludingD: [11])),
        PRow(name: "not JSON", stream: false, status: 200, body: Array("<html>".utf8), expected: .failed(.pInstanceError)),
        PRow(name: "reqId missing", stream: false, status: 200, body: Array(#"{"isStream":false}"#.utf8), expected: .failed(.pInstanceError)),
        PRow(name: "isStream of the wrong type", stream: false, status: 200, body: pJSON(isStream: "\"no\""), expected: .failed(.pInstanceError)),
        PRow(name: "output of the wrong type", stream: false, status: 200, body: pJSON(isLast: "true", output: "3"), expected: .failed(.pInstanceError)),
        PRow(name: "stream without isLastResp", stream: true, status: 200, body: pJSON(isStream: "true", output: "\"x\""),
             expected: .failed(.pInstanceError)),
        PRow(name: "stream without output", stream: true, status: 200, body: pJSON(isStream: "true", isLast: "false"),
             expected: .failed(.pInstanceError)),
        PRow(name: "reqId of another request: ignored", stream: false, status: 200, body: pJSON(reqId: "7", isLast: "true", output: "\"x\""),
             expected: .nothing),
        PRow(name: "stream: output is the first chunk", stream: true, status: 200,
             body: pJSON(isStream: "true", isLast: "false", output: #""data: a\n\n""#),
             expected: .streamed(contentType: sse, written: "data: a\n\n", ended: false)),
        PRow(name: "stream with isLastResp: the whole reply", stream: true, status: 200,
             body: pJSON(isStream: "true", isLast: "true", output: #""data: a\n\n""#),
             expected: .replied(status: 200, contentType: sse, body: "data: a\n\n")),
        PRow(name: "non-stream with isLastResp: the whole reply", stream: false, status: 200,
             body: pJSON(isLast: "true", output: #""{\"text\":\"hi\"}""#), expected: .replied(status: 200, contentType: json, body: #"{"text":"hi"}"#)),
        PRow(name: "non-stream with isLastResp but no output", stream: false, status: 200, body: pJSON(isLast: "true"),
             expected: .failed(.pInstanceError)),
        PRow(name: "non-stream without isLastResp: nothing yet", stream: false, status: 200, body: pJSON(output: "\"\""), expected: .nothing),
    ]

    @Test(arguments: pRows)
    func pReply(_ row: PRow) {
        var l = Self.dispatched(stream: row.stream)
        let actions = l.handle(Self.answered(row.status, row.body))
        #expect(Self.outcome(actions) == row.expected, "\(actions)")
        // any HTTP answer proves P alive; a failure or relay ends the request, a retry does not
        #expect(actions.contains(.noteHealth(Self.p1, ok: true)))
        switch row.expected {
        case .failed, .relayed, .replied: #expect(l.finished)
        default: #expect(!l.finished)
        }
    }

    // MARK: - §4.3: P failures

    struct FailureRow: CustomTestStringConvertible, Sendable {
        let name: String
        let error: HTTPClientError
        let expected: Outcome
        var testDescription: String { name }
    }

    static let failureRows: [FailureRow] = [
        FailureRow(name: "no connection to P: another P", error: .connect("refused"), expected: .retried(excludingP: [1], excludingD: [])),
        FailureRow(name: "P closed before its head: another P", error: .beforeHead("reset"), expected: .retried(excludingP: [1], excludingD: [])),
        FailureRow(name: "read from P fails", error: .broken("reset"), expected: .failed(.receivePFailed)),
        FailureRow(name: "P speaks no HTTP", error: .protocolError("garbage"), expected: .failed(.receivePFailed)),
    ]

    @Test(arguments: failureRows)
    func pFailure(_ row: FailureRow) {
        var l = Self.dispatched()
        let actions = l.handle(.pEnded(from: Self.p1, .failed(row.error)))
        #expect(Self.outcome(actions) == row.expected, "\(actions)")
        #expect(actions.contains(.noteHealth(Self.p1, ok: false)))
    }

    @Test func retryElsewhereReleasesTheOldPairAndGivesUpPastMaxRetry() {
        var l = Self.dispatched(maxRetry: 1)
        let first = l.handle(.pEnded(from: Self.p1, .failed(.connect("refused"))))
        #expect(first.contains(.release(Self.p1)) && first.contains(.release(Self.d1)) && first.contains(.releaseBooking))
        #expect(first.contains(.arm(.schedule)), "a retry that finds no place must still end")
        #expect(first.contains(.schedule(excludingP: [1], excludingD: [], giveUpIfNone: true)))
        #expect(l.prefill == nil && l.decode == nil)
        // nothing else to go to: the give-up of the first failure
        #expect(Self.outcome(l.handle(.unplaceable)) == .failed(.connectPFailed))

        var again = Self.dispatched(maxRetry: 1)
        _ = again.handle(.pEnded(from: Self.p1, .failed(.connect("refused"))))
        _ = again.handle(.placed(p: Self.p2, d: Self.d1))
        #expect(Self.outcome(again.handle(.pEnded(from: Self.p2, .failed(.connect("refused"))))) == .failed(.connectPFailed))
    }

    @Test func aReplyFromAPOfAnEarlierAttemptIsIgnored() {
        var l = Self.dispatched()
        _ = l.handle(.pEnded(from: Self.p1, .failed(.connect("refused"))))
        _ = l.handle(.placed(p: Self.p2, d: Self.d1))
        #expect(Self.outcome(l.handle(Self.answered(200, Self.pJSON(isLast: "true", output: "\"x\"")))) == .nothing)
        #expect(!l.finished)
    }

    @Test func pHeadTimeoutCancelsTheCallAndRetriesElsewhere() {
        var l = Self.dispatched()
        let actions = l.handle(.timer(.pHead))
        #expect(actions.first == .cancelPCall)
        #expect(actions.contains(.noteHealth(Self.p1, ok: false)))
        #expect(Self.outcome(actions) == .retried(excludingP: [1], excludingD: []))
        // P's head in time: the timer goes, nothing else
        var ok = Self.dispatched()
        #expect(ok.handle(.pHead) == [.cancel(.pHead)])
        #expect(ok.handle(.timer(.pHead)) == [], "the call is no longer waiting for its head")
    }

    // MARK: - §4.2 step 4: D frames

    struct DRow: CustomTestStringConvertible, Sendable {
        let name: String
        let stream: Bool
        let dialect: Dialect
        let kind: DFrameKind
        let payload: String
        let expected: Outcome
        let ends: Bool
        var testDescription: String { name }
    }

    static let dRows: [DRow] = [
        DRow(name: "data, non-stream: a chunk", stream: false, dialect: .openAI, kind: .data, payload: "{\"a\":1}",
             expected: .streamed(contentType: json, written: "{\"a\":1}", ended: false), ends: false),
        DRow(name: "data, stream: a chunk", stream: true, dialect: .tgi, kind: .data, payload: "data: b\n\n",
             expected: .streamed(contentType: nil, written: "data: b\n\n", ended: false), ends: false),
        DRow(name: "lastData, stream: the last chunk", stream: true, dialect: .tgi, kind: .lastData, payload: "data: z\n\n",
             expected: .streamed(contentType: nil, written: "data: z\n\n", ended: true), ends: true),
        DRow(name: "lastData, non-stream: the whole reply", stream: false, dialect: .openAI, kind: .lastData, payload: "{\"all\":1}",
             expected: .replied(status: 200, contentType: json, body: "{\"all\":1}"), ends: true),
        DRow(name: "error: the request fails", stream: false, dialect: .openAI, kind: .error, payload: "engine died",
             expected: .failed(GatewayError(status: 500, message: "engine died")), ends: true),
        DRow(name: "retry: recompute", stream: false, dialect: .openAI, kind: .retry, payload: "{\"again\":1}",
             expected: .retried(excludingP: [], excludingD: []), ends: false),
        DRow(name: "lastData, chat stream: waits for [DONE]", stream: true, dialect: .openAI, kind: .lastData, payload: "data: {}\n\n",
             expected: .streamed(contentType: nil, written: "data: {}\n\n", ended: false), ends: false),
    ]

    /// P's first frame is out (stream: a first chunk; non-stream: nothing yet).
    static func decoding(stream: Bool, dialect: Dialect) -> L {
        var l = dispatched(stream: stream, dialect: dialect)
        let body = stream ? pJSON(isStream: "true", isLast: "false", output: #""data: a\n\n""#) : pJSON(output: "\"\"")
        _ = l.handle(answered(200, body))
        return l
    }

    @Test(arguments: dRows)
    func decodeFrame(_ row: DRow) {
        var l = Self.decoding(stream: row.stream, dialect: row.dialect)
        let actions = l.handle(.decodeFrame(from: Self.d1.id, row.kind, Array(row.payload.utf8)))
        #expect(Self.outcome(actions) == row.expected, "\(actions)")
        #expect(l.finished == row.ends)
        #expect(actions.contains(.succeed) == (row.ends && row.kind == .lastData))
    }

    @Test func aChatStreamEndsAtDoneOrAtTheEndTimer() {
        var l = Self.decoding(stream: true, dialect: .openAI)
        #expect(l.handle(.decodeFrame(from: Self.d1.id, .lastData, Array("data: {}\n\n".utf8))).contains(.arm(.end)))
        #expect(l.handle(.decodeFrame(from: Self.d1.id, .lastData, Array("data: [DONE]\n\n".utf8))) == [
            .noteFrame(Self.d1), .write(Array("data: [DONE]\n\n".utf8)), .end, .succeed])
        var timed = Self.decoding(stream: true, dialect: .openAI)
        _ = timed.handle(.decodeFrame(from: Self.d1.id, .lastData, Array("data: {}\n\n".utf8)))
        #expect(timed.handle(.timer(.end)) == [.end, .succeed])
    }

    @Test func framesOfAnotherDOrAfterTheEndAreIgnored() {
        var l = Self.decoding(stream: false, dialect: .openAI)
        #expect(l.handle(.decodeFrame(from: Self.d2.id, .lastData, Array("x".utf8))) == [])
        _ = l.handle(.decodeFrame(from: Self.d1.id, .lastData, Array("x".utf8)))
        #expect(l.handle(.decodeFrame(from: Self.d1.id, .data, Array("y".utf8))) == [])
    }

    @Test func dsOwnRoleChunkIsDroppedFromAChatStream() {
        var l = Self.decoding(stream: true, dialect: .openAI)
        let role = #"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"# + "\n\n"
        let token = #"data: {"choices":[{"index":0,"delta":{"content":"b"}}]}"# + "\n\n"
        let actions = l.handle(.decodeFrame(from: Self.d1.id, .data, Array((role + token).utf8)))
        #expect(Self.outcome(actions) == .streamed(contentType: nil, written: token, ended: false))
    }

    // MARK: - §4.2 step 5: order

    @Test func framesBeforePsReplyWaitAndFlushInOrder() {
        var l = Self.dispatched(stream: true, dialect: .tgi)
        #expect(l.handle(.decodeFrame(from: Self.d1.id, .data, Array("data: b\n\n".utf8))) == [])
        #expect(l.handle(.decodeFrame(from: Self.d1.id, .lastData, Array("data: c\n\n".utf8))) == [])
        let actions = l.handle(Self.answered(200, Self.pJSON(isStream: "true", isLast: "false", output: #""data: a\n\n""#)))
        #expect(Self.outcome(actions) == .streamed(contentType: Self.sse, written: "data: a\n\ndata: b\n\ndata: c\n\n", ended: true))
        #expect(actions.last == .succeed, "a waiting final frame ends the request")
        // queued frames go out in one burst: they time no inter-token gap
        #expect(!actions.contains(.noteFrame(Self.d1)))
    }

    @Test func aQueuedRetryDropsWhatFollowsIt() {
        var l = Self.dispatched(stream: true, dialect: .tgi)
        _ = l.handle(.decodeFrame(from: Self.d1.id, .retry, Array("{\"r\":1}".utf8)))
        _ = l.handle(.decodeFrame(from: Self.d1.id, .lastData, Array("data: stale\n\n".utf8)))
        let actions = l.handle(Self.answered(200, Self.pJSON(isStream: "true", isLast: "false", output: #""data: a\n\n""#)))
        #expect(actions.contains(.schedule(excludingP: [], excludingD: [], giveUpIfNone: false)))
        #expect(!actions.contains(.write(Array("data: stale\n\n".utf8))))
        #expect(!l.finished && l.recompute && l.body == Array("{\"r\":1}".utf8))
    }

    // MARK: - §4.2 step 6: recompute

    @Test func recomputeResendsToTheSamePUntilMaxRetry() {
        var l = Self.decoding(stream: false, dialect: .openAI)
        let retry = l.handle(.decodeFrame(from: Self.d1.id, .retry, Array("{\"r\":1}".utf8)))
        #expect(retry.contains(.count(.retry)) && retry.contains(.cancelPCall) && retry.contains(.release(Self.d1)))
        #expect(!retry.contains(.release(Self.p1)), "P was released at its first frame")
        #expect(l.handle(.placed(p: Self.p2, d: Self.d2)).contains(.sendToP(p: Self.p2, d: Self.d2, recompute: true)))
        // non-200: the same P after 1 s, twice (max_retry 2), then the request fails
        for _ in 0..<2 {
            #expect(Self.outcome(l.handle(Self.answered(500, [], from: Self.p2))) == .resent)
            #expect(l.handle(.timer(.resend)).contains(.sendToP(p: Self.p2, d: Self.d2, recompute: true)))
        }
        #expect(Self.outcome(l.handle(.pEnded(from: Self.p2, .failed(.connect("x"))))) == .failed(.retryFailed))
    }

    @Test func aGood200ResetsTheResendCount() {
        var l = Self.decoding(stream: false, dialect: .openAI)
        _ = l.handle(.decodeFrame(from: Self.d1.id, .retry, Array("{}".utf8)))
        _ = l.handle(.placed(p: Self.p1, d: Self.d1))
        _ = l.handle(Self.answered(500, []))
        #expect(l.retryCount == 1)
        _ = l.handle(.timer(.resend))
        _ = l.handle(Self.answered(200, Self.pJSON(output: "\"\"")))
        #expect(l.retryCount == 0)
    }

    @Test func aRecomputedStreamDoesNotRepeatPsFirstToken() {
        // DECISIONS 13
        var l = Self.decoding(stream: true, dialect: .tgi)
        _ = l.handle(.decodeFrame(from: Self.d1.id, .retry, Array("{}".utf8)))
        _ = l.handle(.placed(p: Self.p1, d: Self.d1))
        let actions = l.handle(Self.answered(200, Self.pJSON(isStream: "true", isLast: "false", output: #""data: a\n\ndata: b\n\n""#)))
        #expect(Self.outcome(actions) == .streamed(contentType: nil, written: "data: b\n\n", ended: false))
        #expect(!actions.contains { if case .firstToken = $0 { true } else { false } }, "the first byte is counted once")
    }

    // MARK: - §4.2 step 7: flex self-pair

    @Test func aSelfPairIsHandedToTheSingleNodeRelayUnlessRecomputing() {
        let selfD = Inst(id: 21, address: Self.p1.address)
        var l = Self.lifecycle()
        _ = l.handle(.start)
        #expect(l.handle(.placed(p: Self.p1, d: selfD)) == [.cancel(.schedule), .cancel(.scheduleRetry), .handOff(p: Self.p1, d: selfD)])
        #expect(l.finished)

        var r = Self.decoding(stream: false, dialect: .openAI)
        _ = r.handle(.decodeFrame(from: Self.d1.id, .retry, Array("{}".utf8)))
        #expect(r.handle(.placed(p: Self.p1, d: selfD)).contains(.sendToP(p: Self.p1, d: selfD, recompute: true)))
    }

    // MARK: - §4.3 and §6: the client leaves, timeouts, removals

    @Test func theClientLeaving_stopsPThenD() {
        var l = Self.dispatched()
        #expect(l.handle(.clientGone) == [.stopInfer([Self.p1, Self.d1]), .count(.cancellation), .cancelled])
        var unplaced = Self.lifecycle()
        _ = unplaced.handle(.start)
        #expect(unplaced.handle(.clientGone) == [.count(.cancellation), .cancelled])
    }

    struct TimeoutRow: CustomTestStringConvertible, Sendable {
        let timer: LifecycleTimer
        let error: GatewayError
        var testDescription: String { "\(timer)" }
    }

    @Test(arguments: [TimeoutRow(timer: .firstToken, error: .firstTokenTimeout), TimeoutRow(timer: .infer, error: .inferenceTimeout)])
    func requestTimeoutsStopInferThenFail(_ row: TimeoutRow) {
        var l = Self.dispatched()
        #expect(l.handle(.timer(row.timer)) == [.count(.timeout), .stopInfer([Self.p1, Self.d1]), .fail(row.error)])
    }

    @Test func theFirstDispatchArmsTheRequestTimeoutsOnce() {
        var l = Self.lifecycle()
        #expect(l.handle(.start) == [.arm(.schedule), .schedule(excludingP: [], excludingD: [], giveUpIfNone: false)])
        let first = l.handle(.placed(p: Self.p1, d: Self.d1))
        #expect(first.contains(.arm(.firstToken)) && first.contains(.arm(.infer)) && first.contains(.hold(p: Self.p1, d: Self.d1)))
        _ = l.handle(.pEnded(from: Self.p1, .failed(.connect("refused"))))
        let second = l.handle(.placed(p: Self.p2, d: Self.d1))
        #expect(!second.contains(.arm(.firstToken)) && !second.contains(.arm(.infer)))
    }

    @Test func theScheduleTimeoutOnlyEndsAnUnplacedRequest() {
        var l = Self.lifecycle()
        _ = l.handle(.start)
        #expect(l.handle(.unplaceable) == [.arm(.scheduleRetry)], "default_scheduler tries again")
        #expect(l.handle(.timer(.scheduleRetry)) == [.schedule(excludingP: [], excludingD: [], giveUpIfNone: false)])
        #expect(l.handle(.timer(.schedule)) == [.count(.timeout), .fail(.scheduleTimeout)])
        var placed = Self.dispatched()
        #expect(placed.handle(.timer(.schedule)) == [])
    }

    @Test func anAbortFailsAndTheEndReleasesWhatIsHeld() {
        var l = Self.dispatched()
        #expect(l.handle(.abort(.decodeLinkLost)) == [.fail(.decodeLinkLost)])
        #expect(l.handle(.completed) == [.cancelPCall, .release(Self.p1), .release(Self.d1), .releaseBooking])
        #expect(l.handle(.completed) == [.releaseBooking], "released once")

        var decoding = Self.decoding(stream: false, dialect: .openAI)
        #expect(decoding.handle(.completed) == [.release(Self.d1), .releaseBooking], "P was released at its first frame")
    }

    @Test func thePsFirstFrameMovesTheTaskToD() {
        var l = Self.dispatched(stream: true, dialect: .tgi)
        let actions = l.handle(Self.answered(200, Self.pJSON(isStream: "true", isLast: "false", output: #""data: a\n\n""#)))
        #expect(Array(actions.prefix(7)) == [.cancel(.pHead), .noteHealth(Self.p1, ok: true), .markFrameTime, .release(Self.p1),
                                            .assign([Self.d1.id]), .releasePrefillBooking, .countMessage])
        #expect(actions.contains(.firstToken(from: Self.p1)) && actions.contains(.cancel(.firstToken)))
        #expect(l.handle(.timer(.pHead)) == [], "P answered")
    }

    // MARK: - slow clients (ours)

    @Test func aSlowClientIsDroppedAfterTheTimerOrAtOnceFarBehind() {
        var l = Self.decoding(stream: true, dialect: .tgi)
        #expect(l.handle(.clientBacklog(100)) == [], "at the bound is fine")
        #expect(l.handle(.clientBacklog(101)) == [.arm(.slowClient)])
        #expect(l.handle(.clientBacklog(150)) == [], "armed once")
        #expect(l.handle(.clientBacklog(10)) == [.cancel(.slowClient)])
        _ = l.handle(.clientBacklog(101))
        #expect(l.handle(.slowClientTimer(pending: 50)) == [], "caught up meanwhile")
        _ = l.handle(.clientBacklog(101))
        let dropped = l.handle(.slowClientTimer(pending: 120))
        #expect(Array(dropped.suffix(3)) == [.count(.timeout), .stopInfer([Self.p1, Self.d1]), .fail(.clientTooSlow(bytes: 100))])

        var far = Self.decoding(stream: true, dialect: .tgi)
        #expect(far.handle(.clientBacklog(401)).last == .fail(.clientTooSlow(bytes: 100)))
    }

    @Test func aDataFrameAsksForTheClientsBacklog() {
        var l = Self.decoding(stream: true, dialect: .tgi)
        #expect(l.handle(.decodeFrame(from: Self.d1.id, .data, Array("data: b\n\n".utf8))).last == .checkClientBacklog)
    }
}
