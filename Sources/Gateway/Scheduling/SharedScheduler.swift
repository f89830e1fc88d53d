import Synchronization

/// A ``Scheduler`` shared by several event loops: one lock around the policy state (cursors, caches).
///
/// The critical section is the pure policy only (no I/O), so it is short. Loops that prefer no
/// sharing can own a ``Scheduler`` each instead.
public final class SharedScheduler: Sendable {
    private let state: Mutex<Scheduler>

    public init(_ scheduler: Scheduler) {
        state = Mutex(scheduler)
    }

    /// Chooses where `request` goes now, or nil if nothing can take it (see ``Scheduler/select(_:snapshot:load:)``).
    public func select(_ request: RequestFeatures, snapshot: InstanceSnapshot, load: LoadCounters) -> SchedulingDecision? {
        state.withLock { $0.select(request, snapshot: snapshot, load: load) }
    }
}
