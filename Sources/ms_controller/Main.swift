import ArgumentParser
import Control
import Dispatch
import Foundation
import MSCommandLine
import MSCore

@main
struct Main: ParsableCommand {
    /// Statuses by the one convention of every binary (ExitStatus): 2 for usage and config errors, 1 at run time.
    static func main() { runWithExitStatus() }

    static let configuration = CommandConfiguration(
        commandName: "ms_controller",
        abstract: "The MindIE-MS Controller: discovers and probes instances, decides P/D roles and keeps the Coordinator current.",
        discussion: "Config: --config, else $MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH, else ./conf/ms_controller.json.",
        version: ProductInfo.versionLine(binary: "ms_controller"))

    @Option(help: "Path of ms_controller.json.") var config: String?

    func run() throws {
        // Before any thread exists, so that every thread inherits the mask and the signal reaches sigwait.
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
            throw ExitStatus.usage
        }
        let logger = Bootstrap.run(
            label: "ms_controller", level: Bootstrap.logLevel(env["MINDIE_LOG_LEVEL"] ?? cfg.logInfo.logLevel))
        logger.info("config loaded", metadata: ["path": "\(location.path)", "deploy_mode": "\(cfg.deployMode.rawValue)"])
        let service: ControllerService
        do { service = try ControllerService(config: cfg, environment: env, logger: logger) } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitStatus.failure
        }
        let failure = blocking { () async -> ControllerStartError? in
            do { try await service.start() } catch { return ControllerStartError("\(error)") }
            return nil
        }
        if let failure {
            logger.critical("cannot start", metadata: ["error": "\(failure)"])
            throw ExitStatus.failure
        }
        let sig = waitForTerminationSignal()
        logger.info("stopping", metadata: ["signal": "\(sig)"])
        blocking { await service.stop() }
        logger.info("stopped")
    }
}

/// Runs async work from the main thread and waits for it.
func blocking<T: Sendable>(_ work: @escaping @Sendable () async -> T) -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.value = await work()
        done.signal()
    }
    done.wait()
    return box.value!
}

final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}
