/// Where an instance writes one HTTP response. `HTTPResponder` is one; tests use a recorder.
public protocol ResponseSink: AnyObject {
    func respond(status: Int, headers: [(String, String)], body: [UInt8])
    func startStream(status: Int, headers: [(String, String)])
    func write(_ bytes: [UInt8])
    func end()
    /// Breaks the stream: the client sees an error, not a clean end.
    func abort()
    /// Set by the instance; called if the client leaves before the end.
    var onClientGone: (() -> Void)? { get set }
    var isFinished: Bool { get }
}

/// How the instance reaches other instances (P→D decode calls and KV releases).
public protocol PDTransport: AnyObject {
    /// Sends the decode call; `completion` gets nil when D accepted, else the reason.
    func sendDecode(host: String, port: Int, parameters: DecodeParameters, completion: @escaping (String?) -> Void)
    /// Tells P that D has pulled the KV of `reqId`.
    func sendRelease(host: String, port: Int, reqId: String)
}

/// A timer queue on the instance's own time axis (ms), so a manual clock can drive it.
public final class TimerQueue {
    public final class Timer {
        let deadline: Double
        let seq: Int
        var work: (() -> Void)?
        init(deadline: Double, seq: Int, work: @escaping () -> Void) { self.deadline = deadline; self.seq = seq; self.work = work }
        public func cancel() { work = nil }
        public var isPending: Bool { work != nil }
    }

    private var timers: [Timer] = []
    private var seq = 0

    public init() {}

    @discardableResult
    public func schedule(at deadline: Double, _ work: @escaping () -> Void) -> Timer {
        seq += 1
        let t = Timer(deadline: deadline, seq: seq, work: work)
        timers.append(t)
        return t
    }

    public var nextDeadline: Double? {
        timers.removeAll { $0.work == nil }
        return timers.map(\.deadline).min()
    }

    /// Runs every timer due at `now`, in deadline order (timers they add are run too if due).
    public func runDue(now: Double) {
        while true {
            timers.removeAll { $0.work == nil }
            guard let t = timers.filter({ $0.deadline <= now }).min(by: { ($0.deadline, $0.seq) < ($1.deadline, $1.seq) }) else { return }
            let w = t.work
            t.work = nil
            w?()
        }
    }
}
