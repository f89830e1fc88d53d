import Foundation
import Logging
public import MSCore
import Synchronization

/// Controller active/standby through etcd (controller.md §9, `controller_backup_cfg`).
///
/// - Election: `LeaderElection` on `<prefix>/cluster/leader-lock` (prefix `/<POD_NAMESPACE>/<MINDIE_MS_CLUSTER_NAME>`,
///   each part when set: `HAKeys`), value
///   `POD_IP` when set, else `<http_server.ip>:<probe port>` (two controllers on one host stay distinguishable);
///   lease `lease_ttl_seconds` (reference 20 s).
/// - Only the leader runs the runtime (probes, role posts, refreshes, files). Elected, it recovers the state the
///   previous leader persisted under `<prefix>/controller/node-data` (§9 "Takeover": ids, roles, groups and
///   peers kept; live roles adopted; no re-decision), then persists it every sync period with compare-and-swap.
/// - Fencing: every instance-changing call checks the lease fence and carries `x-ms-term`; a leader that cannot
///   confirm its lease stops acting at the fence deadline, is demoted and forgets its state.
/// - etcd errors (unreachable, wrong address, TLS) are retried forever with an error log line; meanwhile the
///   process answers `/v1/health` 200 and `/v1/readiness` 503 naming the reason.
public final class HAController: Sendable {
    public let election: LeaderElection
    public let lockKey: String
    public let stateKey: String
    let runtime: ControllerRuntime
    let logger: Logger

    init(config: ControllerConfig, client: EtcdClient, fence: LeaseFence, runtime: ControllerRuntime, identity: String, logger: Logger,
         environment: [String: String] = ProcessInfo.processInfo.environment) {
        var env = environment
        if let ns = config.environment.podNamespace { env["POD_NAMESPACE"] = ns }
        let prefix = HAKeys.prefix(environment: env)
        lockKey = prefix + "/cluster/leader-lock"
        stateKey = prefix + "/controller/node-data"
        let cfg = LeaderElection.Configuration(lockKey: lockKey, value: identity, ttlSeconds: Int64(config.backup.leaseTTLSeconds))
        election = LeaderElection(client: client, configuration: cfg, fence: fence, logger: logger)
        self.runtime = runtime
        self.logger = logger
    }

    /// Why this process does not act now, or nil while it leads.
    public var notLeading: String? {
        let s = election.status
        if election.fence.term != nil { return nil }
        if let e = s.etcdError { return "standby: etcd not usable (\(e))" }
        switch s.role {
        case .starting: return "standby: campaigning for leadership"
        case .standby: return "standby: the leader is \(s.holder ?? "being elected")"
        case .leader: return "standby: the lease is not confirmed"
        }
    }

    /// Campaigns, and runs the runtime while leading, until the calling task is cancelled (then demotes and gives
    /// the lease back).
    func run() async {
        let runtime = self.runtime, client = election.client, stateKey = self.stateKey, lockKey = self.lockKey
        let logger = self.logger
        let handlers = LeaderElection.Handlers(
            elected: { term in
                await runtime.setStateStore(EtcdControllerStateStore(client: client, key: stateKey, lockKey: lockKey, term: term))
                logger.notice("leading: recovering the persisted state, then acting", metadata: ["term": "\(term)"])
                await runtime.start()
            },
            demoted: { why in
                await runtime.stop(writeFiles: false)
                await runtime.resetForStandby()
                logger.notice("standby: runtime stopped", metadata: ["why": "\(why)"])
            })
        await election.run(handlers)
    }
}
