import Synchronization
import Testing
import MSCore
import TestSupport

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

@Suite("HTTPClient.execute and task cancellation", .serialized)
struct ClientCancellationTests {
    @Test("cancelling the task ends a call the server never answers with .cancelled, and closes its connection")
    func cancelInFlight() async throws {
        let arrived = AsyncStream<Void>.makeStream()
        let gone = AsyncStream<Void>.makeStream()
        // the server holds every request open; it learns of the client leaving through onClientGone
        let (server, port) = try startServer(handler: { _, res in
            res.onClientGone = { gone.continuation.yield() }
            arrived.continuation.yield()
        })
        defer { server.shutdown() }
        let client = HTTPClient()
        let task = Task {
            try await client.execute(HTTPClientRequest(host: "127.0.0.1", port: port, path: "/hold", timeoutMilliseconds: 60_000))
        }
        var it = arrived.stream.makeAsyncIterator()
        _ = await it.next()
        task.cancel()
        await #expect(throws: HTTPClientError.cancelled) { try await task.value }
        var g = gone.stream.makeAsyncIterator()
        _ = await g.next()
    }

    @Test("a task cancelled before the call starts is answered .cancelled without a request")
    func cancelledBeforeStart() async throws {
        let client = HTTPClient()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.execute(HTTPClientRequest(host: "127.0.0.1", port: deadPort(), path: "/", timeoutMilliseconds: 60_000))
        }
        await #expect(throws: HTTPClientError.cancelled) { try await task.value }
    }
}
