import ArgumentParser
import Control
import Foundation
import MSCore
import Synchronization

@main
struct Main: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ms_controller",
        abstract: "The MindIE-MS Controller: discovers and probes instances, decides P/D roles and keeps the Coordinator current.",
        discussion: "Config: --config, else $MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH, else ./conf/ms_controller.json.",
        version: ProductInfo.versionLine(binary: "ms_controller"))

    @Option(help: "Path of ms_controller.json.") var config: String?

    func run() async throws {
        // First, before anything starts a thread (the concurrency pool grows on demand, and nothing was enqueued
        // on it yet): every thread inherits the mask, so the signal reaches the sigwait thread below.
        blockTerminationSignals()
        let env = ProcessInfo.processInfo.environment
        let location = ConfigLocation(
            explicit: config, environmentVariable: "MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH",
            defaultPath: "./conf/ms_controller.json", environment: env)
        let cfg: ControllerConfig
        do {
            cfg = try ControllerConfig(data: Data(try location.read(environment: env)), environment: env, file: location.path)
        } catch {
            FileHandle.standardError.write(Data("ms_controller: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let logger = Bootstrap.run(
            label: "ms_controller", level: Bootstrap.logLevel(env["MINDIE_LOG_LEVEL"] ?? cfg.logInfo.logLevel))
        logger.info("config loaded", metadata: ["path": "\(location.path)", "deploy_mode": "\(cfg.deployMode.rawValue)"])
        let service: ControllerService
        do {
            service = try ControllerService(config: cfg, environment: env, logger: logger)
            try service.listen()
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        await withDiscardingTaskGroup { group in
            group.addTask { await service.run() }
            let sig = await terminationSignal()
            logger.info("stopping", metadata: ["signal": "\(sig)"])
            group.cancelAll()  // the service stops its runtime and listeners before `run()` returns
        }
        logger.info("stopped")
    }
}

/// SIGINT or SIGTERM, waited for by `sigwait` on a thread of its own (it blocks; the concurrency pool must not).
func terminationSignal() async -> Int32 {
    await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
        let t = Thread { c.resume(returning: waitForTerminationSignal()) }
        t.name = "sigwait"
        t.start()
    }
}
