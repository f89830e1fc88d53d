import Dispatch
import Metrics
import MSCore
import Synchronization

/// The Coordinator's own metrics (swift-metrics → Prometheus). Label sets are bounded: dialects, status codes,
/// the configured policy, instance ids of the cluster.
final class CoordinatorMetrics: Sendable {
    let scheduled: Counter
    let retries: Counter
    let cancellations: Counter
    let upstreamErrors: Counter
    let timeouts: Counter
    let circuitOpenings: Counter
    let accessLogDropped: Counter
    private let ttfb: Metrics.Timer
    private let duration: Metrics.Timer
    /// Keyed by dialect position × 1000 + status: building a string key per reply cost more than counting it.
    private let replies = Mutex<[Int: Counter]>([:])
    private let received = Atomic<Int>(0)
    private let succeeded = Atomic<Int>(0)
    private let failed = Atomic<Int>(0)

    private let factory: any MetricsFactory

    /// Prefix of the Coordinator's own families. Not `mindie_coordinator_`: promtool reads its `ms` as an abbreviated unit.
    static let prefix = "mindie_coordinator_"

    /// `# HELP` text of the Coordinator's own families (swift-metrics carries none; see ``withHelp(_:)``).
    static let help: [String: String] = [
        prefix + "schedule_decisions_total": "Requests the scheduling policy placed on an instance.",
        prefix + "retries_total": "Requests retried on another instance before their first byte.",
        prefix + "client_cancellations_total": "Requests whose client went away before the reply ended.",
        prefix + "upstream_errors_total": "Requests that failed at the instance (connect error, reset, broken stream).",
        prefix + "timeouts_total": "Requests ended by a schedule, first-token, inference or tokenizer timeout.",
        prefix + "time_to_first_byte_seconds": "Time from a request's arrival to the first byte of its reply.",
        prefix + "request_duration_seconds": "Time from a request's arrival to its end, whatever ended it.",
        prefix + "requests_total": "Replies by dialect and HTTP status (the Coordinator's own and relayed ones).",
        prefix + "instance_inflight_requests": "Requests dispatched to an instance and not yet finished.",
        prefix + "instance_up": "1 when the instance's /metrics answered the last scrape.",
        prefix + "instance_circuit_openings_total": "Times an instance's circuit opened after consecutive failed attempts.",
        prefix + "access_log_dropped_total": "Access log lines dropped because the writer's queue was full (the data path never waits for the disk).",
    ]

    /// Prometheus text with a `# HELP` line before every `# TYPE` line that has none (promtool flags a family
    /// without help text; swift-metrics cannot carry one).
    static func withHelp(_ text: [UInt8]) -> [UInt8] {
        MetricsSink.withHelp(text) { name in help[String(name)] ?? "\(name) of the MindIE-MS Coordinator." }
    }

    init(policy: String, factory: any MetricsFactory) {
        self.factory = factory
        scheduled = Counter(label: "mindie_coordinator_schedule_decisions_total", dimensions: [("policy", policy)], factory: factory)
        retries = Counter(label: "mindie_coordinator_retries_total", factory: factory)
        cancellations = Counter(label: "mindie_coordinator_client_cancellations_total", factory: factory)
        upstreamErrors = Counter(label: "mindie_coordinator_upstream_errors_total", factory: factory)
        timeouts = Counter(label: "mindie_coordinator_timeouts_total", factory: factory)
        circuitOpenings = Counter(label: "mindie_coordinator_instance_circuit_openings_total", factory: factory)
        accessLogDropped = Counter(label: "mindie_coordinator_access_log_dropped_total", factory: factory)
        ttfb = Metrics.Timer(label: "mindie_coordinator_time_to_first_byte_seconds", dimensions: [], factory: factory)
        duration = Metrics.Timer(label: "mindie_coordinator_request_duration_seconds", dimensions: [], factory: factory)
    }

    func reply(dialect: Dialect?, status: Int) {
        let known = (100...599).contains(status)
        let key = Dialect.slot(dialect) * 1000 + (known ? status : 0)
        let counter = replies.withLock { table in
            if let c = table[key] { return c }
            let d = dialect?.rawValue ?? "none"
            let code = known ? String(status) : "other"
            let c = Counter(label: "mindie_coordinator_requests_total", dimensions: [("dialect", d), ("status", code)], factory: factory)
            table[key] = c
            return c
        }
        counter.increment()
    }

    /// Per-instance series, written from the live load objects at scrape time: a gauge pushed on every change
    /// would race between loops (a stale value can land last) and would keep series of removed instances.
    static func instanceSeries(_ view: ClusterView) -> [UInt8] {
        var out = "# HELP mindie_coordinator_instance_inflight_requests Requests the Coordinator has in flight on the instance.\n"
            + "# TYPE mindie_coordinator_instance_inflight_requests gauge\n"
        for i in view.snapshot.instances {
            out += "mindie_coordinator_instance_inflight_requests{instance=\"\(i.id)\"} \(view.entries[i.id]?.inFlightCount ?? 0)\n"
        }
        let now = DispatchTime.now().uptimeNanoseconds
        out += "# HELP mindie_coordinator_instance_circuit_state Passive health: 0 closed, 1 open (no new requests), 2 half-open (probe due).\n"
            + "# TYPE mindie_coordinator_instance_circuit_state gauge\n"
        for i in view.snapshot.instances {
            let state: Int = switch view.entries[i.id]?.load.circuit(now: now) ?? .closed {
            case .closed: 0
            case .open: 1
            case .halfOpen: 2
            }
            out += "mindie_coordinator_instance_circuit_state{instance=\"\(i.id)\"} \(state)\n"
        }
        out += "# HELP mindie_coordinator_instance_consecutive_failures Failed attempts on the instance since its last success.\n"
            + "# TYPE mindie_coordinator_instance_consecutive_failures gauge\n"
        for i in view.snapshot.instances {
            out += "mindie_coordinator_instance_consecutive_failures{instance=\"\(i.id)\"} \(view.entries[i.id]?.load.failures.load(ordering: .relaxed) ?? 0)\n"
        }
        return Array(out.utf8)
    }

    func firstByte(since start: UInt64) {
        ttfb.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
    }

    func completed(success: Bool, since start: UInt64) {
        received.add(1, ordering: .relaxed)
        if success { succeeded.add(1, ordering: .relaxed) } else { failed.add(1, ordering: .relaxed) }
        duration.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
    }

    /// The reference's overrides of the aggregated server metrics from the Coordinator's own counts (docs/wire/coordinator.md §7).
    func requestCounters(inFlight: Int) -> [String: Double] {
        let r = Double(received.load(ordering: .relaxed) + inFlight)
        let f = Double(failed.load(ordering: .relaxed))
        return [
            "request_received_total": r,
            "request_success_total": Double(succeeded.load(ordering: .relaxed)),
            "request_failed_total": f,
            "failed_request_perc": r > 0 ? f / r : 0,
        ]
    }
}
