import Foundation
import Logging
import MSCore
import Synchronization

/// Coordinator master/standby through etcd (`backup_config`, spec §6 "Backup mode"), PD modes only.
///
/// - Lock `<prefix>/coordinator/leader-lock` (prefix `/<POD_NAMESPACE>/<MINDIE_MS_CLUSTER_NAME>`, each part when set:
///   `HAKeys`), value `POD_IP` when set, else
///   `<manage_ip>:<manage_port>`; lease `backup_config.lease_ttl_seconds` (ours, optional; the reference's 20 s).
/// - The master holds the `/dresult` links (a D accepts one link at a time), answers `/v1/readiness` 200 and
///   serves. A standby applies the Controller's refreshes without opening links, answers `/v1/readiness` 503 and
///   refuses inference with 503 (a Kubernetes Service sends it nothing). On takeover it opens a link to every D
///   it knows and becomes ready; on losing the lease (by its own clock) it closes its links at once.
/// - etcd failures are retried forever with an error log line; the process stays not ready meanwhile.
/// In `single_node` mode there are no links: every Coordinator is active and no etcd is used.
final class BackupMode: Sendable {
    let election: LeaderElection
    private let task = Mutex<Task<Void, Never>?>(nil)
    /// Holds the links and serves. Unlike the Controller's fence this survives an etcd outage: a master that
    /// cannot reach etcd keeps serving the last instance set (nobody else can be elected without etcd) and steps
    /// down only when etcd answers and names another holder, or its lease is gone.
    private let master = Atomic<Bool>(false)

    init(config: CoordinatorConfig, client: EtcdClient, identity: String, environment: [String: String], logger: Logger) {
        let prefix = HAKeys.prefix(environment: environment)
        let cfg = LeaderElection.Configuration(
            lockKey: prefix + "/coordinator/leader-lock", value: identity, ttlSeconds: Int64(config.backup.leaseTTLSeconds))
        election = LeaderElection(client: client, configuration: cfg, logger: logger)
    }

    /// This process may act as master now (its lease is confirmed by its own clock).
    var isMaster: Bool { master.load(ordering: .acquiring) }

    func start(_ coordinator: Coordinator) {
        let handlers = LeaderElection.Handlers(
            elected: { [weak coordinator, self] _ in
                if !self.master.exchange(true, ordering: .acquiringAndReleasing) { coordinator?.becameMaster() }
            },
            demoted: { [weak coordinator, self] why in
                // etcd unreachable (or this process frozen): keep serving until etcd names someone else
                guard why == "lease expired in etcd" || why == "the lock is no longer ours" || why == "stopping" else {
                    coordinator?.logger.warning("backup mode: lease not confirmed; still serving until etcd answers", metadata: ["why": "\(why)"])
                    return
                }
                if self.master.exchange(false, ordering: .acquiringAndReleasing) { coordinator?.becameStandby() }
            },
            otherHolds: { [weak coordinator, self] _ in
                if self.master.exchange(false, ordering: .acquiringAndReleasing) { coordinator?.becameStandby() }
            })
        let election = self.election
        task.withLock { t in
            guard t == nil else { return }
            t = Task { await election.run(handlers) }
        }
    }

    func stop() {
        let t = task.withLock { t in defer { t = nil }; return t }
        t?.cancel()
        guard let t else { return }
        let done = DispatchSemaphore(value: 0)
        Task {
            await t.value
            done.signal()
        }
        _ = done.wait(timeout: .now() + 6)
    }
}

/// The newest Controller term seen on instance-changing calls (`x-ms-term`): a call from an older term comes
/// from a deposed leader and is refused.
final class TermFence: Sendable {
    private let highest = Atomic<Int64>(0)

    /// - Returns: nil when the call may proceed, else the term it is behind.
    func admit(_ header: String?) -> Int64? {
        guard let header, let term = Int64(header.trimmingCharacters(in: .whitespaces)) else { return nil }
        var current = highest.load(ordering: .acquiring)
        while true {
            if term < current { return current }
            if term == current { return nil }
            let (exchanged, original) = highest.compareExchange(expected: current, desired: term, ordering: .acquiringAndReleasing)
            if exchanged { return nil }
            current = original
        }
    }
}

extension Coordinator {
    /// Whether this process holds the `/dresult` links and serves (always, without backup mode).
    var isMaster: Bool { backupMode?.isMaster ?? true }

    /// Whether new requests are taken (and readiness is 200 once instances are known): the master, unless it is
    /// draining for a stop.
    var isServing: Bool { isMaster && !draining.load(ordering: .acquiring) }

    /// Graceful stop (SIGTERM: a rollout or `msctl update` replacing this pod): readiness and new requests get 503 at
    /// once while the requests in flight finish. A master keeps its lease and its `/dresult` links meanwhile: a D
    /// keeps one link only, so a standby taking over now would take the results of every stream in flight here.
    /// The lease is given back by `shutdown()` afterwards, so the standby takes over within its poll interval instead
    /// of a TTL. Bounded by `exception_config.drain_timeout` (the manifests give the pod that plus a margin as its
    /// termination grace period).
    /// - Parameters:
    ///   - timeoutSeconds: the bound; 0 = no drain.
    ///   - wait: waits up to the given milliseconds; returns true to stop draining at once (a second signal).
    /// - Returns: requests still in flight when it stopped waiting (0 = drained).
    public func drain(timeoutSeconds: Int, wait: (Int) -> Bool) -> Int {
        draining.store(true, ordering: .releasing)
        var left = inFlightCount
        guard left > 0, timeoutSeconds > 0 else { return left }
        let started = ContinuousClock.now
        let deadline = started + .seconds(timeoutSeconds)
        logger.notice("draining before stop: readiness 503 and new requests refused; the lease and the links are kept until the requests in flight finish",
                      metadata: ["in_flight": "\(left)", "drain_timeout": "\(timeoutSeconds) s", "master": "\(isMaster)"])
        while left > 0, ContinuousClock.now < deadline {
            if wait(50) {
                logger.warning("drain cut short by a second signal", metadata: ["in_flight": "\(inFlightCount)"])
                return inFlightCount
            }
            left = inFlightCount
        }
        if left > 0 {
            logger.warning("drain timed out: the requests still in flight fail", metadata: ["in_flight": "\(left)"])
        } else {
            logger.notice("drained", metadata: ["took": "\(ContinuousClock.now - started)"])
        }
        return left
    }

    /// Takeover: open a link to every D of the current view, then readiness follows the links.
    func becameMaster() {
        logger.notice("backup mode: master, opening the /dresult links")
        linkLoop.execute { [self] in
            for e in self.cluster.view.entries.values where e.info.role == .decode {
                if let l = self.links[e.info.id], !l.closed { continue }
                let link = DResultLink(instance: e.info.id, ip: e.ip, port: e.port, virtualID: e.virtualID)
                self.links[e.info.id] = link
                _ = self.unlinked.withLock { $0.insert(e.info.id) }
                // as a refresh opens a link (a D holds the head until its first message, so a link that is not refused
                // within 300 ms counts as open); a refused one relinks, then the D is marked faulty as any lost link
                self.openLink(link) { [self] ok in if !ok { self.relinkFailed(link) } }
            }
        }
    }

    /// Lost the lease: a standby holds no links (so the new master's links are not closed by ours).
    func becameStandby() {
        logger.warning("backup mode: standby, closing the /dresult links")
        linkLoop.execute { [self] in
            for (id, l) in self.links {
                l.close()
                _ = self.unlinked.withLock { $0.remove(id) }
                // their results cannot arrive here any more
                for handle in self.registry.handles(on: [id]) {
                    handle.loop.execute { [self] in self.fail(handle.request, .decodeLinkLost, result: .upstreamError) }
                }
            }
            self.links.removeAll()
        }
    }

    /// Builds backup mode from `backup_config` when it applies (PD modes); nil otherwise.
    static func makeBackupMode(config: CoordinatorConfig, manageEndpoint: String, logger: Logger) throws(CoordinatorStartError) -> BackupMode? {
        guard config.backup.functionEnable else { return nil }
        guard config.scheduler.deployMode.isPD else {
            logger.notice("backup_config.function_enable ignored in single_node mode: every Coordinator is active, no etcd is used")
            return nil
        }
        var tls: TLSClient?
        if let t = config.tls["etcd_server"], t.enabled {
            do {
                tls = try TLSClient(try t.items.configuration(environment: ProcessInfo.processInfo.environment))
            } catch {
                throw CoordinatorStartError("etcd_server TLS: \(error)")
            }
        }
        let env = ProcessInfo.processInfo.environment
        guard let endpoints = EtcdClient.Endpoint.list(config.backup.databaseServerDNS, defaultPort: config.backup.databaseServerPort) else {
            throw CoordinatorStartError("backup_config.database_server_dns must be a host or comma-separated host[:port] members, got \"\(config.backup.databaseServerDNS)\"")
        }
        let client = EtcdClient(endpoints: endpoints, tls: tls)
        let identity = env["POD_IP"].flatMap { $0.isEmpty ? nil : $0 } ?? manageEndpoint
        return BackupMode(config: config, client: client, identity: identity, environment: env, logger: logger)
    }
}
