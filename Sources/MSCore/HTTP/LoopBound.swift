/// A value that belongs to one event loop. It may be carried across threads (it is Sendable, so it can ride in
/// the closures `execute` and async code need), but it is only touched on its loop: every access checks
/// `inEventLoop` in debug builds, so a slip is a crash in the tests instead of a data race in production.
/// This is the one box for loop-confined values; nothing else in the project should need `@unchecked Sendable`
/// to move a responder, link, request or callback to its loop.
public struct LoopBound<Value>: @unchecked Sendable {
    public let loop: EventLoop
    private let stored: Value

    /// Binds `value` to `loop`; may be called on any thread (the value is not touched here).
    public init(_ value: Value, on loop: EventLoop) {
        self.loop = loop
        self.stored = value
    }

    /// The value; on `loop` only.
    public var value: Value {
        assert(loop.inEventLoop, "LoopBound<\(Value.self)> touched off its event loop")
        return stored
    }

    /// Runs `body` with the value on its loop. Returns false, without running `body`, once the loop has stopped.
    @discardableResult
    public func execute(_ body: @escaping @Sendable (Value) -> Void) -> Bool {
        loop.execute { body(self.value) }
    }
}

extension HTTPResponder {
    /// This responder, to carry through async code back to its loop.
    public var bound: LoopBound<HTTPResponder> { LoopBound(self, on: loop) }
}
