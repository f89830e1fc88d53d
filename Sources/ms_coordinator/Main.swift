import ArgumentParser
import Foundation
import Gateway
import MSCore

@main
struct MSCoordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ms_coordinator",
        abstract: "The MindIE-MS Coordinator: the front door of an inference cluster.",
        discussion: """
        Config: --config, else $MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH, else ../conf/ms_coordinator.json.
        predict_ip / manage_ip override the data and management listen addresses of the config.
        """,
        version: ProductInfo.versionLine(binary: "ms_coordinator"))

    @Argument(help: "Address of the data (inference) listener.") var predictIP: String?
    @Argument(help: "Address of the management listener.") var manageIP: String?
    @Option(help: "Path of ms_coordinator.json.") var config: String?

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let location = ConfigLocation(explicit: config, environmentVariable: "MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH",
                                      defaultPath: "../conf/ms_coordinator.json", environment: env)
        let json: [String: Any]
        do { json = try location.readJSONObject(environment: env) } catch {
            FileHandle.standardError.write(Data("ms_coordinator: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let logger = Bootstrap.run(label: "ms_coordinator", level: Bootstrap.logLevel(env["MINDIE_LOG_LEVEL"]))
        logger.info("config loaded", metadata: ["path": "\(location.path)", "keys": "\(json.count)"])
    }
}
