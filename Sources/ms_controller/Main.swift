import ArgumentParser
import Control
import Foundation
import Logging
import MSCommandLine
import MSCore
import Synchronization

/// A synchronous entry point whose main thread waits for SIGINT/SIGTERM with `sigwait` and hands the signal to the
/// async command. Not an async `main`, nor `dispatchMain()`: both park the main thread in libdispatch's
/// `sigsuspend` with every signal unblocked, so SIGTERM would kill the process instead of stopping it.
@main
enum Main {
    static func main() {
        // while the main thread is the only thread: every thread inherits the mask
        blockTerminationSignals()
        // detached: a task made here would belong to the main actor, whose queue the main thread never drains
        // exits when the command ends, with the one convention of every binary (ExitStatus: 2 for usage and
        // config errors, 1 at run time)
        Task.detached { await ControllerCommand.runWithExitStatus() }
        while true { terminationSignal.deliver(waitForTerminationSignal()) }  // later signals: already stopping
    }
}

/// The first SIGINT or SIGTERM, from the main thread to whoever awaits it.
let terminationSignal = TerminationSignal()

final class TerminationSignal: Sendable {
    private struct State {
        var signal: Int32?
        var waiter: CheckedContinuation<Int32, Never>?
    }

    private let state = Mutex(State())

    func deliver(_ sig: Int32) {
        let waiter = state.withLock { s -> CheckedContinuation<Int32, Never>? in
            guard s.signal == nil else { return nil }
            s.signal = sig
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: sig)
    }

    /// The signal, once one arrived.
    func wait() async -> Int32 {
        await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
            let now = state.withLock { s -> Int32? in
                if let sig = s.signal { return sig }
                s.waiter = c
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }
}

struct ControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ms_controller",
        abstract: "The MindIE-MS Controller: discovers and probes instances, decides P/D roles and keeps the Coordinator current.",
        discussion: "Config: --config, else $MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH, else ./conf/ms_controller.json.",
        version: ProductInfo.versionLine(binary: "ms_controller"))

    @Option(help: "Path of ms_controller.json.") var config: String?

    func run() async throws {
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
        do {
            service = try ControllerService(config: cfg, environment: env, logger: logger)
            try service.listen()
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitStatus.failure
        }
        await withDiscardingTaskGroup { group in
            group.addTask { await service.run() }
            let sig = await terminationSignal.wait()
            logger.info("stopping", metadata: ["signal": "\(sig)"])
            group.cancelAll()  // the service stops its runtime and listeners before `run()` returns
        }
        logger.info("stopped")
    }
}
