import ArgumentParser
import Foundation
import Gateway
import Logging
import MSCommandLine
import MSCore

@main
struct MSCoordinator: ParsableCommand {
    /// Statuses by the one convention of every binary (ExitStatus): 2 for usage and config errors, 1 at run time.
    static func main() { runWithExitStatus() }

    static let configuration = CommandConfiguration(
        commandName: "ms_coordinator",
        abstract: "The MindIE-MS Coordinator: the front door of an inference cluster.",
        discussion: """
        Config: --config, else $MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH, else ../conf/ms_coordinator.json.
        predict_ip / manage_ip override http_config.predict_ip / manage_ip. Stops on SIGINT or SIGTERM.
        Ports (from the config): predict_port (inference), manage_port (Controller API), status_port (probes),
        external_port (/metrics).
        """,
        version: ProductInfo.versionLine(binary: "ms_coordinator"))

    @Argument(help: "Address of the data (inference) listener.") var predictIP: String?
    @Argument(help: "Address of the management, status and metrics listeners.") var manageIP: String?
    @Option(help: "Path of ms_coordinator.json.") var config: String?
    @Option(help: "Event-loop threads (default: min(server_thread_num, cores)).") var threads: Int = 0

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let location = ConfigLocation(explicit: config, environmentVariable: "MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH",
                                      defaultPath: "../conf/ms_coordinator.json", environment: env)
        let parsed: CoordinatorConfig
        do {
            parsed = try CoordinatorConfig.parse(location.read(environment: env), environment: env, file: location.path)
        } catch {
            FileHandle.standardError.write(Data("ms_coordinator: \(error)\n".utf8))
            throw ExitStatus.usage
        }
        blockTerminationSignals()
        let logger = Bootstrap.run(label: "ms_coordinator", level: Bootstrap.logLevel(env["MINDIE_LOG_LEVEL"] ?? parsed.log.logLevel))
        for w in parsed.warnings { logger.warning("config", metadata: ["warning": "\(w)"]) }
        // the manage_ip argument overrides the file's (whose exposure warning, if any, is among the above)
        if let manageIP, manageIP != parsed.http.manageIP, let w = parsed.managementExposureWarning(manageIP: manageIP) {
            logger.warning("config", metadata: ["warning": "\(w)"])
        }
        let coordinator: Coordinator
        do {
            coordinator = try Coordinator(config: parsed, overrides: .init(predictIP: predictIP, manageIP: manageIP), logger: logger)
            try coordinator.start(threads: threads)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitStatus.failure
        }
        let sig = waitForTerminationSignal()
        logger.info("stopping", metadata: ["signal": "\(sig)"])
        // requests in flight finish first (bounded; a second SIGINT/SIGTERM stops at once), then the lease goes
        _ = coordinator.drain(timeoutSeconds: parsed.exceptions.drainTimeout) { terminationSignalArrives(withinMilliseconds: $0) }
        coordinator.shutdown()
    }
}

/// Waits up to `ms` for SIGINT/SIGTERM (blocked in every thread, so it stays pending until taken here).
private func terminationSignalArrives(withinMilliseconds ms: Int) -> Bool {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    var ts = timespec(tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000)
    return sigtimedwait(&set, nil, &ts) > 0
}
