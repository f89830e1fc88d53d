public import Foundation

/// The time source of the Controller runtime (injected so tests can drive it).
public protocol ControllerClock: Sendable {
    /// The current time.
    func now() -> Date
    /// Suspends for `seconds`.
    /// - Throws: `CancellationError` when the task is cancelled.
    func sleep(seconds: TimeInterval) async throws
}

/// Wall-clock time and `Task.sleep`.
public struct SystemControllerClock: ControllerClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(seconds: TimeInterval) async throws {
        try await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1_000_000_000))
    }
}
