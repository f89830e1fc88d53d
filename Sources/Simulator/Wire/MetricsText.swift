import Foundation

/// A histogram with fixed bucket bounds.
public struct Histogram: Sendable, Equatable {
    public let bounds: [Double]
    public private(set) var counts: [UInt64]
    public private(set) var sum: Double = 0
    public private(set) var count: UInt64 = 0

    public init(bounds: [Double]) { self.bounds = bounds; counts = Array(repeating: 0, count: bounds.count) }

    public mutating func observe(_ v: Double) {
        count += 1; sum += v
        for (i, b) in bounds.enumerated() where v <= b { counts[i] += 1 }
    }
}

/// Every value `/metrics` reports (docs/wire/simulator.md §5), in the fixed layout.
public struct ServerMetrics: Sendable, Equatable {
    public var requestReceived: UInt64 = 0
    public var requestSuccess: UInt64 = 0
    public var requestFailed: UInt64 = 0
    public var promptTokens: UInt64 = 0
    public var generationTokens: UInt64 = 0
    public var preemptions: UInt64 = 0
    public var running: Double = 0
    public var waiting: Double = 0
    public var swapped: Double = 0
    public var promptThroughput: Double = 0
    public var generationThroughput: Double = 0
    public var npuCacheUsage: Double = 0
    public var cpuCacheUsage: Double = 0
    public var prefixHitRate: Double = 0
    public var radixLookups: Double = 0
    public var radixHits: Double = 0
    public var ttft = Histogram(bounds: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10])
    public var tpot = Histogram(bounds: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5])
    public var e2e = Histogram(bounds: [1, 2.5, 5, 10, 15, 20, 30, 40, 50, 60])
    public var promptHist = Histogram(bounds: ServerMetrics.tokenBounds)
    public var generationHist = Histogram(bounds: ServerMetrics.tokenBounds)
    /// Simulator-only: D results dropped for want of a `/dresult` link.
    public var dresultDropped: UInt64 = 0

    static let tokenBounds: [Double] = [10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 16000, 20000, 32000, 50000, 64000, 128000]

    public init() {}

    public var failedPercent: Double {
        requestReceived == 0 ? 0 : Double(requestFailed) / Double(requestReceived)
    }

    /// prometheus-cpp text: counters, then gauges, then histograms, each in registration order.
    public func render(modelName: String) -> String {
        let label = "model_name=\"\(modelName)\""
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ v: Double) { out += "\(name){\(label)} \(ServerMetrics.format(v))\n" }
        let counters: [(String, UInt64, String)] = [
            ("request_received_total", requestReceived, "Count of received requests."),
            ("request_success_total", requestSuccess, "Count of successfully processed requests."),
            ("request_failed_total", requestFailed, "Count of failed requests."),
            ("prompt_tokens_total", promptTokens, "Number of prefill tokens processed."),
            ("generation_tokens_total", generationTokens, "Number of generation tokens processed."),
            ("num_preemptions_total", preemptions, "Cumulative number of preemption from the engine."),
        ]
        for (n, v, h) in counters { family(n, "counter", h); sample(n, Double(v)) }
        let gauges: [(String, Double, String)] = [
            ("num_requests_running", running, "Number of requests currently running on NPU."),
            ("num_requests_waiting", waiting, "Number of requests waiting to be processed."),
            ("num_requests_swapped", swapped, "Number of requests swapped to CPU."),
            ("avg_prompt_throughput_toks_per_s", promptThroughput, "Average prefill throughput in tokens/s."),
            ("avg_generation_throughput_toks_per_s", generationThroughput, "Average generation throughput in tokens/s."),
            ("failed_request_perc", failedPercent, "Requests failure rate. 1 means 100 percent usage."),
            ("npu_cache_usage_perc", npuCacheUsage, "NPU KV-cache usage. 1 means 100 percent usage."),
            ("cpu_cache_usage_perc", cpuCacheUsage, "CPU KV-cache usage. 1 means 100 percent usage."),
            ("npu_prefix_cache_hit_rate", prefixHitRate, "NPU prefix cache block hit rate."),
            ("all_radix_match_num", radixLookups, "Cumulative prompt tokens looked up in the prefix cache."),
            ("npu_radix_match_hit_num", radixHits, "Cumulative prompt tokens found in the prefix cache."),
        ]
        for (n, v, h) in gauges { family(n, "gauge", h); sample(n, v) }
        let hists: [(String, Histogram, String)] = [
            ("time_to_first_token_seconds", ttft, "Histogram of time to first token in seconds."),
            ("time_per_output_token_seconds", tpot, "Histogram of time per output token in seconds."),
            ("e2e_request_latency_seconds", e2e, "Histogram of end to end request latency in seconds."),
            ("request_prompt_tokens", promptHist, "Number of prefill tokens processed."),
            ("request_generation_tokens", generationHist, "Number of generation tokens processed."),
        ]
        for (n, hist, h) in hists {
            family(n, "histogram", h)
            out += "\(n)_count{\(label)} \(hist.count)\n"
            out += "\(n)_sum{\(label)} \(ServerMetrics.format(hist.sum))\n"
            for (i, b) in hist.bounds.enumerated() {
                out += "\(n)_bucket{\(label),le=\"\(ServerMetrics.format(b))\"} \(hist.counts[i])\n"
            }
            out += "\(n)_bucket{\(label),le=\"+Inf\"} \(hist.count)\n"
        }
        return out
    }

    /// At most 16 significant digits; integers without a decimal point.
    public static func format(_ v: Double) -> String {
        if v.isNaN { return "Nan" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.16g", v)
    }
}
