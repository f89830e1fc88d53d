import MSCore
import Testing

@testable import Gateway

/// A request relayed whole to one instance (docs/wire/coordinator.md §4.1, §6; DECISIONS 8, 10), on the lifecycle
/// value alone.
struct SingleLifecycleTests {
    typealias Inst = PDLifecycleTests.Inst
    typealias L = SingleLifecycle<Inst>

    static let a = Inst(id: 1, address: "10.0.0.1:1025"), b = Inst(id: 2, address: "10.0.0.2:1025")

    static func relaying(_ on: Inst = a) -> L {
        var l = L()
        _ = l.handle(.start)
        _ = l.handle(.placed(on))
        return l
    }

    @Test func admittedThenPlaced() {
        var l = L()
        #expect(l.handle(.start) == [.arm(.schedule), .schedule])
        #expect(l.handle(.unplaceable) == [.arm(.scheduleRetry)], "default_scheduler tries again")
        #expect(l.handle(.timer(.scheduleRetry)) == [.schedule])
        #expect(l.handle(.placed(Self.a)) == [.cancel(.schedule), .cancel(.scheduleRetry), .take(Self.a), .arm(.firstToken), .arm(.infer),
                                              .relay(Self.a, retries: true)])
        #expect(l.instance == Self.a && l.tried == [1])
    }

    struct TimeoutRow: CustomTestStringConvertible, Sendable {
        let name: String
        let placed: Bool
        let timer: LifecycleTimer
        let expected: [L.Action]
        var testDescription: String { name }
    }

    static let timeoutRows: [TimeoutRow] = [
        TimeoutRow(name: "schedule_timeout before a place: 408, no instance to stop", placed: false, timer: .schedule,
                   expected: [.count(.timeout), .reply(.scheduleTimeout)]),
        TimeoutRow(name: "first_token_timeout: counts against the instance, stopInfer, 408 by the proxy", placed: true, timer: .firstToken,
                   expected: [.count(.timeout), .noteHealth(a, ok: false), .stopInfer(a), .abortRelay(.firstTokenTimeout, .timeout)]),
        TimeoutRow(name: "infer_timeout: stopInfer, 408 (in-stream if started)", placed: true, timer: .infer,
                   expected: [.count(.timeout), .stopInfer(a), .abortRelay(.inferenceTimeout, .timeout)]),
    ]

    @Test(arguments: timeoutRows)
    func timeouts(_ row: TimeoutRow) {
        var l = L()
        _ = l.handle(.start)
        if row.placed { _ = l.handle(.placed(Self.a)) }
        #expect(l.handle(.timer(row.timer)) == row.expected)
        #expect(l.finished)
        #expect(l.handle(.timer(row.timer)) == [], "ended once")
    }

    @Test func aRetryBeforeTheHeadGoesElsewhereUpToMaxRetry() {
        var l = Self.relaying()
        let failed = l.handle(.attemptFailed(attempt: 1, maxAttempts: 2, transport: true, why: "refused"))
        #expect(failed.first == .noteHealth(Self.a, ok: false))
        #expect(failed.contains(.count(.retry)) && failed.last == .reschedule(excluding: [1]))
        #expect(l.handle(.rescheduled(Self.b)) == [.release(Self.a), .take(Self.b)])
        #expect(l.instance == Self.b && l.tried == [1, 2])
        // a 503 is a busy instance, not a sick one; and the attempts are spent
        #expect(l.handle(.attemptFailed(attempt: 2, maxAttempts: 2, transport: false, why: "503")) == [])
        #expect(l.handle(.completed) == [.release(Self.b)])
        #expect(l.handle(.completed) == [], "released once")
    }

    @Test func aSelfPairIsNeverRetriedElsewhere() {
        var l = L()
        #expect(l.handle(.handedOff(Self.a)).last == .relay(Self.a, retries: false))
        #expect(l.handle(.attemptFailed(attempt: 1, maxAttempts: 3, transport: true, why: "refused")) == [.noteHealth(Self.a, ok: false)])
    }

    @Test func theHeadAndFirstByte() {
        var l = Self.relaying()
        #expect(l.handle(.head(status: 200)) == [.noteHealth(Self.a, ok: true)])
        #expect(l.handle(.firstBody) == [.firstToken(from: Self.a), .cancel(.firstToken)])
        var sick = Self.relaying()
        #expect(sick.handle(.head(status: 502)) == [], "a 5xx head proves nothing")
        #expect(l.handle(.relayEnded(success: true)) == [.complete(success: true)])
        #expect(l.handle(.relayEnded(success: true)) == [])
    }

    @Test func theClientLeaving() {
        // relayed: the proxy closed the upstream connection at once (DECISIONS 8); its end completes the request
        var l = Self.relaying()
        #expect(l.handle(.clientGone) == [])
        #expect(l.handle(.relayEnded(success: false)) == [.complete(success: false)])
        var waiting = L()
        _ = waiting.handle(.start)
        #expect(waiting.handle(.clientGone) == [.complete(success: false)])
    }

    @Test func tokenizerAndPassThrough() {
        var t = L()
        #expect(t.handle(.tokenizer(Self.a)) == [.take(Self.a), .arm(.tokenizer), .relayTokenizer(Self.a)])
        #expect(t.handle(.head(status: 200)) == [], "the tokenizer's answer is no health signal")
        #expect(t.handle(.timer(.tokenizer)) == [.count(.timeout), .abortRelay(.tokenizerTimeout, .timeout)])
        var none = L()
        #expect(none.handle(.tokenizer(nil)) == [.reply(.notReady)])
        var pass = L()
        #expect(pass.handle(.passthrough(nil)) == [.reply(.notReady)])
        var passOn = L()
        #expect(passOn.handle(.passthrough(Self.b)).last == .relay(Self.b, retries: true))
    }

    @Test func anAbortFromOutside() {
        var l = Self.relaying()
        #expect(l.handle(.abort(.instanceRemoved, .upstreamError)) == [.abortRelay(.instanceRemoved, .upstreamError)])
        var waiting = L()
        _ = waiting.handle(.start)
        #expect(waiting.handle(.abort(.instanceRemoved, .upstreamError)) == [.reply(.instanceRemoved)])
    }
}
