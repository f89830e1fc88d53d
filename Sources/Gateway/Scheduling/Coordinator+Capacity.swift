import MSCore

extension Coordinator {
    /// default_scheduler found no instance for `t`: it waits, until its schedule timeout, for the next release of
    /// capacity (``CapacitySignal``), then `retry` runs on its loop. `seen` is the generation read before the view
    /// that had no room. Loop thread.
    func waitForCapacity(_ t: TrackedRequest, seen: UInt64, retry: @escaping @Sendable (TrackedRequest) -> Void) {
        let handle = TrackedHandle(t, on: t.responder.loop)
        let parked = cluster.capacity.park(t.id, seen: seen) {
            handle.execute { t in if !t.finished { retry(t) } }
        }
        // released while this attempt looked: ask again now (posted, so a burst of releases cannot recurse)
        if !parked { handle.execute { t in if !t.finished { retry(t) } } }
    }
}
