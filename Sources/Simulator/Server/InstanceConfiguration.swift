/// Everything one simulated MindIE Server instance is configured with.
public struct InstanceConfiguration: Sendable {
    /// `ServerConfig.ipAddress`: the data and inter-comm host.
    public var ipAddress: String = "127.0.0.1"
    /// `ServerConfig.managementIpAddress`: the management and metrics host.
    public var managementIpAddress: String = "127.0.0.1"
    public var port: Int = 1025
    public var managementPort: Int = 1026
    public var metricsPort: Int = 1027
    public var interCommPort: Int = 1121
    /// Simulator control listener (`/sim/*`); nil = none.
    public var controlPort: Int?
    /// `ServerConfig.inferMode`: `standard` or `dmi`.
    public var dmi: Bool = false
    public var modelName: String = "llama3-8b"
    public var modelWeightPath: String = "/data/models/llama3-8b"
    public var maxRequestLength: Int = 40 << 20
    /// ms; 0 = none.
    public var tokenTimeout: Double = 600_000
    public var e2eTimeout: Double = 600_000
    public var engine = EngineConfiguration()
    public var wire = WireOptions()
    public var acceptTritonVersions = false
    /// `X-Sim-Fault` request headers are honoured.
    public var headerFaults = false
    /// `/dresult` messages produced together go out as one chunk.
    public var coalesceDResult = false
    public var metricsEnabled = true
    /// ms before any port listens.
    public var loadTime: Double = 0
    /// Protocol timers (ms, real time unless `scaleProtocolTimers`).
    public var linkDelay: Double = 2000
    public var roleCheckInterval: Double = 10_000
    public var keepAliveIdle: Double = 5000
    public var keepAliveCheck: Double = 1000
    public var kvReleaseTimeout: Double = 10_000
    public var scaleProtocolTimers = false
    /// Faults active from the start.
    public var faults: [Fault] = []

    public init() {}

    var protocolScale: Double { scaleProtocolTimers ? max(engine.speedup, 1e-9) : 1 }
}
