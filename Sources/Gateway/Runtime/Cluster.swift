public import MSCore
import Synchronization

/// What an instance is known by across refreshes: its id and where it listens. The same key means the same
/// process, so its load (and health) carry over; a new address is a new process with nothing in flight.
struct InstanceKey: Hashable, Sendable {
    let id: InstanceID
    let ip: String
    let port: Int
}

/// The live state of one instance that must outlive refreshes: every `InstanceEntry` built for it shares this
/// object, so a request decrements exactly the counter it incremented, whichever refresh came in between.
/// Read from every loop without locks (atomics only).
public final class InstanceLoad: Sendable {
    /// Requests dispatched to the instance and not yet finished.
    let inFlight = Atomic<Int>(0)

    // Passive health (the circuit breaker of `instance_health_config`).
    /// Failed attempts since the last success.
    let failures = Atomic<Int>(0)
    /// 0 while the circuit is closed; else the uptime (ns) at which the next probe is due.
    let openUntil = Atomic<UInt64>(0)
    /// Consecutive openings without a success in between (the probe back-off doubles with each).
    let openings = Atomic<Int>(0)
    /// Circuits open in the whole cluster, so a healthy cluster skips the per-request filter.
    private let tally: BreakerTally
    /// Rates and latencies for the status page.
    let stats = InstanceStats()

    init(tally: BreakerTally = BreakerTally()) { self.tally = tally }

    public var inFlightCount: Int { inFlight.load(ordering: .relaxed) }

    public enum CircuitState: String, Sendable { case closed, open, halfOpen = "half_open" }

    /// Open: excluded until its probe is due; half-open: still excluded, its probe is due or under way.
    public func circuit(now: UInt64) -> CircuitState {
        let until = openUntil.load(ordering: .relaxed)
        if until == 0 { return .closed }
        return now < until ? .open : .halfOpen
    }

    /// Whether new requests may go to the instance.
    var routable: Bool { openUntil.load(ordering: .relaxed) == 0 }

    /// Counts a failed attempt. Returns true when this failure opened the circuit (the caller schedules the probe).
    func recordFailure(threshold: Int, now: UInt64, backoff: (Int) -> UInt64) -> Bool {
        guard threshold > 0 else { return false }
        let n = failures.add(1, ordering: .relaxed).newValue
        guard n >= threshold else { return false }
        let until = max(now &+ backoff(openings.load(ordering: .relaxed)), 1)
        guard openUntil.compareExchange(expected: 0, desired: until, ordering: .relaxed).exchanged else { return false }
        openings.add(1, ordering: .relaxed)
        tally.open.add(1, ordering: .relaxed)
        // the routable view changed (with every circuit open it falls back to the whole cluster)
        tally.capacity?.released()
        return true
    }

    /// The instance answered: the circuit closes.
    func recordSuccess() {
        if failures.load(ordering: .relaxed) != 0 { failures.store(0, ordering: .relaxed) }
        guard openUntil.load(ordering: .relaxed) != 0 else { return }
        if openUntil.exchange(0, ordering: .relaxed) != 0 {
            openings.store(0, ordering: .relaxed)
            tally.open.subtract(1, ordering: .relaxed)
            tally.capacity?.released()
        }
    }

    /// A probe failed: the circuit stays open until the next, later probe. Returns that probe's due time.
    func probeFailed(now: UInt64, backoff: (Int) -> UInt64) -> UInt64? {
        let until = max(now &+ backoff(openings.load(ordering: .relaxed)), 1)
        let current = openUntil.load(ordering: .relaxed)
        // closed meanwhile by a successful reply: nothing to reschedule
        guard current != 0, openUntil.compareExchange(expected: current, desired: until, ordering: .relaxed).exchanged else { return nil }
        openings.add(1, ordering: .relaxed)
        return until
    }

    /// The instance left the cluster for good: its open circuit no longer counts.
    func retire() {
        if openUntil.exchange(0, ordering: .relaxed) != 0 { tally.open.subtract(1, ordering: .relaxed) }
    }
}

/// How many circuits are open in a cluster, and whom to tell when one opens or closes.
final class BreakerTally: Sendable {
    let open = Atomic<Int>(0)
    let capacity: CapacitySignal?
    init(capacity: CapacitySignal? = nil) { self.capacity = capacity }
}

/// One registered instance: what the Controller told us, plus our connection pool and its live load.
public final class InstanceEntry: Sendable {
    public let info: InstanceInfo
    public let ip: String
    public let port: Int
    public let metricPort: Int
    public let interCommPort: Int
    public let virtualID: UInt64
    public let upstream: Upstream
    /// Shared by every entry of the same instance (see ``InstanceLoad``).
    public let load: InstanceLoad

    init(info: InstanceInfo, ip: String, port: Int, metricPort: Int, interCommPort: Int, virtualID: UInt64, upstream: Upstream,
         load: InstanceLoad = InstanceLoad()) {
        self.info = info
        self.ip = ip
        self.port = port
        self.metricPort = metricPort
        self.interCommPort = interCommPort
        self.virtualID = virtualID
        self.upstream = upstream
        self.load = load
    }

    /// The same connection pool and load object with newer dynamic info.
    func updated(_ info: InstanceInfo) -> InstanceEntry {
        InstanceEntry(info: info, ip: ip, port: port, metricPort: metricPort, interCommPort: interCommPort,
                      virtualID: virtualID, upstream: upstream, load: load)
    }

    var key: InstanceKey { InstanceKey(id: info.id, ip: ip, port: port) }

    public var inFlightCount: Int { load.inFlightCount }
}

/// An immutable view of the cluster, swapped whole when a refresh arrives; readers never see it change.
public final class ClusterView: Sendable {
    public let snapshot: InstanceSnapshot
    public let entries: [InstanceID: InstanceEntry]
    /// At least one refresh with instances was received.
    public let initialized: Bool
    let deployPD: Bool
    /// The live counters of `entries`, indexed once per view (schedulers read the atomics in place).
    private let liveLoad: LoadCounters

    init(entries: [InstanceEntry], initialized: Bool, deployPD: Bool) {
        self.snapshot = InstanceSnapshot(entries.map(\.info))
        var table: [InstanceID: InstanceEntry] = [:]
        var loads: [InstanceID: InstanceLoad] = [:]
        for e in entries {
            table[e.info.id] = e
            loads[e.info.id] = e.load
        }
        self.entries = table
        self.liveLoad = LoadCounters(live: loads)
        self.initialized = initialized
        self.deployPD = deployPD
    }

    /// PD: at least one P and one D; single node: at least one instance.
    public var available: Bool {
        if deployPD {
            return !snapshot.instances(role: .prefill).isEmpty && !snapshot.instances(role: .decode).isEmpty
        }
        return !snapshot.instances.isEmpty
    }

    func load() -> LoadCounters { liveLoad }

    /// The same view without `excluded` (for retries on another instance).
    func without(_ excluded: Set<InstanceID>) -> ClusterView {
        ClusterView(entries: snapshot.instances.compactMap { excluded.contains($0.id) ? nil : entries[$0.id] },
                    initialized: initialized, deployPD: deployPD)
    }
}

/// The live cluster view, replaced atomically (the lock is held only to swap or copy a reference).
public final class Cluster: Sendable {
    private let current: Mutex<ClusterView>
    /// Every instance's load object by key, kept while it is registered or still has requests in flight, so an
    /// instance that leaves and comes back before its last request ended keeps one counter. Touched by refreshes.
    private let loads = Mutex<[InstanceKey: InstanceLoad]>([:])
    /// Wakes requests waiting for an instance whenever the routable view may have gained room.
    let capacity = CapacitySignal()
    let breakers: BreakerTally
    /// D's whose `/dresult` link is down (kept out of PD scheduling until it is back).
    let unlinked: UnlinkedSet

    init(deployPD: Bool) {
        current = Mutex(ClusterView(entries: [], initialized: false, deployPD: deployPD))
        breakers = BreakerTally(capacity: capacity)
        unlinked = UnlinkedSet(capacity: capacity)
    }

    public var view: ClusterView { current.withLock { $0 } }

    func replace(_ view: ClusterView) {
        current.withLock { $0 = view }
        let live = Set(view.entries.values.map(\.key))
        let gone = loads.withLock { table in
            let gone = table.filter { !live.contains($0.key) && $0.value.inFlightCount == 0 }
            for k in gone.keys { table[k] = nil }
            return gone.values
        }
        for l in gone { l.retire() }
        capacity.released()
    }

    /// The view new requests are scheduled on: without instances whose circuit is open, unless that would leave
    /// nothing to serve (then the Controller's view stands as it is).
    func routableView() -> ClusterView {
        let v = view
        guard breakers.open.load(ordering: .relaxed) > 0 else { return v }
        var sick = Set<InstanceID>()
        for (id, e) in v.entries where !e.load.routable { sick.insert(id) }
        guard !sick.isEmpty else { return v }
        let r = v.without(sick)
        return r.available ? r : v
    }

    /// The load object of the instance `key` (created on first sight).
    func load(for key: InstanceKey) -> InstanceLoad {
        loads.withLock { table in
            if let l = table[key] { return l }
            let l = InstanceLoad(tally: breakers)
            table[key] = l
            return l
        }
    }
}

/// The D's whose `/dresult` link is down. A D that comes back may be the room a waiting request needs.
final class UnlinkedSet: Sendable {
    private let ids = Mutex<Set<InstanceID>>([])
    private let capacity: CapacitySignal

    init(capacity: CapacitySignal) { self.capacity = capacity }

    /// Reads or changes the set (the lock is held for `body` only); a set that shrank wakes waiting requests.
    func withLock<R: Sendable>(_ body: (inout Set<InstanceID>) -> R) -> R {
        let (result, shrank) = ids.withLock { s in
            let before = s.count
            let r = body(&s)
            return (r, s.count < before)
        }
        if shrank { capacity.released() }
        return result
    }
}
