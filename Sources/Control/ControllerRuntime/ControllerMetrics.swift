import Foundation
import Metrics
public import MSCore

/// The Controller's `/metrics` (on its REST port): counters through swift-metrics, and gauges written from the
/// status board at scrape time (a gauge pushed on every change would keep series of removed states and could
/// land stale). Every label set is bounded: result, probe kind and reason, discovery source, decision kind,
/// role × state.
public final class ControllerMetrics: Sendable {
    static let prefix = "mindie_controller_"

    /// `# HELP` text of every family (swift-metrics carries none; see `MetricsSink.withHelp`).
    static let help: [String: String] = [
        prefix + "role_posts_total": "Role posts (POST /v1/role/*) to instances that completed, by result.",
        prefix + "refresh_pushes_total": "Instance-list refreshes pushed to a Coordinator, by result (one per Coordinator).",
        prefix + "probe_failures_total": "Instance probes (/v1/config, /v1/status) that failed, by probe and reason.",
        prefix + "discovery_passes_total": "Rank-table or pod-list discovery passes, by source and result.",
        prefix + "role_decisions_total": "Role decisions made: the initial assignment and each periodic re-decision.",
        prefix + "leader": "1 while this Controller acts (the HA leader with a confirmed lease, or HA off), else 0.",
        prefix + "term": "The HA leadership term this Controller acts in (the leader lock's etcd revision); 0 when not leading or HA is off.",
        prefix + "instances": "Instances known (not released), by assigned role and state.",
        prefix + "published_instances": "Instances in the list the Coordinators get now.",
        prefix + "effects_running": "Controller calls to instances and Coordinators in flight (probes, role posts, refreshes, role-switch calls).",
        prefix + "effects_queued": "Role posts and refreshes waiting for the previous one of their kind to finish.",
    ]

    /// The states of `instances`: published (in the refresh), candidate (probed, not published: no role yet,
    /// role not confirmed, or no linked peer), probing (config not read yet), faulty, unhealthy (stopped answering).
    public static let states = ["published", "candidate", "probing", "faulty", "unhealthy"]
    /// The roles of `instances` (`InstanceRole`; none = not assigned yet).
    public static let roles = ["prefill", "decode", "flex", "none"]

    let sink: MetricsSink
    private let posts: [Bool: Counter]
    private let pushes: [Bool: Counter]
    private let probeFailures: [String: Counter]
    private let passes: [String: Counter]
    private let decisions: [String: Counter]

    /// - Parameter sink: the process's registry, or an isolated one (tests).
    public init(sink: MetricsSink) {
        self.sink = sink
        let f = sink.factory
        func counter(_ name: String, _ dims: [(String, String)]) -> Counter {
            Counter(label: Self.prefix + name, dimensions: dims, factory: f)
        }
        // every series exists from the start (at 0), so a rate() has a baseline and dashboards find the names
        posts = [true: counter("role_posts_total", [("result", "ok")]), false: counter("role_posts_total", [("result", "failed")])]
        pushes = [
            true: counter("refresh_pushes_total", [("result", "ok")]),
            false: counter("refresh_pushes_total", [("result", "failed")]),
        ]
        var probes: [String: Counter] = [:]
        for probe in ["config", "status"] {
            for reason in ["no_reply", "bad_response"] {
                probes[probe + "/" + reason] = counter("probe_failures_total", [("probe", probe), ("reason", reason)])
            }
        }
        probeFailures = probes
        var p: [String: Counter] = [:]
        for source in ["rank_table", "kubernetes"] {
            for result in ["ok", "failed"] {
                p[source + "/" + result] = counter("discovery_passes_total", [("source", source), ("result", result)])
            }
        }
        passes = p
        decisions = [
            "initial": counter("role_decisions_total", [("kind", "initial")]),
            "periodic": counter("role_decisions_total", [("kind", "periodic")]),
        ]
    }

    func rolePost(succeeded: Bool) { posts[succeeded]!.increment() }
    func refreshPush(succeeded: Bool) { pushes[succeeded]!.increment() }
    func probeFailed(config: Bool, _ failure: ProbeFailure) {
        let reason = if case .noReply = failure { "no_reply" } else { "bad_response" }
        probeFailures[(config ? "config/" : "status/") + reason]!.increment()
    }
    func discoveryPass(kubernetes: Bool, succeeded: Bool) {
        passes[(kubernetes ? "kubernetes/" : "rank_table/") + (succeeded ? "ok" : "failed")]!.increment()
    }
    func roleDecision(periodic: Bool) { decisions[periodic ? "periodic" : "initial"]!.increment() }

    /// Counts what the outcome events of an effect say.
    func record(_ events: [ControllerCore.Event]) {
        for e in events {
            switch e {
            case .rolePosted(_, let ok): rolePost(succeeded: ok)
            case .coordinatorRefreshed(_, let ok): refreshPush(succeeded: ok)
            case .serverConfig(_, .failure(let f)): probeFailed(config: true, f)
            case .serverStatus(_, .failure(let f)): probeFailed(config: false, f)
            default: break
            }
        }
    }

    /// The whole exposition: the counters, then the gauges of `snapshot`.
    /// - Parameter leadership: whether this process acts now, and its HA term (0 without HA).
    public func render(_ snapshot: ControllerSnapshot, leading: Bool, term: Int64) -> [UInt8] {
        var text = ""
        func gauge(_ name: String, _ samples: [(labels: String, value: Int64)]) {
            text += "# HELP \(Self.prefix)\(name) \(Self.help[Self.prefix + name]!)\n# TYPE \(Self.prefix)\(name) gauge\n"
            for s in samples { text += "\(Self.prefix)\(name)\(s.labels) \(s.value)\n" }
        }
        gauge("leader", [("", leading ? 1 : 0)])
        gauge("term", [("", leading ? term : 0)])
        var byRoleState: [(String, Int64)] = []
        for role in Self.roles {
            for state in Self.states {
                byRoleState.append(("{role=\"\(role)\",state=\"\(state)\"}", Int64(snapshot.instancesByRoleState[role + "/" + state] ?? 0)))
            }
        }
        gauge("instances", byRoleState)
        gauge("published_instances", [("", Int64(snapshot.published.count))])
        gauge("effects_running", [("", Int64(snapshot.effectsRunning))])
        gauge("effects_queued", [("", Int64(snapshot.effectsQueued))])
        let counters = MetricsSink.withHelp(sink.render()) { name in
            Self.help[String(name)] ?? "\(name) of the MindIE-MS Controller."
        }
        return counters + Array(text.utf8)
    }
}
