import CH2O
import Logging
import Metrics
import Prometheus
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
