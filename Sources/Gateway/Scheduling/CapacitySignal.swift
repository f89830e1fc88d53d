import Synchronization

/// Where requests wait when no instance can take them (default_scheduler), until something happens that could
/// change a policy's answer: a new cluster view (refresh, offline/online), a circuit that opens or closes, a `/dresult`
/// link that comes back. Each of those calls ``released()``; every waiting request then asks again, once.
///
/// A request reads ``generation`` before it reads the view it schedules on and hands it to ``park(_:seen:wake:)``;
/// a release between the two makes the park fail so the request asks again at once — no release is missed.
public final class CapacitySignal: Sendable {
    public typealias Wake = @Sendable () -> Void

    private let current = Atomic<UInt64>(0)
    private let parkedCount = Atomic<Int>(0)
    private let waiting = Mutex<[UInt64: Wake]>([:])
    private let parks = Atomic<Int>(0)
    private let wakes = Atomic<Int>(0)

    public init() {}

    /// Read before the view a scheduling attempt uses.
    public var generation: UInt64 { current.load(ordering: .sequentiallyConsistent) }

    /// Makes request `id` wait for the next release, unless one came after `seen` (then false: ask again now).
    public func park(_ id: UInt64, seen: UInt64, wake: @escaping Wake) -> Bool {
        waiting.withLock { w in
            // counted first, so a release that bumps the generation after the check below sees this request
            parkedCount.add(1, ordering: .sequentiallyConsistent)
            guard current.load(ordering: .sequentiallyConsistent) == seen else {
                parkedCount.subtract(1, ordering: .sequentiallyConsistent)
                return false
            }
            if w.updateValue(wake, forKey: id) != nil { parkedCount.subtract(1, ordering: .sequentiallyConsistent) }
            parks.add(1, ordering: .relaxed)
            return true
        }
    }

    /// Request `id` ended: it no longer waits.
    public func remove(_ id: UInt64) {
        guard parkedCount.load(ordering: .relaxed) > 0 else { return }
        waiting.withLock { w in
            if w.removeValue(forKey: id) != nil { parkedCount.subtract(1, ordering: .sequentiallyConsistent) }
        }
    }

    /// Capacity may have been released: every waiting request asks again.
    public func released() {
        current.add(1, ordering: .sequentiallyConsistent)
        guard parkedCount.load(ordering: .sequentiallyConsistent) > 0 else { return }
        let woken: [Wake] = waiting.withLock { w in
            let all = Array(w.values)
            w.removeAll()
            parkedCount.subtract(all.count, ordering: .sequentiallyConsistent)
            return all
        }
        wakes.add(woken.count, ordering: .relaxed)
        for wake in woken { wake() }
    }

    /// Requests waiting now.
    public var waitingCount: Int { parkedCount.load(ordering: .relaxed) }
    /// Times a request started waiting (a request that waits twice counts twice).
    public var parkCount: Int { parks.load(ordering: .relaxed) }
    /// Times a waiting request was woken.
    public var wakeCount: Int { wakes.load(ordering: .relaxed) }
}
