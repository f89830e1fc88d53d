public import ArgumentParser
import Foundation
import MSCommandLine
import MSCore
import Simulator

extension WireMode: ExpressibleByArgument {}

/// `mindie_sim`: one process hosting N simulated MindIE Server instances.
struct MindieSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mindie_sim",
        abstract: "A MindIE Server stand-in: every dialect, the PD protocol, the management API and metrics, with a latency/KV model and fault injection.",
        discussion: """
            Instance k (0-based) listens on each base port + k × --port-stride, or, with --distinct-ips, on the same ports at \
            the IP whose last octet is raised by k. Port 0 picks a free port; --print-ports prints the bound ports as one JSON \
            line per instance on stdout once listening.
            Faults: --fault 'type:k=v,k=v' (prefix 'N@' to target instance N only), e.g. die_mid_stream:after_tokens=3,how=close, \
            http_error:status=503,path=/v1/chat, dresult_drop:tcp_close, kv_pull_fail:irreversibly, slow_start:s=3, \
            hang:engine, role_fail:link_failed:1, p_reply:invalid_json, health:state=BUSY, kv_shrink:blocks=8.
            """,
        version: ProductInfo.versionLine(binary: "mindie_sim"))

    @Option(name: .customLong("config-file"), help: "A MindIE config.json (ServerConfig, BackendConfig, Simulator sections).")
    var configFile: String?

    @Option(help: "Number of instances in this process.")
    var instances: Int = 1

    @Option(name: .customLong("ip"), help: "ServerConfig.ipAddress (data and inter-comm host).")
    var ip: String?

    @Option(name: .customLong("management-ip"), help: "ServerConfig.managementIpAddress (management and metrics host).")
    var managementIP: String?

    @Option(help: "Data port (ServerConfig.port).")
    var port: Int?

    @Option(name: .customLong("management-port"), help: "Management port.")
    var managementPort: Int?

    @Option(name: .customLong("metrics-port"), help: "Metrics port.")
    var metricsPort: Int?

    @Option(name: .customLong("inter-comm-port"), help: "Inter-comm (P↔D) port.")
    var interCommPort: Int?

    @Option(name: .customLong("control-port"), help: "Simulator control listener (/sim/state, /sim/faults/{id}, /sim/config, /sim/clock/advance, /sim/actions/{type}).")
    var controlPort: Int?

    @Option(name: .customLong("port-stride"), help: "Port offset between instances.")
    var portStride: Int = 10

    @Flag(name: .customLong("distinct-ips"), help: "Instance k uses the IP with last octet + k instead of shifted ports (loopback PD with bare-IP d-target).")
    var distinctIPs = false

    @Option(name: .customLong("infer-mode"), help: "standard (mixed) or dmi (PD; roles come from /v1/role/*).")
    var inferMode: String?

    @Option(name: .customLong("model-name"), help: "Model name (ModelConfig.modelName).")
    var modelName: String?

    @Option(help: "Latency/capacity profile: 8b (default), 70b, tiny.")
    var profile: String?

    @Option(name: .customLong("set"), help: "Profile override key=value (blockSize, totalBlocks, maxBatchSize, alpha, delta0, sigma, ...). Repeatable.")
    var overrides: [String] = []

    @Option(help: "Divide every engine time by this factor.")
    var speedup: Double?

    @Flag(name: .customLong("scale-protocol-timers"), help: "Also divide protocol timers (keep-alive, link check, timeouts) by --speedup.")
    var scaleProtocolTimers = false

    @Option(help: "Clock: real or manual (time moves only through POST /sim/clock/advance).")
    var clock: String = "real"

    @Option(help: "EOS: 'never' (default) or a per-token probability p.")
    var eos: String = "never"

    @Option(help: "Seed of the jitter/EOS generator.")
    var seed: UInt64?

    @Option(help: "Wire mode: mindie (byte-faithful, default) or compat (strict-client friendly).")
    var wire: WireMode?

    @Option(name: .customLong("fix"), help: "Disable a reference quirk (repeatable): \(WireFix.allCases.map(\.rawValue).joined(separator: ", ")).")
    var fixes: [String] = []

    @Option(name: .customLong("openai-usage"), help: "reference (usage on the last chunk, always) or strict (a choices:[] chunk, only with include_usage).")
    var openAIUsage: String = "reference"

    @Flag(name: .customLong("accept-triton-versions"), help: "Route /v2/models/{m}/versions/{v}/… (the reference returns 404).")
    var acceptTritonVersions = false

    @Option(help: "/dresult chunking: message (one chunk per message) or coalesce.")
    var chunking: String = "message"

    @Flag(name: .customLong("header-faults"), help: "Honour per-request X-Sim-Fault: type;k=v headers.")
    var headerFaults = false

    @Option(name: .customLong("fault"), help: "Fault at start, 'type:k=v,...' or 'N@type:k=v' for instance N. Repeatable.")
    var faults: [String] = []

    @Flag(name: .customLong("metrics-disabled"), help: "GET /metrics answers 500 (monitoring off; also when MIES_SERVICE_MONITOR_MODE is set and is not 1).")
    var metricsDisabled = false

    @Option(name: .customLong("load-time"), help: "Seconds before any port listens.")
    var loadTime: Double?

    @Option(name: .customLong("link-delay"), help: "Milliseconds until a new PD link settles.")
    var linkDelay: Double?

    @Flag(name: .customLong("print-ports"), help: "Print each instance's bound ports as a JSON line once listening.")
    var printPorts = false

    mutating func validate() throws {
        guard instances >= 1 else { throw ValidationError("--instances must be at least 1") }
        guard clock == "real" || clock == "manual" else { throw ValidationError("--clock must be real or manual") }
        guard eos == "never" || Double(eos).map({ $0 >= 0 && $0 <= 1 }) == true else { throw ValidationError("--eos must be never or a probability in [0, 1]") }
        guard openAIUsage == "reference" || openAIUsage == "strict" else { throw ValidationError("--openai-usage must be reference or strict") }
        guard chunking == "message" || chunking == "coalesce" else { throw ValidationError("--chunking must be message or coalesce") }
        if let p = profile, ModelProfile.named(p) == nil { throw ValidationError("--profile must be 8b, 70b or tiny") }
        for f in fixes where WireFix(rawValue: f) == nil { throw ValidationError("unknown --fix \(f); known: \(WireFix.allCases.map(\.rawValue).joined(separator: ", "))") }
        if let m = inferMode, m != "standard", m != "dmi" { throw ValidationError("--infer-mode must be standard or dmi") }
        if let s = speedup, s <= 0 { throw ValidationError("--speedup must be > 0") }
    }

    func run() throws {
        blockTerminationSignals()  // before any thread starts, so that they inherit the mask
        var base = InstanceConfiguration()
        if let path = configFile {
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
            do { try base.apply(configFile: Array(data), file: path) } catch { throw ValidationError(error.description) }
        }
        if let p = profile, let prof = ModelProfile.named(p) { base.engine.profile = prof }
        for kv in overrides {
            let parts = kv.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--set expects key=value, got \(kv)") }
            do { try base.engine.profile.apply(key: parts[0], value: parts[1]) } catch { throw ValidationError(error.message) }
        }
        if let v = ip { base.ipAddress = v }
        if let v = managementIP { base.managementIpAddress = v }
        if let v = port { base.port = v }
        if let v = managementPort { base.managementPort = v }
        if let v = metricsPort { base.metricsPort = v }
        if let v = interCommPort { base.interCommPort = v }
        if let v = controlPort { base.controlPort = v }
        if let v = inferMode { base.dmi = v == "dmi" }
        if let v = modelName { base.modelName = v }
        if let v = speedup { base.engine.speedup = v }
        if scaleProtocolTimers { base.scaleProtocolTimers = true }
        if let p = Double(eos) { base.engine.eosProbability = p }
        if let v = seed { base.engine.seed = v }
        if let v = wire { base.wire.mode = v }
        for f in fixes { if let fix = WireFix(rawValue: f) { base.wire.fixes.insert(fix) } }
        if openAIUsage == "strict" { base.wire.fixes.insert(.usageAlways) }
        if acceptTritonVersions { base.acceptTritonVersions = true }
        if chunking == "coalesce" { base.coalesceDResult = true }
        if headerFaults { base.headerFaults = true }
        // the reference serves /metrics only with MIES_SERVICE_MONITOR_MODE=1; the simulator serves it unless the
        // variable is set to something else (or --metrics-disabled)
        if metricsDisabled || ProcessInfo.processInfo.environment["MIES_SERVICE_MONITOR_MODE"].map({ $0 != "1" }) == true {
            base.metricsEnabled = false
        }
        if let v = loadTime { base.loadTime = v * 1000 }
        if let v = linkDelay { base.linkDelay = v }
        var configs = base.replicated(count: instances, portStride: portStride, distinctIPs: distinctIPs)
        for (k, text) in faults.enumerated() {
            var target: Int?
            var spec = Substring(text)
            if let at = text.firstIndex(of: "@"), let n = Int(text[..<at]) { target = n; spec = text[text.index(after: at)...] }
            guard let f = Fault.parse(String(spec), id: "cli-\(k)") else { throw ValidationError("bad --fault \(text)") }
            for i in configs.indices where target == nil || target == i { configs[i].faults.append(f) }
        }
        let server: SimulatorServer
        do { server = try SimulatorServer(configuration: .init(instances: configs, manualClock: clock == "manual")) } catch {
            FileHandle.standardError.write(Data("mindie_sim: cannot listen: \(error)\n".utf8))
            throw ExitStatus.failure
        }
        server.onInstanceExit = { _, force in
            // the reference signals its process group; the simulator process simply ends
            FileHandle.standardError.write(Data("mindie_sim: stopService (\(force ? "Force" : "graceful")), exiting\n".utf8))
            usleep(100_000)  // let the 200 reach the caller
            Foundation.exit(0)
        }
        do { try server.start() } catch {
            FileHandle.standardError.write(Data("mindie_sim: cannot start: \(error)\n".utf8))
            throw ExitStatus.failure
        }
        if printPorts {
            var lines = ""
            for p in server.ports { lines += p.json.compact + "\n" }
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
        // SIGINT/SIGTERM are blocked in every thread (see run()) and taken here; an ignored signal would never
        // reach a dispatch source on Linux, and the simulator would outlive its launcher
        Thread.detachNewThread {
            server.waitUntilStopped()
            Foundation.exit(0)
        }
        _ = waitForTerminationSignal()
        server.shutdown()
        Foundation.exit(0)
    }
}
