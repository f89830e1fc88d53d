import Foundation
import Synchronization
import Testing
@testable import MSCore
import TestSupport

/// What one loop saw of its timers: when each was due and when it fired, on the loop's own clock.
private final class TimerLog: @unchecked Sendable {
    // loop thread only until `done` is signalled
    var due: [UInt64] = []
    var fired: [(index: Int, at: UInt64)] = []
    var cancelledFired = 0
    let done = DispatchSemaphore(value: 0)
}

@Suite("Loop timers: any number of distinct durations")
struct TimerTests {
    /// The old table kept one h2o list per distinct duration, 512 per loop; past that it fell back to a duration
    /// 1 s longer (or never returned). 100,000 random durations must each fire, never early, in deadline order.
    @Test func manyDistinctDurationsFireInOrderAndNeverEarly() async throws {
        let loop = EventLoop()
        defer { loop.stop() }
        let log = TimerLog()
        let count = 100_000
        var rng = SystemRandomNumberGenerator()
        let durations = (0..<count).map { _ in UInt64.random(in: 0...2_500, using: &rng) }
        loop.execute {
            let start = loop.nowMilliseconds
            log.due = durations.map { start + $0 }
            // every tenth timer is cancelled at once: cancelled ones must never fire
            for (i, ms) in durations.enumerated() {
                let t = loop.schedule(afterMilliseconds: ms) {
                    log.fired.append((i, loop.nowMilliseconds))
                    if log.fired.count == count - count / 10 { log.done.signal() }
                }
                if i % 10 == 0 {
                    t.cancel()
                }
            }
            // timers far in the future (the hung simulator showed 292433160200 ms) are accepted and cancellable
            let far = [UInt64(292_433_160_200), UInt64.max, UInt64(1) << 45].map { ms in
                loop.schedule(afterMilliseconds: ms) { log.cancelledFired += 1 }
            }
            for t in far { t.cancel() }
        }
        // the waits below block for seconds: off the cooperative pool, which every other test shares
        #expect(await offPool { log.done.wait(timeout: .now() + 60) } == .success, "not every timer fired")
        let seen = Mutex<(Int, Int, Int, Int)>((0, 0, 0, 0))
        let finished = DispatchSemaphore(value: 0)
        // read the log on the loop so nothing races with a late (wrong) firing
        loop.execute {
            // the loop's clock is read once per iteration, so timers due by then fire together in any order;
            // a timer is out of order when an earlier iteration that fired others was already past its deadline
            var early = 0, outOfOrder = 0, late = 0
            var currentIteration: UInt64 = 0, previousIteration: UInt64?
            for (i, at) in log.fired {
                let due = log.due[i]
                if at < due { early += 1 }
                if at > due + 1_000 { late += 1 }
                if at != currentIteration { previousIteration = currentIteration; currentIteration = at }
                if let previousIteration, previousIteration >= due, previousIteration != 0 { outOfOrder += 1 }
            }
            let cancelledFired = log.cancelledFired + log.fired.filter { $0.index % 10 == 0 }.count
            seen.withLock { $0 = (early, outOfOrder, late, cancelledFired) }
            finished.signal()
        }
        await offPool { finished.wait() }
        let (early, outOfOrder, late, cancelledFired) = seen.withLock { $0 }
        #expect(log.fired.count == count - count / 10)
        #expect(early == 0, "timers fired before their deadline")
        #expect(outOfOrder == 0, "timers skipped by an iteration that was past their deadline")
        #expect(late == 0, "timers fired more than a second after their deadline")
        #expect(cancelledFired == 0, "cancelled timers fired")
    }

    /// Re-arming with "deadline - now" on every event (what a D's /dresult heartbeat does) makes a new distinct
    /// duration each time; the loop must keep running its other timers and work.
    @Test func rearmingWithShrinkingDurationsKeepsTheLoopAlive() async throws {
        let loop = EventLoop()
        defer { loop.stop() }
        let done = DispatchSemaphore(value: 0)
        let rounds = 5_000
        loop.execute {
            let deadline = loop.nowMilliseconds + 3_600_000
            var timer: LoopTimer?
            var n = 0
            func step() {
                n += 1
                timer?.cancel()
                // a distinct odd duration each round, as a heartbeat re-armed from a moving clock would
                timer = loop.schedule(afterMilliseconds: deadline - loop.nowMilliseconds - UInt64(n) * 7) {}
                if n == rounds {
                    timer?.cancel()
                    loop.schedule(afterMilliseconds: 5) { done.signal() }
                } else {
                    loop.schedule(afterMilliseconds: 0) { step() }
                }
            }
            step()
        }
        #expect(await offPool { done.wait(timeout: .now() + 60) } == .success, "the loop stopped running its timers")
    }
}
