import Synchronization
import Testing
import MSCore

/// Not Sendable: only a LoopBound may carry it to its loop.
private final class Counter {
    var hits = 0
}

@Suite("LoopBound: a loop-confined value")
struct LoopBoundTests {
    @Test("execute hands the value to the loop; a stopped loop refuses and body does not run")
    func executeAndStoppedLoop() async {
        let loop = EventLoop()
        let bound = LoopBound(Counter(), on: loop)
        let hits = await withCheckedContinuation { (cont: CheckedContinuation<Int, Never>) in
            let posted = bound.execute { c in
                #expect(loop.inEventLoop)
                c.hits += 1
                cont.resume(returning: c.hits)
            }
            #expect(posted)
        }
        #expect(hits == 1)
        loop.stop()
        let ran = Mutex(false)
        let posted = bound.execute { _ in ran.withLock { $0 = true } }
        #expect(!posted)
        #expect(!ran.withLock { $0 })
    }

    @Test("a value bound to one loop is read on that loop through value")
    func valueOnItsLoop() async {
        let loop = EventLoop()
        defer { loop.stop() }
        let bound = LoopBound(Counter(), on: loop)
        let seen = await withCheckedContinuation { (cont: CheckedContinuation<Bool, Never>) in
            loop.execute {
                bound.value.hits = 7
                cont.resume(returning: bound.value.hits == 7 && bound.loop === loop)
            }
        }
        #expect(seen)
    }
}

