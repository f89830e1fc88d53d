/// Every number of the latency and capacity model (docs/wire/simulator.md §6.5). Times are in milliseconds of engine time.
public struct ModelProfile: Sendable, Equatable {
    public var name: String
    /// Tokens per KV block (`cacheBlockSize`).
    public var blockSize: Int
    public var totalBlocks: Int
    public var maxBatchSize: Int
    public var maxPrefillBatchSize: Int
    public var maxPrefillTokens: Int
    public var maxSeqLen: Int
    public var maxInputTokenLen: Int
    public var maxIterTimes: Int
    /// Prefill step: α + β·Σu + γ·Σu·n (ms).
    public var alpha: Double
    public var beta: Double
    public var gamma: Double
    /// Decode step: δ₀ + δ₁·|R| + δ₂·ΣL/1000 (ms).
    public var delta0: Double
    public var delta1: Double
    public var delta2: Double
    /// KV pull on D: κ₀ + n·bytesPerToken/bandwidth.
    public var kappa0: Double
    public var kvBytesPerToken: Double
    /// Bytes per second.
    public var kvBandwidth: Double
    /// Jitter: each step × max(0.3, 1+N(0,σ)); with probability stallProbability also × stallFactor.
    public var sigma: Double
    public var stallProbability: Double
    public var stallFactor: Double

    public init(
        name: String, blockSize: Int, totalBlocks: Int, maxBatchSize: Int, maxPrefillBatchSize: Int,
        maxPrefillTokens: Int, maxSeqLen: Int, maxInputTokenLen: Int, maxIterTimes: Int, alpha: Double,
        beta: Double, gamma: Double, delta0: Double, delta1: Double, delta2: Double, kappa0: Double,
        kvBytesPerToken: Double, kvBandwidth: Double, sigma: Double, stallProbability: Double, stallFactor: Double
    ) {
        self.name = name; self.blockSize = blockSize; self.totalBlocks = totalBlocks
        self.maxBatchSize = maxBatchSize; self.maxPrefillBatchSize = maxPrefillBatchSize
        self.maxPrefillTokens = maxPrefillTokens; self.maxSeqLen = maxSeqLen
        self.maxInputTokenLen = maxInputTokenLen; self.maxIterTimes = maxIterTimes
        self.alpha = alpha; self.beta = beta; self.gamma = gamma
        self.delta0 = delta0; self.delta1 = delta1; self.delta2 = delta2
        self.kappa0 = kappa0; self.kvBytesPerToken = kvBytesPerToken; self.kvBandwidth = kvBandwidth
        self.sigma = sigma; self.stallProbability = stallProbability; self.stallFactor = stallFactor
    }

    /// llama3-8B on one 64 GB NPU (the default).
    public static let llama8b = ModelProfile(
        name: "8b", blockSize: 128, totalBlocks: 1024, maxBatchSize: 200, maxPrefillBatchSize: 50,
        maxPrefillTokens: 8192, maxSeqLen: 2560, maxInputTokenLen: 2048, maxIterTimes: 512,
        alpha: 20, beta: 0.06, gamma: 5e-6, delta0: 14, delta1: 0.12, delta2: 0.25,
        kappa0: 3, kvBytesPerToken: 131_072, kvBandwidth: 25e9, sigma: 0.05, stallProbability: 0.001, stallFactor: 4)

    /// llama2-70B, TP8.
    public static let llama70b = ModelProfile(
        name: "70b", blockSize: 128, totalBlocks: 4096, maxBatchSize: 200, maxPrefillBatchSize: 50,
        maxPrefillTokens: 8192, maxSeqLen: 4096, maxInputTokenLen: 3072, maxIterTimes: 1024,
        alpha: 60, beta: 0.12, gamma: 6e-6, delta0: 32, delta1: 0.15, delta2: 0.45,
        kappa0: 5, kvBytesPerToken: 327_680, kvBandwidth: 100e9, sigma: 0.05, stallProbability: 0.001, stallFactor: 4)

    /// A small deterministic profile for tests (no jitter).
    public static let tiny = ModelProfile(
        name: "tiny", blockSize: 16, totalBlocks: 64, maxBatchSize: 8, maxPrefillBatchSize: 4,
        maxPrefillTokens: 256, maxSeqLen: 512, maxInputTokenLen: 384, maxIterTimes: 128,
        alpha: 2, beta: 0.02, gamma: 0, delta0: 5, delta1: 1, delta2: 0.5,
        kappa0: 1, kvBytesPerToken: 4096, kvBandwidth: 1e9, sigma: 0, stallProbability: 0, stallFactor: 1)

    /// The profile named `name` (`8b`, `70b`, `tiny`).
    public static func named(_ name: String) -> ModelProfile? {
        switch name {
        case "8b", "7b", "llama3-8b": return .llama8b
        case "70b", "llama2-70b": return .llama70b
        case "tiny": return .tiny
        default: return nil
        }
    }

    /// Prefill step time before jitter and speed-up: u = uncached tokens, n = prompt length per request.
    public func prefillTime(_ batch: [(uncached: Int, length: Int)]) -> Double {
        var su = 0.0, sun = 0.0
        for r in batch { su += Double(r.uncached); sun += Double(r.uncached) * Double(r.length) }
        return alpha + beta * su + gamma * sun
    }

    /// Decode step time before jitter: `batch` sequences whose lengths add to `totalLength`.
    public func decodeTime(batch: Int, totalLength: Int) -> Double {
        delta0 + delta1 * Double(batch) + delta2 * Double(totalLength) / 1000
    }

    /// KV transfer time for `tokens` tokens (ms).
    public func kvTransferTime(tokens: Int) -> Double {
        kappa0 + Double(tokens) * kvBytesPerToken / kvBandwidth * 1000
    }

    /// Applies `key=value` overrides (`blockSize=16`, `alpha=3.5`, ...).
    /// - Throws: a message naming the key when it is unknown or the value is not a number.
    public mutating func apply(key: String, value: String) throws(ProfileError) {
        guard let d = Double(value) else { throw ProfileError(message: "profile key \(key): '\(value)' is not a number") }
        let i = Int(d)
        switch key {
        case "blockSize", "cacheBlockSize", "B": blockSize = i
        case "totalBlocks", "total_blocks": totalBlocks = i
        case "maxBatchSize": maxBatchSize = i
        case "maxPrefillBatchSize": maxPrefillBatchSize = i
        case "maxPrefillTokens": maxPrefillTokens = i
        case "maxSeqLen": maxSeqLen = i
        case "maxInputTokenLen": maxInputTokenLen = i
        case "maxIterTimes": maxIterTimes = i
        case "alpha": alpha = d
        case "beta": beta = d
        case "gamma": gamma = d
        case "delta0": delta0 = d
        case "delta1": delta1 = d
        case "delta2": delta2 = d
        case "kappa0": kappa0 = d
        case "kvBytesPerToken", "bytesPerToken": kvBytesPerToken = d
        case "kvBandwidth", "bandwidth": kvBandwidth = d
        case "sigma": sigma = d
        case "stallProbability", "p_s": stallProbability = d
        case "stallFactor", "k_s": stallFactor = d
        default: throw ProfileError(message: "unknown profile key \(key)")
        }
    }
}

public struct ProfileError: Error, Equatable, Sendable {
    public var message: String
}
