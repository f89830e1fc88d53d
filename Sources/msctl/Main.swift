import ArgumentParser
import Foundation
import Control
import Gateway
import MSCore

/// `msctl create|update|get|delete infer_server -f FILE|-n NAME`, `msctl list infer_server`, `msctl render infer_server -f FILE`.
/// Exit codes (DECISIONS 24): 0 success, 1 the deployer refused or could not be reached, 2 usage or local file error.
@main
struct Msctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "msctl",
        abstract: "Command-line client of ms_deployer: create, update, get and delete inference services.",
        discussion: """
            Config: $HOME/.mindie_ms/msctl.json (keys http.dstIP, dstPort, ca_cert, tls_cert, tls_key, tls_crl, timeout).
            $ msctl create infer_server -f conf/infer_server.json
            $ msctl update infer_server -f conf/update_server.json
            $ msctl get infer_server -n mindie-server
            $ msctl delete infer_server -n mindie-server
            $ msctl list infer_server
            $ msctl render infer_server -f conf/infer_server.json | kubectl apply -f -

            Exit codes: 0 success, 1 ms_deployer refused or unreachable, 2 usage or local file error.
            """,
        version: ProductInfo.versionLine(binary: "msctl"),
        subcommands: [Create.self, Update.self, Get.self, Delete.self, List.self, Render.self])

    /// ArgumentParser's usage errors exit 64; ours exit 2, help and --version exit 0.
    static func main() async {
        if CommandLine.arguments.count == 1 {
            FileHandle.standardError.write(Data((helpMessage() + "\n").utf8))
            Foundation.exit(2)
        }
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand { try await async.run() } else { try command.run() }
        } catch {
            let code = exitCode(for: error)
            if code == .success { print(fullMessage(for: error)); Foundation.exit(0) }
            if let e = error as? ExitCode { Foundation.exit(e.rawValue) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
    }
}

enum ResourceKind: String, ExpressibleByArgument, CaseIterable {
    case infer_server
}

func finish(_ o: MsctlClient.Outcome) throws {
    if !o.stdout.isEmpty { FileHandle.standardOutput.write(Data(o.stdout.utf8)) }
    if !o.stderr.isEmpty { FileHandle.standardError.write(Data(o.stderr.utf8)) }
    if o.exitCode != 0 { throw ExitCode(o.exitCode) }
}

extension Msctl {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deploy an inference service (POST /v1/servers).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        @Option(name: .customShort("f"), help: ArgumentHelp("The infer_server.json spec.", valueName: "FILE")) var file: String
        func run() async throws {
            try finish(await MsctlClient.run(.create(file: file), environment: ProcessInfo.processInfo.environment))
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Update an inference service (POST /v1/servers/NAME; fields given are changed, none = rolling restart).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        @Option(name: .customShort("f"), help: ArgumentHelp("A JSON file with server_name and the fields to change.", valueName: "FILE")) var file: String
        func run() async throws {
            try finish(await MsctlClient.run(.update(file: file), environment: ProcessInfo.processInfo.environment))
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an inference service and its pods (GET /v1/servers/NAME).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        @Option(name: .customShort("n"), help: ArgumentHelp("The server_name.", valueName: "NAME")) var name: String
        func run() async throws {
            try finish(await MsctlClient.run(.get(name: name), environment: ProcessInfo.processInfo.environment))
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an inference service and everything created for it (DELETE /v1/servers/NAME).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        @Option(name: .customShort("n"), help: ArgumentHelp("The server_name.", valueName: "NAME")) var name: String
        func run() async throws {
            try finish(await MsctlClient.run(.delete(name: name), environment: ProcessInfo.processInfo.environment))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the managed inference services (GET /v1/servers).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        func run() async throws {
            try finish(await MsctlClient.run(.list, environment: ProcessInfo.processInfo.environment))
        }
    }

    struct Render: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the Kubernetes manifests of a spec as YAML (for kubectl apply -f -).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        @Option(name: .customShort("f"), help: ArgumentHelp("The infer_server.json spec.", valueName: "FILE")) var file: String
        @Option(name: .long, help: "Namespace of the objects.") var namespace: String = "mindie"
        func run() throws {
            try finish(MsctlClient.render(file: file, namespace: namespace, environment: ProcessInfo.processInfo.environment,
                                             configChecks: ComponentConfigChecks(coordinator: CoordinatorConfig.startRefusal)))
        }
    }
}
