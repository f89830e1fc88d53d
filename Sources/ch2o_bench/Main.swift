import ArgumentParser
import MSCommandLine
import Foundation
import MSCore

/// A bench fixture: `upstream` answers a small JSON from a Swift handler; `proxy` relays to upstreams through the
/// CH2O proxy (round robin, retry on the next). Used by bench/proxy_overhead.sh, not shipped.
@main
struct CH2OBench: ParsableCommand {
    /// Statuses by the one convention of every binary (ExitStatus): 2 for usage and config errors, 1 at run time.
    static func main() { runWithExitStatus() }

    static let configuration = CommandConfiguration(commandName: "ch2o_bench", abstract: "CH2O benchmark fixture (upstream | proxy).",
                                                    version: ProductInfo.versionLine(binary: "ch2o_bench"))

    @Argument(help: "upstream or proxy") var mode: String
    @Option(help: "Listen port.") var port: Int
    @Option(help: "Event-loop threads.") var threads: Int = 1
    @Option(parsing: .upToNextOption, help: "Upstream ports (proxy mode).") var upstreams: [Int] = []

    func run() throws {
        blockTerminationSignals()
        let handler: HTTPHandler
        switch mode {
        case "upstream":
            let body = Array(#"{"id":"cmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}"#.utf8)
            handler = { _, res in res.respond(status: 200, headers: [("content-type", "application/json")], body: body) }
        case "proxy":
            let ups = try upstreams.map { p throws(HTTPClientError) in try Upstream(host: "127.0.0.1", port: p) }
            let counter = Counter()
            handler = { _, res in
                let first = counter.next() % ups.count
                res.proxy(to: ups[first], retry: { attempt, _, _ in attempt < ups.count ? ups[(first + attempt) % ups.count] : nil },
                          finish: { _ in })
            }
        default:
            throw ValidationError("mode must be upstream or proxy")
        }
        let server = try HTTPServer(configuration: HTTPServerConfiguration(threads: threads, listeners: [HTTPListener(host: "127.0.0.1", port: port)]),
                                    handler: handler)
        try server.start()
        FileHandle.standardError.write(Data("ch2o_bench \(mode) listening on \(server.boundPorts[0])\n".utf8))
        _ = waitForTerminationSignal()
        server.shutdown()
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func next() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}
