public import ArgumentParser
import Foundation
import Control
import Gateway
import MSCommandLine
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
            $ msctl create infer_server -f conf/infer_server.json --wait --timeout 900
            $ msctl update infer_server -f conf/update_server.json
            $ msctl get infer_server -n mindie-server            (a table; -o json or -o yaml for scripts)
            $ msctl delete infer_server -n mindie-server
            $ msctl list infer_server
            $ msctl render infer_server -f conf/infer_server.json | kubectl apply -f -

            Exit codes: 0 success, 1 ms_deployer refused or unreachable, 2 usage or local file error.
            """,
        version: ProductInfo.versionLine(binary: "msctl"),
        subcommands: [Create.self, Update.self, Get.self, Delete.self, List.self, Render.self])

    /// Statuses by the one convention of every binary (ExitStatus); msctl with no arguments is a usage error.
    static func main() async {
        if CommandLine.arguments.count == 1 {
            FileHandle.standardError.write(Data((helpMessage() + "\n").utf8))
            Foundation.exit(ExitStatus.usage.rawValue)
        }
        await runWithExitStatus()
    }
}

enum ResourceKind: String, ExpressibleByArgument, CaseIterable {
    case infer_server
}

extension MsctlClient.OutputFormat: ExpressibleByArgument {}

/// `--wait [--timeout SECONDS]` of create and update.
struct WaitFlags: ParsableArguments {
    @Flag(name: .long, help: "Wait until every pod of the server is ready; print progress; exit 1 with the reason when it fails or times out.")
    var wait = false
    @Option(name: .long, help: ArgumentHelp("How long --wait waits (default 600).", valueName: "SECONDS")) var timeout: Double?
    /// How often --wait asks (tests ask more often than people need).
    @Option(name: .long, help: .hidden) var pollInterval: Double = 1

    func validate() throws {
        if let timeout, !(timeout > 0 && timeout.isFinite) { throw ValidationError("--timeout must be a positive number of seconds, got \(timeout)") }
        guard pollInterval > 0, pollInterval <= 60 else { throw ValidationError("--poll-interval must be in (0, 60] seconds") }
        if !wait && timeout != nil { throw ValidationError("--timeout needs --wait") }
    }

    func run(_ command: MsctlClient.Command) async throws {
        let env = ProcessInfo.processInfo.environment
        guard wait else { return try finish(await MsctlClient.run(command, environment: env)) }
        let outcome = await MsctlClient.runAndWait(command, wait: MsctlClient.WaitOptions(timeoutSeconds: timeout ?? 600, intervalMilliseconds: UInt64(pollInterval * 1000)),
                                                   environment: env) { line in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        try finish(outcome)
    }
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
        @OptionGroup var waitFlags: WaitFlags
        func run() async throws { try await waitFlags.run(.create(file: file)) }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Update an inference service (POST /v1/servers/NAME; fields given are changed, none = rolling restart).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        @Option(name: .customShort("f"), help: ArgumentHelp("A JSON file with server_name and the fields to change.", valueName: "FILE")) var file: String
        @OptionGroup var waitFlags: WaitFlags
        func run() async throws { try await waitFlags.run(.update(file: file)) }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an inference service and its pods (GET /v1/servers/NAME).")
        @Argument(help: "The resource kind: infer_server.") var resource: ResourceKind
        @Option(name: .customShort("n"), help: ArgumentHelp("The server_name.", valueName: "NAME")) var name: String
        @Option(name: .customShort("o"), help: ArgumentHelp("Output: table, json (the API's reply) or yaml.", valueName: "FORMAT")) var output: MsctlClient.OutputFormat = .table
        func run() async throws {
            try finish(await MsctlClient.run(.get(name: name), environment: ProcessInfo.processInfo.environment, output: output))
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
        @Option(name: .customShort("o"), help: ArgumentHelp("Output: table, json (the API's reply) or yaml.", valueName: "FORMAT")) var output: MsctlClient.OutputFormat = .table
        func run() async throws {
            try finish(await MsctlClient.run(.list, environment: ProcessInfo.processInfo.environment, output: output))
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
