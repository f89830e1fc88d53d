internal import CH2O

/// One h2o event loop and its thread. Work for a loop runs on that loop's thread; `execute` is the one way in
/// from elsewhere.
public final class EventLoop: @unchecked Sendable {
    let raw: OpaquePointer
    private let ownsThread: Bool
    public let index: Int

    init(adopting raw: OpaquePointer) {
        self.raw = raw
        self.ownsThread = false
        self.index = Int(ch2o_loop_index(raw))
        ch2o_loop_set_user(raw, Unmanaged.passUnretained(self).toOpaque())
    }

    /// A loop with a thread of its own (for clients in processes without a server).
    public init() {
        guard let raw = ch2o_loop_create() else { fatalError("too many event loops in this process") }
        self.raw = raw
        self.ownsThread = true
        self.index = Int(ch2o_loop_index(raw))
        ch2o_loop_set_user(raw, Unmanaged.passUnretained(self).toOpaque())
        precondition(ch2o_loop_start_thread(raw) == 0, "cannot start an event-loop thread")
    }

    /// Stops and joins a loop created with `init()`.
    public func stop() {
        if ownsThread { ch2o_loop_stop_and_join(raw) }
    }

    static func from(_ raw: OpaquePointer) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(ch2o_loop_get_user(raw)!).takeUnretainedValue()
    }

    public var inEventLoop: Bool { ch2o_loop_is_current(raw) != 0 }

    /// Milliseconds on the loop's clock (loop thread only).
    public var nowMilliseconds: UInt64 { ch2o_loop_now(raw) }

    /// Runs `work` on this loop's thread. Callable from any thread. Returns false, without running `work`, once
    /// the loop has stopped: a caller waiting on `work` must then answer itself (work posted earlier still runs).
    @discardableResult
    public func execute(_ work: @escaping @Sendable () -> Void) -> Bool {
        let box = Unmanaged.passRetained(WorkBox(work))
        guard ch2o_loop_post(raw, runWorkBox, box.toOpaque()) == 0 else {
            box.release()
            return false
        }
        return true
    }

    /// Runs `work` on this loop after `ms` milliseconds. Loop thread only.
    @discardableResult
    public func schedule(afterMilliseconds ms: UInt64, _ work: @escaping () -> Void) -> LoopTimer {
        assert(inEventLoop, "EventLoop.schedule called off the loop")
        let timer = LoopTimer(loop: self, work: work)
        let ctx = Unmanaged.passRetained(timer).toOpaque()
        timer.raw = ch2o_timer_start(raw, ms, fireLoopTimer, ctx)
        return timer
    }
}

private final class WorkBox {
    let work: @Sendable () -> Void
    init(_ work: @escaping @Sendable () -> Void) { self.work = work }
}

private let runWorkBox: @convention(c) (UnsafeMutableRawPointer?) -> Void = { arg in
    Unmanaged<WorkBox>.fromOpaque(arg!).takeRetainedValue().work()
}

/// A one-shot timer on a loop; cancel it on the same loop.
public final class LoopTimer {
    fileprivate var raw: OpaquePointer?
    fileprivate let work: () -> Void
    private let loop: EventLoop

    fileprivate init(loop: EventLoop, work: @escaping () -> Void) {
        self.loop = loop
        self.work = work
    }

    public var isPending: Bool { raw != nil }

    public func cancel() {
        assert(loop.inEventLoop, "LoopTimer.cancel called off its loop")
        guard let raw else { return }
        self.raw = nil
        ch2o_timer_cancel(raw)
        Unmanaged.passUnretained(self).release()
    }
}

private let fireLoopTimer: @convention(c) (UnsafeMutableRawPointer?) -> Void = { ctx in
    let timer = Unmanaged<LoopTimer>.fromOpaque(ctx!).takeRetainedValue()
    timer.raw = nil
    timer.work()
}
