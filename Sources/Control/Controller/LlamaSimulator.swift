/// The analytic latency and memory model behind the automatic P/D ratio (docs/controller-role-model.md §2–§4).
///
/// Pure arithmetic in IEEE doubles; every formula mirrors the reference `LlamaSimulator`, including its known
/// quirk (the multi-host all-reduce term `a₁` lacks a ·1000).
public struct LlamaSimulator: Sendable, Equatable {
    /// Deployment parameters of the simulation.
    public struct Parameters: Sendable, Equatable {
        /// SLO of one prefill step, ms (`digs_prefill_slo`).
        public var prefillSLO: Double = 1000
        /// SLO of one decode step, ms (`digs_decode_slo`).
        public var decodeSLO: Double = 50
        /// Tensor parallelism t (devices per instance).
        public var tensorParallel: Int = 8
        /// Pipeline parallelism q (`digs_pp`).
        public var pipelineParallel: Int = 1
        /// Cards per host c (always 8).
        public var cardsPerHost: Int = 8

        public init(
            prefillSLO: Double = 1000, decodeSLO: Double = 50, tensorParallel: Int = 8,
            pipelineParallel: Int = 1, cardsPerHost: Int = 8
        ) {
            self.prefillSLO = prefillSLO
            self.decodeSLO = decodeSLO
            self.tensorParallel = tensorParallel
            self.pipelineParallel = pipelineParallel
            self.cardsPerHost = cardsPerHost
        }
    }

    /// The result of one simulation.
    public struct Abilities: Sendable, Equatable {
        /// Largest prefill batch within SLO and memory.
        public var prefillBatch: Int
        /// T_p(B_p), ms.
        public var prefillTime: Double
        public var decodeBatch: Int
        /// T_d(B_d), ms.
        public var decodeTime: Double
        /// pA: prefills per second.
        public var prefill: Double
        /// dA: requests finished per second.
        public var decode: Double
        /// tA: KV transfers per second (0 when T_x is 0).
        public var transfer: Double
    }

    /// Largest batch size searched.
    public static let maxBatch = 100_000
    static let eps = 1e-6
    static let K = 1024.0
    static let G = 1024.0 * 1024.0 * 1024.0

    public var model: DigsModelConfig
    public var machine: DigsMachineConfig
    public var parameters: Parameters

    public init(model: DigsModelConfig, machine: DigsMachineConfig, parameters: Parameters = Parameters()) {
        self.model = model
        self.machine = machine
        self.parameters = parameters
    }

    var h: Double { model.hiddenSize }
    var I: Double { model.intermediateSize }
    var L: Double { model.numHiddenLayers }
    var r: Double { model.numKeyValueHeads / model.numAttentionHeads }
    var b: Double { model.bytesPerParameter }
    var t: Double { Double(parameters.tensorParallel) }
    var q: Double { Double(parameters.pipelineParallel) }

    /// Compute time of `s` tokens with context `A`, ms.
    public func compute(tokens s: Double, context A: Double) -> Double {
        let X = 2 * h * h * L * s + 2 * h * h * L * r * s + 2 * h * L * s * A
        let Y = 2 * h * I * L * s
        return 2 * (X + Y) / t / q / (machine.tflops * machine.tflopsEff * 1e12) * 1000
    }

    /// Weight (and, in decode, KV-cache) fetch time, ms. `batch` is nil for prefill.
    public func fetch(inputLength: Double, outputLength: Double, decodeBatch batch: Double?) -> Double {
        let wf = 2 * h * h * L + 2 * h * h * L * r + 2 * h * I * L
        var kv = 0.0
        if let B = batch { kv = 2 * (inputLength * B + outputLength * B) * h * L * r }
        let K4 = Self.K * Self.K * Self.K * Self.K
        return b * (wf + kv) / t / q / (machine.mbwTB * machine.mbwTBEff * K4) * 1000
    }

    /// Communication time of a batch of `B`, ms; `sigma` is S_in in prefill and 1 in decode.
    public func communication(batch B: Double, sigma: Double) -> Double {
        let H = Double(parameters.tensorParallel / parameters.cardsPerHost)
        let rhoR = machine.bwEff * machine.bwRDMAGb / 8 * Self.G
        let rhoB = machine.bwEff * machine.bwGB * Self.G
        let alpha = machine.alpha
        var a1 = 0.0
        var s1 = 0.0
        if H > 0 {
            a1 = 2 * (H - 1) * 2 * b * h * L / H / rhoR  // no ·1000: reference quirk, kept
            s1 = 2 * b * (H - 1) * alpha * L / 1000
        }
        let a2 = 2 * b * sigma * h * L / rhoB * 1000
        let s2 = 4 * alpha * L / 1000
        let a3 = (q - 1) * sigma * h * b / rhoR * 1000
        let s3 = (q - 1) * alpha / 1000
        return B * (a1 + a2 + a3) + (s1 + s2 + s3)
    }

    /// T_p(B), ms.
    public func prefillTime(batch B: Int, inputLength sIn: Double) -> Double {
        let Bd = Double(B)
        return Bd * compute(tokens: sIn, context: sIn) + fetch(inputLength: sIn, outputLength: 0, decodeBatch: nil)
            + communication(batch: Bd, sigma: sIn)
    }

    /// T_d(B), ms.
    public func decodeTime(batch B: Int, inputLength sIn: Double, outputLength sOut: Double) -> Double {
        let Bd = Double(B)
        return compute(tokens: Bd, context: sIn + sOut)
            + fetch(inputLength: sIn, outputLength: sOut, decodeBatch: Bd) + communication(batch: Bd, sigma: 1)
    }

    /// Weights per device, GiB.
    public var weightMemory: Double {
        b * (2 * L * h * h + 2 * L * h * h * r + 3 * h * I * L) / t / q / Self.G
    }

    /// KV cache per token per device, GiB.
    public var memoryPerToken: Double {
        2 * b * h * L * r / t / q / Self.K / Self.K / Self.K
    }

    /// Transfer time of one request's KV cache, ms (T_x).
    public func transferTime(inputLength sIn: Double) -> Double {
        2 * L * sIn * b * h * r / (machine.bwRDMAGb * machine.bwEff / 8) / t / q * 1000 / Self.G
            + 2 * (machine.staticTransferDelay * 1000) * L * sIn / 128
    }

    /// The largest batch with `time(B) ≤ slo` (at least 1, at most `maxBatch`), then reduced while memory
    /// would reach `MEMCapacity·eta_OOM` (never below 1).
    static func searchBatch(slo: Double, limit: Double, time: (Int) -> Double, memory: (Int) -> Double) -> Int {
        var B = 1
        while B < maxBatch && slo >= time(B + 1) { B += 1 }
        while limit <= memory(B) {
            if B == 1 { break }
            B -= 1
        }
        return B
    }

    /// Simulates prefill and decode for requests of `inputLength` / `outputLength` tokens.
    public func abilities(inputLength: Int, outputLength: Int) -> Abilities {
        let sIn = Double(inputLength)
        let sOut = Double(outputLength)
        let limit = machine.memCapacity * machine.etaOOM
        let wm = weightMemory
        let m = memoryPerToken
        let bp = Self.searchBatch(
            slo: parameters.prefillSLO, limit: limit,
            time: { prefillTime(batch: $0, inputLength: sIn) },
            memory: { wm + m * Double($0) * sIn })
        let bd = Self.searchBatch(
            slo: parameters.decodeSLO, limit: limit,
            time: { decodeTime(batch: $0, inputLength: sIn, outputLength: sOut) },
            memory: { wm + m * (Double($0) * sIn + Double($0) * sOut) })
        let tp = prefillTime(batch: bp, inputLength: sIn)
        let td = decodeTime(batch: bd, inputLength: sIn, outputLength: sOut)
        var pA = 0.0
        var dA = 0.0
        if abs(tp) >= Self.eps && abs(td) >= Self.eps && outputLength != 0 {
            pA = Double(bp) / tp * 1000
            dA = Double(bd) / td / sOut * 1000
        }
        let tx = transferTime(inputLength: sIn)
        let tA = abs(tx) < Self.eps ? 0 : 1 / (tx / 1000)
        return Abilities(
            prefillBatch: bp, prefillTime: tp, decodeBatch: bd, decodeTime: td, prefill: pA, decode: dA,
            transfer: tA)
    }
}
