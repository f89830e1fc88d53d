import MSCore
import Synchronization

/// One registered instance: what the Controller told us, plus our connection pool and load counter.
public final class InstanceEntry: Sendable {
    public let info: InstanceInfo
    public let ip: String
    public let port: Int
    public let metricPort: Int
    public let interCommPort: Int
    public let virtualID: UInt64
    public let upstream: Upstream
    /// Requests dispatched to it and not yet finished.
    let inFlight = Atomic<Int>(0)

    init(info: InstanceInfo, ip: String, port: Int, metricPort: Int, interCommPort: Int, virtualID: UInt64, upstream: Upstream) {
        self.info = info
        self.ip = ip
        self.port = port
        self.metricPort = metricPort
        self.interCommPort = interCommPort
        self.virtualID = virtualID
        self.upstream = upstream
    }

    /// The same connection pool and counter with newer dynamic info.
    func updated(_ info: InstanceInfo) -> InstanceEntry {
        let e = InstanceEntry(info: info, ip: ip, port: port, metricPort: metricPort, interCommPort: interCommPort,
                              virtualID: virtualID, upstream: upstream)
        e.inFlight.store(inFlight.load(ordering: .relaxed), ordering: .relaxed)
        return e
    }

    public var inFlightCount: Int { inFlight.load(ordering: .relaxed) }
}

/// An immutable view of the cluster, swapped whole when a refresh arrives; readers never see it change.
public final class ClusterView: Sendable {
    public let snapshot: InstanceSnapshot
    public let entries: [InstanceID: InstanceEntry]
    /// At least one refresh with instances was received.
    public let initialized: Bool
    let deployPD: Bool

    init(entries: [InstanceEntry], initialized: Bool, deployPD: Bool) {
        self.snapshot = InstanceSnapshot(entries.map(\.info))
        var table: [InstanceID: InstanceEntry] = [:]
        for e in entries { table[e.info.id] = e }
        self.entries = table
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

    func load() -> LoadCounters {
        var m: [InstanceID: Int] = [:]
        m.reserveCapacity(entries.count)
        for (id, e) in entries { m[id] = e.inFlightCount }
        return LoadCounters(m)
    }

    /// The same view without `excluded` (for retries on another instance).
    func without(_ excluded: Set<InstanceID>) -> ClusterView {
        ClusterView(entries: snapshot.instances.compactMap { excluded.contains($0.id) ? nil : entries[$0.id] },
                    initialized: initialized, deployPD: deployPD)
    }
}

/// The live cluster view, replaced atomically (the lock is held only to swap or copy a reference).
public final class Cluster: Sendable {
    private let current: Mutex<ClusterView>

    init(deployPD: Bool) {
        current = Mutex(ClusterView(entries: [], initialized: false, deployPD: deployPD))
    }

    public var view: ClusterView { current.withLock { $0 } }

    func replace(_ view: ClusterView) { current.withLock { $0 = view } }
}
