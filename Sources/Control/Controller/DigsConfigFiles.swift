public import Foundation
public import MSCore

/// A model file of `conf/model_config/` (`digs_model_config_path`): the LLM's shape for the analytic role
/// model (docs/controller-role-model.md §1). Values may be JSON numbers or numeric strings.
public struct DigsModelConfig: Sendable, Equatable {
    public var hiddenSize: Double
    /// Validated, unused by the model.
    public var initializerRange: Double
    public var intermediateSize: Double
    /// Validated, unused by the model.
    public var maxPositionEmbeddings: Double
    public var numAttentionHeads: Double
    public var numHiddenLayers: Double
    public var numKeyValueHeads: Double
    /// `float16` or `bfloat16`.
    public var torchDType: String

    /// Range of every numeric key.
    public static let valueRange: ClosedRange<Double> = 1e-6...2_147_483_647
    public static let numericKeys = [
        "hidden_size", "initializer_range", "intermediate_size", "max_position_embeddings",
        "num_attention_heads", "num_hidden_layers", "num_key_value_heads",
    ]

    public init(
        hiddenSize: Double, initializerRange: Double = 0.02, intermediateSize: Double,
        maxPositionEmbeddings: Double = 4096, numAttentionHeads: Double, numHiddenLayers: Double,
        numKeyValueHeads: Double, torchDType: String = "float16"
    ) {
        self.hiddenSize = hiddenSize
        self.initializerRange = initializerRange
        self.intermediateSize = intermediateSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.numAttentionHeads = numAttentionHeads
        self.numHiddenLayers = numHiddenLayers
        self.numKeyValueHeads = numKeyValueHeads
        self.torchDType = torchDType
    }

    /// Parses and validates a model file.
    /// - Throws: `ConfigError` naming the key, value and allowed range.
    public init(data: Data, file: String = "model_config.json") throws(ConfigError) {
        let r = try ConfigReader(document: data, file: file)
        let v = Self.valueRange
        hiddenSize = try r.numberOrNumericString("hidden_size", v)
        initializerRange = try r.numberOrNumericString("initializer_range", v)
        intermediateSize = try r.numberOrNumericString("intermediate_size", v)
        maxPositionEmbeddings = try r.numberOrNumericString("max_position_embeddings", v)
        numAttentionHeads = try r.numberOrNumericString("num_attention_heads", v)
        numHiddenLayers = try r.numberOrNumericString("num_hidden_layers", v)
        numKeyValueHeads = try r.numberOrNumericString("num_key_value_heads", v)
        torchDType = try r.choice("torch_dtype", ["float16", "bfloat16"])
    }

    /// Bytes per parameter: 2 for float16 / bfloat16 (and for anything else, as the reference does).
    public var bytesPerParameter: Double { 2 }
}

/// A machine file of `conf/machine_config/` (`digs_machine_config_path`): the accelerator's speeds for the
/// analytic role model. Values may be JSON numbers or numeric strings.
public struct DigsMachineConfig: Sendable, Equatable {
    /// Intra-host bandwidth, GiB/s.
    public var bwGB: Double
    /// RDMA bandwidth, Gbit/s.
    public var bwRDMAGb: Double
    /// Efficiency of both bandwidths (RDMA uses it too).
    public var bwEff: Double
    /// Validated, unused by the model.
    public var bwRDMAEff: Double
    /// 10¹² FLOP/s.
    public var tflops: Double
    public var tflopsEff: Double
    /// Memory bandwidth, TiB/s.
    public var mbwTB: Double
    public var mbwTBEff: Double
    /// Link latency, µs.
    public var alpha: Double
    /// Device memory, GiB.
    public var memCapacity: Double
    /// Usable share of memory.
    public var etaOOM: Double
    /// Seconds.
    public var staticTransferDelay: Double

    public static let valueRange: ClosedRange<Double> = 1e-6...2_147_483_647
    public static let efficiencyRange: ClosedRange<Double> = 1e-6...1

    public init(
        bwGB: Double, bwRDMAGb: Double, bwEff: Double, bwRDMAEff: Double, tflops: Double, tflopsEff: Double,
        mbwTB: Double, mbwTBEff: Double, alpha: Double, memCapacity: Double, etaOOM: Double,
        staticTransferDelay: Double
    ) {
        self.bwGB = bwGB
        self.bwRDMAGb = bwRDMAGb
        self.bwEff = bwEff
        self.bwRDMAEff = bwRDMAEff
        self.tflops = tflops
        self.tflopsEff = tflopsEff
        self.mbwTB = mbwTB
        self.mbwTBEff = mbwTBEff
        self.alpha = alpha
        self.memCapacity = memCapacity
        self.etaOOM = etaOOM
        self.staticTransferDelay = staticTransferDelay
    }

    /// Parses and validates a machine file.
    /// - Throws: `ConfigError` naming the key, value and allowed range.
    public init(data: Data, file: String = "machine_config.json") throws(ConfigError) {
        let r = try ConfigReader(document: data, file: file)
        let v = Self.valueRange
        let e = Self.efficiencyRange
        bwGB = try r.numberOrNumericString("BW_GB", v)
        bwRDMAGb = try r.numberOrNumericString("BW_RDMA_Gb", v)
        bwEff = try r.numberOrNumericString("BWeff", e)
        bwRDMAEff = try r.numberOrNumericString("BW_RDMAeff", e)
        tflops = try r.numberOrNumericString("TFLOPS", v)
        tflopsEff = try r.numberOrNumericString("TFLOPSeff", e)
        mbwTB = try r.numberOrNumericString("MBW_TB", v)
        mbwTBEff = try r.numberOrNumericString("MBW_TBeff", e)
        alpha = try r.numberOrNumericString("alpha", v)
        memCapacity = try r.numberOrNumericString("MEMCapacity", v)
        etaOOM = try r.numberOrNumericString("eta_OOM", e)
        staticTransferDelay = try r.numberOrNumericString("staticTransferDelay", v)
    }
}
