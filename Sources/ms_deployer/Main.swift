import ArgumentParser
import Foundation
import Control
import Gateway
import MSCommandLine
import MSCore
import Logging

@main
struct Main: ParsableCommand {
    /// Statuses by the one convention of every binary (ExitStatus): 2 for usage and config errors, 1 at run time.
    static func main() { runWithExitStatus() }

    static let configuration = CommandConfiguration(
        commandName: "ms_deployer",
        abstract: "The MindIE-MS Deployer: Deploys inference services onto Kubernetes (the reference's ms_server).",
        discussion: """
            Config: the positional path or --config, else $MINDIE_MS_DEPLOYER_CONFIG_FILE_PATH, else ../conf/ms_deployer.json.
            Serves POST/GET/DELETE /v1/servers[/NAME] (mutual TLS unless server_tls_enable is false) until SIGINT/SIGTERM.
            """,
        version: ProductInfo.versionLine(binary: "ms_deployer"))

    @Argument(help: "Path of the config file (as the reference's `ms_server <ms_server.json>`).") var configFile: String?
    @Option(help: "Path of the config file.") var config: String?

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let location = ConfigLocation(explicit: configFile ?? config, environmentVariable: "MINDIE_MS_DEPLOYER_CONFIG_FILE_PATH",
                                      defaultPath: "../conf/ms_deployer.json", environment: env)
        let deployerConfig: DeployerConfig
        do {
            deployerConfig = try DeployerConfig.parse(location.read(environment: env), environment: env, file: location.path)
        } catch {
            FileHandle.standardError.write(Data("ms_deployer: \(error)\n".utf8))
            throw ExitStatus.usage
        }
        blockTerminationSignals()
        let level = Bootstrap.logLevel(env["MINDIEMS_LOG_LEVEL"] ?? env["MINDIE_LOG_LEVEL"] ?? deployerConfig.logLevel)
        let logger = Bootstrap.run(label: "ms_deployer", level: level)
        logger.info("config loaded", metadata: ["path": "\(location.path)"])
        let server: DeployerServer
        do { server = try DeployerServer(
            config: deployerConfig, environment: env,
            configChecks: ComponentConfigChecks(coordinator: CoordinatorConfig.startRefusal), logger: logger) } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitStatus.failure
        }
        let sig = waitForTerminationSignal()
        logger.info("stopping", metadata: ["signal": "\(sig)"])
        server.shutdown()
        server.http.waitUntilStopped()
    }
}
