public import MSCore

extension InstanceConfiguration {
    /// Applies a MindIE `config.json` (docs/wire/simulator.md §0): `ServerConfig`, `BackendConfig.ModelDeployConfig`,
    /// `BackendConfig.ScheduleConfig` (also accepted at the top level) and the simulator's own `Simulator` section.
    ///
    /// `Simulator` keys: `profile` (8b|70b|tiny), `profileOverrides` {key: number}, `speedup`, `eos`, `seed`,
    /// `wire` (mindie|compat), `fix` [names], `faults` ["type:k=v"], `headerFaults`, `acceptTritonVersions`,
    /// `chunking` (message|coalesce), `loadTime` (s), `linkDelay` (ms), `scaleProtocolTimers`, `controlPort`.
    /// - Parameter file: the name used in error messages.
    public mutating func apply(configFile text: [UInt8], file: String = "config.json") throws(ConfigError) {
        let root: JSON
        do { root = try JSON.parse(text) } catch {
            throw ConfigError(code: .invalidJSON, file: file, key: "<document>", value: error.reason, allowed: "a JSON object")
        }
        try apply(configJSON: root, file: file)
    }

    public mutating func apply(configJSON root: JSON, file: String = "config.json") throws(ConfigError) {
        // A section that is absent or not an object sets nothing, as MindIE's own loader ignores it.
        func section(_ v: JSON?, _ path: String) -> ConfigReader {
            ConfigReader(file: file, path: path, object: v?.objectValue ?? [:])
        }
        func fail(_ key: String, _ v: JSON, _ allowed: String) -> ConfigError {
            ConfigError(file: file, key: key, value: v.compact, allowed: allowed)
        }
        if let s = root["ServerConfig"] {
            let r = section(s, "ServerConfig")
            if let v = s["ipAddress"]?.stringValue { ipAddress = v }
            if let v = s["managementIpAddress"]?.stringValue { managementIpAddress = v }
            if let v = try r.integral("port", 0...65535) { port = v }
            if let v = try r.integral("managementPort", 0...65535) { managementPort = v }
            if let v = try r.integral("metricsPort", 0...65535) { metricsPort = v }
            if let v = try r.integral("interCommPort", 0...65535) { interCommPort = v }
            if let m = s["inferMode"]?.stringValue {
                guard m == "standard" || m == "dmi" else { throw fail("ServerConfig.inferMode", .string(m), "\"standard\" or \"dmi\"") }
                dmi = m == "dmi"
            }
            if let v = try r.integral("tokenTimeout", 0...3600) { tokenTimeout = Double(v) * 1000 }
            if let v = try r.integral("e2eTimeout", 0...65535) { e2eTimeout = Double(v) * 1000 }
            if let v = try r.integral("maxRequestLength", 1...100) { maxRequestLength = v << 20 }
        }
        let backend = root["BackendConfig"] ?? root
        var p = engine.profile
        if let m = backend["ModelDeployConfig"] {
            let r = section(m, "ModelDeployConfig")
            if let v = try r.integral("maxSeqLen", 1...4_294_967_295) { p.maxSeqLen = v }
            if let v = try r.integral("maxInputTokenLen", 1...4_294_967_295) { p.maxInputTokenLen = v }
            if let mc = m["ModelConfig"]?.arrayValue?.first ?? m["ModelConfig"] {
                if let v = mc["modelName"]?.stringValue { modelName = v }
                if let v = mc["modelWeightPath"]?.stringValue { modelWeightPath = v }
            }
            if let v = m["modelName"]?.stringValue { modelName = v }
        }
        if let s = backend["ScheduleConfig"] {
            let r = section(s, "ScheduleConfig")
            if let v = try r.integral("cacheBlockSize", 1...128) { p.blockSize = v }
            if let v = try r.integral("maxPrefillBatchSize", 1...5000) { p.maxPrefillBatchSize = v }
            if let v = try r.integral("maxPrefillTokens", 1...4_294_967_295) { p.maxPrefillTokens = v }
            if let v = try r.integral("maxBatchSize", 1...5000) { p.maxBatchSize = v }
            if let v = try r.integral("maxIterTimes", 1...4_294_967_295) { p.maxIterTimes = v }
        }
        if let sim = root["Simulator"] {
            let r = section(sim, "Simulator")
            if let name = sim["profile"]?.stringValue {
                guard var base = ModelProfile.named(name) else { throw fail("Simulator.profile", .string(name), "\"8b\", \"70b\" or \"tiny\"") }
                // config.json limits still win over the profile's
                if let m = backend["ModelDeployConfig"] {
                    if m["maxSeqLen"] != nil { base.maxSeqLen = p.maxSeqLen }
                    if m["maxInputTokenLen"] != nil { base.maxInputTokenLen = p.maxInputTokenLen }
                }
                if let s = backend["ScheduleConfig"] {
                    if s["cacheBlockSize"] != nil { base.blockSize = p.blockSize }
                    if s["maxPrefillBatchSize"] != nil { base.maxPrefillBatchSize = p.maxPrefillBatchSize }
                    if s["maxPrefillTokens"] != nil { base.maxPrefillTokens = p.maxPrefillTokens }
                    if s["maxBatchSize"] != nil { base.maxBatchSize = p.maxBatchSize }
                    if s["maxIterTimes"] != nil { base.maxIterTimes = p.maxIterTimes }
                }
                p = base
            }
            if case .object(let ms) = sim["profileOverrides"] ?? .null {
                for m in ms {
                    do { try p.apply(key: m.key, value: m.value.doubleValue.map { String($0) } ?? m.value.compact) } catch {
                        throw fail("Simulator.profileOverrides.\(m.key)", m.value, "a number for a known profile key (\(error.message))")
                    }
                }
            }
            if let v = sim["speedup"]?.doubleValue {
                guard v > 0 else { throw fail("Simulator.speedup", .double(v), "a number > 0") }
                engine.speedup = v
            }
            if let v = sim["eos"]?.doubleValue { engine.eosProbability = v }
            if let v = sim["seed"]?.intValue { engine.seed = UInt64(bitPattern: v) }
            if let w = sim["wire"]?.stringValue {
                guard let m = WireMode(rawValue: w) else { throw fail("Simulator.wire", .string(w), "\"mindie\" or \"compat\"") }
                wire.mode = m
            }
            for f in sim["fix"]?.arrayValue ?? [] {
                guard let n = f.stringValue, let fix = WireFix(rawValue: n) else {
                    throw fail("Simulator.fix", f, "one of \(WireFix.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                wire.fixes.insert(fix)
            }
            for (k, f) in (sim["faults"]?.arrayValue ?? []).enumerated() {
                guard let t = f.stringValue, let fault = Fault.parse(t, id: "config-\(k)") else {
                    throw fail("Simulator.faults", f, "strings \"type:k=v,...\"")
                }
                faults.append(fault)
            }
            if let v = sim["headerFaults"]?.boolValue { headerFaults = v }
            if let v = sim["acceptTritonVersions"]?.boolValue { acceptTritonVersions = v }
            if let v = sim["chunking"]?.stringValue { coalesceDResult = v == "coalesce" }
            if let v = sim["loadTime"]?.doubleValue { loadTime = v * 1000 }
            if let v = sim["linkDelay"]?.doubleValue { linkDelay = v }
            if let v = sim["scaleProtocolTimers"]?.boolValue { scaleProtocolTimers = v }
            if let v = try r.integral("controlPort", 0...65535) { controlPort = v }
            if let v = sim["metricsEnabled"]?.boolValue { metricsEnabled = v }
        }
        engine.profile = p
    }

    /// `count` instances derived from `self`: instance k adds k × `portStride` to every port (port 0 stays 0),
    /// and with `distinctIPs` uses 127.0.0.(1+k)-style addresses (last octet + k) for both hosts.
    public func replicated(count: Int, portStride: Int = 10, distinctIPs: Bool = false) -> [InstanceConfiguration] {
        (0..<max(1, count)).map { k in
            var c = self
            func shift(_ p: Int) -> Int { p == 0 ? 0 : p + k * portStride }
            c.port = shift(port); c.managementPort = shift(managementPort); c.metricsPort = shift(metricsPort)
            c.interCommPort = shift(interCommPort); c.controlPort = controlPort.map(shift)
            if distinctIPs, k > 0 {
                c.ipAddress = InstanceConfiguration.bump(ipAddress, k)
                c.managementIpAddress = InstanceConfiguration.bump(managementIpAddress, k)
                c.port = port; c.managementPort = managementPort; c.metricsPort = metricsPort; c.interCommPort = interCommPort
                c.controlPort = controlPort
            }
            c.engine.seed = engine.seed &+ UInt64(k)
            return c
        }
    }

    static func bump(_ ip: String, _ k: Int) -> String {
        var parts = ip.split(separator: ".").map(String.init)
        guard parts.count == 4, let last = Int(parts[3]) else { return ip }
        parts[3] = String(last + k)
        return parts.joined(separator: ".")
    }
}
