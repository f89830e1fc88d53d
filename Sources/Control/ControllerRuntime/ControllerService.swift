import Foundation
public import Logging
public import MSCore

/// Why the Controller could not start.
public struct ControllerStartError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The whole Controller process minus `main`: the runtime, its effect runner and the REST servers, built from a
/// loaded `ControllerConfig`.
///
/// Listeners (both on `POD_IP` when valid, else `http_server.ip`; every endpoint is served on both):
/// - `http_server.port` (1026): probes `/v1/startup`, `/v1/health`, `/v1/readiness`, and `/metrics`
///   (Prometheus: `ControllerMetrics`);
/// - `controller_alarm_port` (1027): `/v1/alarm/*` and `/v1/terminate-service` (DECISIONS 21: every mode).
///
/// Behaviour where the spec is silent or where we chose (for the project docs):
/// - Outbound: instances at `server_ip:mgmt_port` of the rank table (`/v1/config`, `/v1/status`, `/v1/role/*`,
///   `/stopService`); coordinators at each group-"0" `server_ip` : `mindie_ms_coordinator_port`.
/// - Discovery: the rank table file, or with `instance_discovery.source = kubernetes` the pods of its namespace
///   (`KubernetesPodSource`, `PodDiscovery`): P/D pods are the table's instances, Coordinator pods its group "0".
/// - Periods: the rank table (or pod list) is re-read every `rank_table_detecting_seconds`; status polls, the refresh and the
///   output files every `cluster_synchronization_seconds`.
/// - Files (mode 0640, temp file + rename): `process_manager.file_path` (§10.1, once roles are assigned),
///   `cluster_status.file_path` (§10.2), and the identity registry beside the process file
///   (`<process_manager.file_path>.identity.json`: ids, counter, remembered roles of departed instances).
/// - Restart: when the process file loads and some server of the table reports a role, the state is recovered
///   and live P/D roles are adopted; when the file is missing or invalid, roles are decided afresh (the
///   reference retries init every 5 s instead).
/// - `/v1/readiness` is 200 once at least one instance is published (PD mode: a linked P/D pair), else 503
///   with the reason.
/// - HA (`controller_backup_cfg`): see `HAController`.
/// - Not implemented yet: v2 (multi-node) role bodies, node-manager and
///   ClusterD fault handling (§7.4), log files (`log_info`: logs go to stderr).
public final class ControllerService: Sendable {
    public let config: ControllerConfig
    public let runtime: ControllerRuntime
    public let api: ControllerHTTPAPI
    let server: HTTPServer
    let logger: Logger
    /// Active/standby through etcd when `controller_backup_cfg.function_sw` is on.
    public let ha: HAController?

    /// The bound ports: probe listener first, then the alarm listener (useful with port 0 in tests).
    public var boundPorts: [Int] { server.boundPorts }

    /// Builds everything; nothing listens until `listen()`, nothing acts until `run()`.
    /// - Parameters:
    ///   - config: the loaded config.
    ///   - environment: the process environment (file-check switch).
    ///   - logger: injected logger.
    ///   - clock: the runtime's time source.
    ///   - portOverrides: test hook: listen ports to use instead of the config's (0 = any free port).
    ///   - metrics: where the counters go and `/metrics` reads them (the process registry, or an isolated one).
    /// - Throws: `ControllerStartError` naming the file or listener that failed.
    public init(
        config: ControllerConfig, environment: [String: String], logger: Logger,
        clock: any ControllerClock = SystemControllerClock(), portOverrides: (probe: Int, alarm: Int)? = nil,
        metrics: MetricsSink = .process
    ) throws(ControllerStartError) {
        self.config = config
        self.logger = logger
        let check = FileCheck(maxMode: FileCheck.configMode, environment: environment)
        let model: DigsModelConfig
        let machine: DigsMachineConfig
        do {
            model = try DigsModelConfig(data: Data(try check.read(config.digsModelConfigPath)), file: config.digsModelConfigPath)
            machine = try DigsMachineConfig(
                data: Data(try check.read(config.digsMachineConfigPath)), file: config.digsMachineConfigPath)
        } catch {
            throw ControllerStartError("\(error)")
        }
        let settings = ControllerCore.Settings(config: config, model: model, machine: machine)
        let serverTLS = try Self.client(config.tls.requestServer, "request_server", environment)
        let coordinatorTLS = try Self.client(config.tls.requestCoordinator, "request_coordinator", environment)
        let fence: LeaseFence? = config.haEnabled ? LeaseFence() : nil
        var etcdClient: EtcdClient?
        if config.haEnabled {
            let etcdTLS = try Self.client(config.tls.etcdServer, "etcd_server", environment)
            etcdClient = EtcdClient(
                endpoints: EtcdClient.Endpoint.list(config.backup.databaseServerDNS, defaultPort: config.backup.databaseServerPort)
                    ?? [.init(host: config.backup.databaseServerDNS, port: config.backup.databaseServerPort)], tls: etcdTLS)
        }
        let runner = HTTPEffectRunner(
            configuration: .init(
                timeoutSeconds: config.httpTimeoutSeconds, retries: config.httpRetries,
                coordinatorPort: config.mindieMSCoordinatorPort, v2: config.multiNode.enabled),
            serverTLS: serverTLS, coordinatorTLS: coordinatorTLS, fence: fence)
        var options = ControllerRuntime.Options(config: config, environment: environment)
        if config.instanceDiscovery.source == .kubernetes {
            options.podSource = try KubernetesPodSource(config: config, environment: environment)
        }
        let counters = ControllerMetrics(sink: metrics)
        runtime = ControllerRuntime(
            options: options, settings: settings, runner: runner, clock: clock, metrics: counters, logger: logger)
        let ip = config.httpServer.ip
        let probePort = portOverrides?.probe ?? config.httpServer.port
        if let etcdClient, let fence {
            let identity = environment["POD_IP"].flatMap { IPAddress.isValid($0) ? $0 : nil } ?? "\(ip):\(probePort)"
            ha = HAController(config: config, client: etcdClient, fence: fence, runtime: runtime, identity: identity, logger: logger)
        } else {
            ha = nil
        }
        var notLeading: (@Sendable () -> String?)?
        var leadership: @Sendable () -> (leading: Bool, term: Int64) = { (true, 0) }
        if let h = ha {
            notLeading = { h.notLeading }
            leadership = { h.election.fence.term.map { (true, $0) } ?? (false, 0) }
        }
        api = ControllerHTTPAPI(
            runtime: runtime, singleNode: config.deployMode == .singleNode, logger: logger, notLeading: notLeading,
            metrics: counters, leadership: leadership)
        let listeners = [
            HTTPListener(
                host: ip, port: probePort,
                tls: try Self.server(config.tls.httpServer, "http_server", environment), tag: 0),
            HTTPListener(
                host: ip, port: portOverrides?.alarm ?? config.controllerAlarmPort,
                tls: try Self.server(config.tls.alarm, "alarm", environment), tag: 1),
        ]
        do {
            server = try HTTPServer(
                configuration: .init(threads: 1, listeners: listeners, maxRequestBodyBytes: 4 << 20, maxConnections: 266),
                handler: api.handler)
        } catch {
            throw ControllerStartError("cannot listen on \(ip): \(error)")
        }
    }

    /// Opens the REST listeners: probes and `/metrics` answer from here on, the runtime acts once `run()` runs.
    public func listen() throws(ControllerStartError) {
        do { try server.start() } catch { throw ControllerStartError("\(error)") }
        logger.info(
            "listening",
            metadata: ["ip": "\(config.httpServer.ip)", "probe.port": "\(boundPorts[0])", "alarm.port": "\(boundPorts[1])"])
    }

    /// Acts until the calling task is cancelled — the runtime, or with HA the campaign (the runtime runs while this
    /// process leads) — then stops it (output files written a last time; a leader gives its lease back) and
    /// closes the listeners.
    public func run() async {
        if config.multiNode.enabled {
            logger.warning("multi-node mode: status is read from /v2/status, but role posts still carry the v1 body (v2 bodies are not built yet)")
        }
        if let ha {
            logger.info(
                "active/standby through etcd: campaigning",
                metadata: ["etcd": "\(ha.election.client.endpointDescription)", "etcd.lock": "\(ha.lockKey)",
                           "lease.ttl": "\(config.backup.leaseTTLSeconds)"])
            await ha.run()  // demotes on the way out: the runtime stops without writing
        } else {
            await runtime.run()
        }
        server.shutdown()
        server.waitUntilStopped()
    }

    static func tlsConfiguration(_ s: ControllerConfig.TLSSetting, _ name: String, _ env: [String: String])
        throws(ControllerStartError) -> TLSConfiguration?
    {
        guard s.enabled else { return nil }
        guard let items = s.items else { throw ControllerStartError("tls_config.\(name)_tls_items is required") }
        do { return try items.configuration(environment: env) } catch {
            throw ControllerStartError("tls_config.\(name)_tls_items: \(error)")
        }
    }

    static func client(_ s: ControllerConfig.TLSSetting, _ name: String, _ env: [String: String])
        throws(ControllerStartError) -> TLSClient?
    {
        guard let c = try tlsConfiguration(s, name, env) else { return nil }
        do { return try TLSClient(c) } catch { throw ControllerStartError("tls_config.\(name): \(error)") }
    }

    static func server(_ s: ControllerConfig.TLSSetting, _ name: String, _ env: [String: String])
        throws(ControllerStartError) -> TLSConfiguration?
    {
        try tlsConfiguration(s, name, env)
    }
}
