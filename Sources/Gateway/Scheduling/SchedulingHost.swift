public import MSCore
import Synchronization

/// Owns the configured policy's state for the whole Coordinator, as the policy's ``PolicyStateScope`` asks:
/// a copy per event loop (no lock), or one copy behind a lock of its own when its state is cluster-wide.
public final class SchedulingHost: Sendable {
    /// The `algorithm_type` in use.
    public let name: String
    /// What the parser must extract for this policy.
    public let needs: RequestNeeds
    private let shared: Mutex<Scheduler>?
    private let perLoop: LoopLocal<Scheduler>?

    public init(config: CoordinatorConfig.Scheduler, registry: PolicyRegistry = .builtIn) {
        let type = registry.policy(for: config)
        name = config.algorithm.rawValue
        // DIGS is no plug-in, but its demand and decode score come from the prompt's size (§5.1)
        needs = type?.needs ?? (config.algorithm == .loadBalance ? DIGSScheduler.needs : [])
        let scheduler = Scheduler(config: config, registry: registry)
        if type?.scope == .loop {
            shared = nil
            perLoop = LoopLocal { scheduler }
        } else {
            shared = Mutex(scheduler)
            perLoop = nil
        }
    }

    /// Chooses where `request` goes now, or nil if nothing in `snapshot` can take it. Called on `loop` (the
    /// request's), whose copy of the state a loop-scoped policy uses.
    public func select(_ request: RequestFeatures, snapshot: InstanceSnapshot, load: LoadCounters,
                       on loop: EventLoop) -> SchedulingDecision? {
        if let perLoop {
            return perLoop.withValue(on: loop) { $0.select(request, snapshot: snapshot, load: load) }
        }
        return shared!.withLock { $0.select(request, snapshot: snapshot, load: load) }
    }

    /// Loops holding a copy of the state (0 for a cluster-scoped policy).
    public var loopCopies: Int { perLoop?.count ?? 0 }
}

/// One value per event loop, each read and changed on its own loop only.
///
/// Lookups take no lock: the loop → slot table is immutable and replaced whole (under a lock) when a loop
/// first asks; old tables stay alive until this object goes, as a reader may still hold one.
final class LoopLocal<Value>: @unchecked Sendable {
    private final class Slot {
        var value: Value
        init(_ value: Value) { self.value = value }
    }
    private final class Table {
        let slots: [ObjectIdentifier: Slot]
        init(_ slots: [ObjectIdentifier: Slot]) { self.slots = slots }
    }

    private let make: @Sendable () -> Value
    private let current = Atomic<Unmanaged<Table>?>(nil)
    private let tables = Mutex<[Table]>([])

    /// `current` borrows the newest table; `tables` keeps every published one alive.
    init(_ make: @escaping @Sendable () -> Value) { self.make = make }

    /// Runs `body` on `loop`'s value (created on first use). Loop thread only.
    func withValue<R>(on loop: EventLoop, _ body: (inout Value) -> R) -> R {
        assert(loop.inEventLoop, "a loop's scheduling state is touched from another thread")
        let key = ObjectIdentifier(loop)
        let slot = current.load(ordering: .acquiring)?.takeUnretainedValue().slots[key] ?? addSlot(key)
        return body(&slot.value)
    }

    var count: Int { current.load(ordering: .acquiring)?.takeUnretainedValue().slots.count ?? 0 }

    private func addSlot(_ key: ObjectIdentifier) -> Slot {
        tables.withLock { tables in
            var slots = tables.last?.slots ?? [:]
            if let s = slots[key] { return s }
            let s = Slot(make())
            slots[key] = s
            let table = Table(slots)
            tables.append(table)
            current.store(Unmanaged.passUnretained(table), ordering: .releasing)
            return s
        }
    }
}
