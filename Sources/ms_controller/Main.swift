import ArgumentParser
import Foundation
import Control
import MSCore

@main
struct Main: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ms_controller",
        abstract: "The MindIE-MS Controller: Discovers and probes instances, decides P/D roles and keeps the Coordinator current.",
        discussion: "Config: --config, else $MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH, else ../conf/ms_controller.json.",
        version: ProductInfo.versionLine(binary: "ms_controller"))

    @Option(help: "Path of the config file.") var config: String?

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let location = ConfigLocation(explicit: config, environmentVariable: "MINDIE_MS_CONTROLLER_CONFIG_FILE_PATH", defaultPath: "../conf/ms_controller.json", environment: env)
        let json: [String: Any]
        do { json = try location.readJSONObject(environment: env) } catch {
            FileHandle.standardError.write(Data("ms_controller: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let logger = Bootstrap.run(label: "ms_controller", level: Bootstrap.logLevel(env["MINDIE_LOG_LEVEL"]))
        logger.info("config loaded", metadata: ["path": "\(location.path)", "keys": "\(json.count)"])
    }
}
