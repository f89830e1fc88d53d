public import MSCore

/// # Simulator
///
/// A MindIE Server stand-in (`mindie_sim`), in three layers:
///
/// - **Model** (pure, time injected): `Tokenizer`, `BlockPool` (KV blocks, hashed prefix cache, LRU),
///   `Engine` (continuous batching, prefill/decode step costs, jitter, speed-up), `RoleState` (PD role and links).
/// - **Wire** (pure, exact bytes): `JSON`, `RequestParser` / `InferenceRequest` (every dialect),
///   `ResponseRenderer` (stream frames and bodies in `mindie` or `compat` mode), `PDWire` (P reply, `/dresult`
///   messages), `DecodeParameters`, `ServerMetrics` (Prometheus text), `WireError`.
/// - **Server**: `SimInstance` (one instance: routes, PD, faults; loop-confined, driven through `ResponseSink`
///   and `PDTransport`) and `SimulatorServer` (N instances on MSCore's h2o server, one loop each).
///
/// In-process use:
/// ```swift
/// let sim = try SimulatorServer.loopback(count: 2, dmi: true)   // started, 127.0.0.1 and 127.0.0.2, ports picked
/// let p = sim.ports[0], d = sim.ports[1]
/// defer { sim.shutdown() }
/// ```
extension SimulatorServer {
    /// Starts `count` instances on loopback: instance k on 127.0.0.(1+k) with OS-picked ports (so a bare-IP
    /// `d-target` reaches the right instance through the `ip;port` form), the `tiny` profile by default, and a
    /// control listener each.
    /// - Parameters:
    ///   - dmi: PD mode (roles come from `POST /v1/role/*`).
    ///   - configure: last changes per instance (index given).
    public static func loopback(
        count: Int, profile: ModelProfile = .tiny, dmi: Bool = false, speedup: Double = 1, manualClock: Bool = false,
        modelName: String = "llama3-8b", configure: (inout InstanceConfiguration, Int) -> Void = { _, _ in }
    ) throws(HTTPServerError) -> SimulatorServer {
        var configs: [InstanceConfiguration] = []
        for k in 0..<count {
            var c = InstanceConfiguration()
            c.ipAddress = "127.0.0.\(1 + k)"
            c.managementIpAddress = c.ipAddress
            c.port = 0; c.managementPort = 0; c.metricsPort = 0; c.interCommPort = 0; c.controlPort = 0
            c.dmi = dmi
            c.modelName = modelName
            c.engine = EngineConfiguration(profile: profile, speedup: speedup, seed: 1 &+ UInt64(k))
            configure(&c, k)
            configs.append(c)
        }
        let sim = try SimulatorServer(configuration: .init(instances: configs, manualClock: manualClock))
        try sim.start()
        return sim
    }
}
