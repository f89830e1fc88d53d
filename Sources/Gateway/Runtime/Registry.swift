import MSCore
import Synchronization

/// A request the Coordinator is serving. Loop-bound: touched only on `responder.loop`.
final class TrackedRequest {
    let id: UInt64
    let idString: String
    let responder: HTTPResponder
    let dialect: Dialect?
    let stream: Bool
    let model: String?
    let arrivalNanos: UInt64
    /// The lifecycle of a request relayed whole (single node, tokenizer, PD pass-through and self-pairs).
    var single = SingleState()
    /// The instance serving it (single node; PD: ``pd``).
    var instance: InstanceEntry? { single.lifecycle.instance }
    var headSent = false
    var firstByte = false
    var finished = false
    var timers: [LoopTimer] = []
    /// ``CapacitySignal/generation`` read before the view its last scheduling attempt used: a wait for capacity
    /// starts from it, so a release between that attempt and the wait is not missed.
    var capacitySeen: UInt64 = 0
    /// PD disaggregation state (nil in single-node mode and for flex self-pairs).
    var pd: PDState?
    /// Holds a DIGS booking to release when it ends.
    var digsBooked = false
    /// The `traceparent` sent to instances when the client sent none.
    var traceparent: String?
    /// Headers every upstream call of this request carries besides `req-id`.
    var traceHeaders: [(String, String)] { traceparent.map { [("traceparent", $0)] } ?? [] }
    /// Its error is already in the status page's ring (the proxy's finish must not add it again).
    var errorNoted = false
    // What the access log reports (docs/wire/coordinator.md §7).
    var method = ""
    var path = ""
    /// The client's own `traceparent` (relayed as is).
    var clientTraceparent: String?
    /// The status the client saw when the proxy or an abort answered (Swift-side replies are on the responder).
    var status = 0
    /// Body bytes the proxy relayed.
    var proxyBytes: UInt64 = 0
    var retries = 0
    /// Uptime (ns) of the first byte to the client.
    var firstByteNanos: UInt64 = 0
    /// PD: output messages relayed (P's first output counts one).
    var messagesOut = 0
    var clientDisconnect = false
    /// The Coordinator's own error, when it ended the request with one.
    var errorMessage: String?

    init(id: UInt64, responder: HTTPResponder, dialect: Dialect?, stream: Bool, model: String?, arrivalNanos: UInt64) {
        self.id = id
        self.idString = String(id)
        self.responder = responder
        self.dialect = dialect
        self.stream = stream
        self.model = model
        self.arrivalNanos = arrivalNanos
    }

    func cancelTimers() {
        for t in timers { t.cancel() }
        timers.removeAll()
    }
}

/// Lets other threads reach a loop-bound request (only inside `loop.execute`).
typealias TrackedHandle = LoopBound<TrackedRequest>

extension LoopBound where Value == TrackedRequest {
    /// The request; on its loop only.
    var request: TrackedRequest { value }
}

/// Every request in flight, by id: for duplicate-id checks, task counts, and failing the requests of a removed
/// instance. The lock is held for a dictionary operation only.
final class RequestRegistry: Sendable {
    private struct Entry {
        var handle: TrackedHandle
        /// The instances that hold a task of the request (PD: P and D until P's first frame, then D).
        var instances: [InstanceID]
    }
    private let table = Mutex<[UInt64: Entry]>([:])

    /// false when the id is already in use.
    func insert(_ r: TrackedRequest) -> Bool {
        table.withLock { t in
            if t[r.id] != nil { return false }
            t[r.id] = Entry(handle: TrackedHandle(r, on: r.responder.loop), instances: [])
            return true
        }
    }

    func assign(_ id: UInt64, to instance: InstanceID?) {
        table.withLock { $0[id]?.instances = instance.map { [$0] } ?? [] }
    }

    func assign(_ id: UInt64, toAll instances: [InstanceID]) {
        table.withLock { $0[id]?.instances = instances }
    }

    func handle(_ id: UInt64) -> TrackedHandle? { table.withLock { $0[id]?.handle } }

    func remove(_ id: UInt64) { _ = table.withLock { $0.removeValue(forKey: id) } }

    var count: Int { table.withLock { $0.count } }

    func handles(on instances: Set<InstanceID>) -> [TrackedHandle] {
        table.withLock { t in t.values.compactMap { e in e.instances.contains(where: instances.contains) ? e.handle : nil } }
    }

    func counts() -> [InstanceID: Int] {
        table.withLock { t in
            var out: [InstanceID: Int] = [:]
            for e in t.values { for i in e.instances { out[i, default: 0] += 1 } }
            return out
        }
    }
}
