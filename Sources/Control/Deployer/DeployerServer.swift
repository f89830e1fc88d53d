import Foundation
public import Logging
public import MSCore

/// ms_deployer assembled: config → Kubernetes client → restored service → HTTPS listener → reconcile loop.
public final class DeployerServer: @unchecked Sendable {
    public let config: DeployerConfig
    public let service: DeployerService
    public let http: HTTPServer
    private let reconcileTask: Task<Void, Never>

    /// - Parameter port: overrides `config.port` (0 in tests).
    /// - Parameter configChecks: the start-up parsers of the component configs a PD cluster deploys.
    public init(config: DeployerConfig, environment: [String: String], configChecks: ComponentConfigChecks, logger: Logger, port: Int? = nil,
                reconcileIntervalMilliseconds: UInt64? = nil) throws(ConfigLoadError) {
        self.config = config
        let endpoint = try config.kubeEndpoint(environment: environment)
        let kube: KubeClient
        do { kube = try KubeClient(endpoint: endpoint) } catch { throw ConfigLoadError("Kubernetes client: \(error)") }
        let store = StatusStore(path: config.statusFile)
        let loaded = try store.load(mindieTLS: config.mindieTLSEnable, environment: environment)
        for d in loaded.dropped { logger.warning("dropped an invalid status-file entry", metadata: ["entry": "\(d)"]) }
        let mindieTLS = try config.mindieTLS.map { i throws(ConfigLoadError) in try DeployerConfig.tlsConfiguration(i, environment: environment) }
        let probe: MindieProbe
        do { probe = try MindieProbe(tls: mindieTLS) } catch { throw ConfigLoadError("MindIE Server client: \(error)") }
        service = DeployerService(kube: kube, store: store, namespace: config.namespace, mindieTLS: config.mindieTLSEnable,
                                  configChecks: configChecks, logger: logger, restored: loaded.entries, probe: probe)
        let tls = try config.serverTLS.map { i throws(ConfigLoadError) in try DeployerConfig.tlsConfiguration(i, environment: environment) }
        do {
            http = try HTTPServer(configuration: HTTPServerConfiguration(
                threads: 1, listeners: [HTTPListener(host: config.ip, port: port ?? config.port, tls: tls)],
                maxRequestBodyBytes: DeployerAPI.listenerBodyBytes, maxHeaderBytes: 8 << 10, idleTimeoutMilliseconds: 10_000, gracefulTimeoutMilliseconds: 2_000),
                handler: DeployerAPI.httpHandler(service: service, logger: logger))
            try http.start()
        } catch {
            throw ConfigLoadError("cannot listen on \(config.ip):\(port ?? config.port): \(error)")
        }
        let service = self.service
        let every = reconcileIntervalMilliseconds ?? UInt64(config.rankTableSyncSeconds) * 1000
        reconcileTask = Task {
            await service.verifyRestored()
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(every))
                if Task.isCancelled { break }
                await service.reconcile()
            }
        }
        logger.info("ms_deployer listening", metadata: ["ip": "\(config.ip)", "port": "\(http.boundPorts.first ?? 0)",
                                                        "tls": "\(tls != nil)", "apiserver": "\(endpoint.host):\(endpoint.port)",
                                                        "servers": "\(loaded.entries.count)"])
    }

    public var port: Int { http.boundPorts.first ?? 0 }

    public func shutdown() {
        reconcileTask.cancel()
        http.shutdown()
    }
}
