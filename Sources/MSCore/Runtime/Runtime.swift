internal import CH2O
public import Logging
public import Metrics
public import Prometheus
#if canImport(Glibc)
import Glibc
#endif

/// Process facts every binary logs at start-up and prints for `--version`.
public enum ProductInfo {
    public static var version: String { String(cString: ch2o_product_version()) }
    public static var h2oVersion: String { String(cString: ch2o_h2o_version()) }
    /// jemalloc's version when it is the process's allocator (read through mallctl), nil otherwise.
    public static var jemallocVersion: String? { ch2o_jemalloc_version().map { String(cString: $0) } }
    public static var jemallocAllocatedBytes: Int { ch2o_jemalloc_allocated() }

    public static func versionLine(binary: String) -> String {
        "\(binary) \(version) (mindie-ms; h2o \(h2oVersion); jemalloc \(jemallocVersion ?? "absent"))"
    }
}

/// Logging and metrics bootstrap. Only executables call it, once; libraries take a `Logger` injected.
public enum Bootstrap {
    /// The Prometheus registry the binary's `/metrics` endpoint renders.
    public nonisolated(unsafe) private(set) static var registry = PrometheusCollectorRegistry()
    nonisolated(unsafe) private static var done = false

    /// - Parameter level: from the config or `MINDIE_LOG_LEVEL`; debug prints per-request lines.
    public static func run(label: String, level: Logger.Level) -> Logger {
        precondition(!done, "Bootstrap.run called twice")
        done = true
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let factory = PrometheusMetricsFactory(registry: registry)
        MetricsSystem.bootstrap(factory)
        var logger = Logger(label: label)
        logger.logLevel = level
        if let je = ProductInfo.jemallocVersion {
            logger.info("starting", metadata: ["version": "\(ProductInfo.version)", "jemalloc": "\(je)",
                                                "jemalloc.allocated": "\(ProductInfo.jemallocAllocatedBytes)",
                                                "h2o": "\(ProductInfo.h2oVersion)", "pid": "\(getpid())"])
        } else {
            logger.warning("jemalloc is not the process allocator", metadata: ["version": "\(ProductInfo.version)"])
        }
        return logger
    }

    /// Prometheus text exposition of every metric registered through swift-metrics.
    public static func metricsText() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }

    public static func logLevel(_ text: String?, default def: Logger.Level = .info) -> Logger.Level {
        switch text?.lowercased() {
        case "trace": .trace
        case "debug": .debug
        case "info": .info
        case "notice": .notice
        case "warn", "warning": .warning
        case "error": .error
        case "critical", "fatal": .critical
        default: def
        }
    }
}

/// Blocks the calling (main) thread until SIGINT or SIGTERM, then returns the signal number.
public func waitForTerminationSignal() -> Int32 {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &set, nil)
    var sig: Int32 = 0
    sigwait(&set, &sig)
    return sig
}

/// Blocks SIGINT/SIGTERM in the calling thread (call before starting threads so they inherit the mask and the
/// signal is delivered to `waitForTerminationSignal`).
public func blockTerminationSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Where a component registers its metrics and how `/metrics` renders them: the process's registry (after
/// `Bootstrap.run`), or a private one (tests, several components in one process).
public struct MetricsSink: Sendable {
    public let factory: any MetricsFactory
    public let render: @Sendable () -> [UInt8]

    public init(factory: any MetricsFactory, render: @escaping @Sendable () -> [UInt8]) {
        self.factory = factory
        self.render = render
    }

    /// The process-wide system (bootstrapped by `Bootstrap.run`).
    public static var process: MetricsSink {
        MetricsSink(factory: MetricsSystem.factory, render: { Bootstrap.metricsText() })
    }

    /// A registry of its own.
    public static func isolated() -> MetricsSink {
        let registry = PrometheusCollectorRegistry()
        return MetricsSink(factory: PrometheusMetricsFactory(registry: registry), render: {
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return buffer
        })
    }
}

extension MetricsSink {
    /// Prometheus text with a `# HELP` line before every `# TYPE` line that has none (promtool flags a family
    /// without help text, and swift-metrics cannot carry one); `help` gives a family's text by name.
    public static func withHelp(_ text: [UInt8], help: (Substring) -> String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 1024)
        var helped = Set<Substring>()
        for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            let s = Substring(decoding: line, as: UTF8.self)
            if s.hasPrefix("# HELP "), let name = s.dropFirst(7).split(separator: " ").first {
                helped.insert(name)
            } else if s.hasPrefix("# TYPE "), let name = s.dropFirst(7).split(separator: " ").first, !helped.contains(name) {
                out += Array("# HELP \(name) \(help(name))\n".utf8)
                helped.insert(name)
            }
            out += line
            out.append(UInt8(ascii: "\n"))
        }
        // split gave one more (empty) piece than there were newlines
        if !text.isEmpty { out.removeLast() } else { out.removeAll() }
        return out
    }
}
