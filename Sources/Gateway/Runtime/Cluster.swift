import MSCore
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

    init() {}

    public var inFlightCount: Int { inFlight.load(ordering: .relaxed) }
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

    init(deployPD: Bool) {
        current = Mutex(ClusterView(entries: [], initialized: false, deployPD: deployPD))
    }

    public var view: ClusterView { current.withLock { $0 } }

    func replace(_ view: ClusterView) {
        current.withLock { $0 = view }
        let live = Set(view.entries.values.map(\.key))
        loads.withLock { table in
            table = table.filter { live.contains($0.key) || $0.value.inFlightCount > 0 }
        }
    }

    /// The load object of the instance `key` (created on first sight).
    func load(for key: InstanceKey) -> InstanceLoad {
        loads.withLock { table in
            if let l = table[key] { return l }
            let l = InstanceLoad()
            table[key] = l
            return l
        }
    }
}
