import ArgumentParser
import Foundation
import Control
import MSCore

@main
struct Main: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ms_deployer",
        abstract: "The MindIE-MS Deployer: Deploys inference services onto Kubernetes (the reference's ms_server).",
        discussion: "Config: --config, else $MINDIE_MS_DEPLOYER_CONFIG_FILE_PATH, else ../conf/ms_deployer.json.",
        version: ProductInfo.versionLine(binary: "ms_deployer"))

    @Option(help: "Path of the config file.") var config: String?

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let location = ConfigLocation(explicit: config, environmentVariable: "MINDIE_MS_DEPLOYER_CONFIG_FILE_PATH", defaultPath: "../conf/ms_deployer.json", environment: env)
        let json: [String: Any]
        do { json = try location.readJSONObject(environment: env) } catch {
            FileHandle.standardError.write(Data("ms_deployer: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let logger = Bootstrap.run(label: "ms_deployer", level: Bootstrap.logLevel(env["MINDIE_LOG_LEVEL"]))
        logger.info("config loaded", metadata: ["path": "\(location.path)", "keys": "\(json.count)"])
    }
}
