import Foundation

/// Runs a blocking call (a semaphore wait, a join, a graceful shutdown) on a thread of its own and suspends the
/// calling test until it returns.
///
/// Swift Testing runs every test on the cooperative pool, which has one thread per core: two on the build machine.
/// A test that blocks a pool thread for seconds takes half of all test concurrency with it, and two such tests stop
/// every other test until they finish (pure tests then reported the blocked tests' duration, ~4–13 s each).
public func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}

/// ``run(_:_:environment:)`` off the cooperative pool: a debug binary under load can take a second to start.
public func runOffPool(_ executable: String, _ args: [String], environment: [String: String]? = nil) async throws
    -> ProcessResult {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try run(executable, args, environment: environment) })
        }
    }
}
