public import MSCore

/// A configuration error naming the key, the value and what was expected.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var key: String
    public var value: String
    public var reason: String
    public var description: String { "\(key) = \(value): \(reason)" }
}

extension InstanceConfiguration {
    /// Applies a MindIE `config.json` (docs/wire/simulator.md §0): `ServerConfig`, `BackendConfig.ModelDeployConfig`,
    /// `BackendConfig.ScheduleConfig` (also accepted at the top level) and the simulator's own `Simulator` section.
    ///
    /// `Simulator` keys: `profile` (8b|70b|tiny), `profileOverrides` {key: number}, `speedup`, `eos`, `seed`,
    /// `wire` (mindie|compat), `fix` [names], `faults` ["type:k=v"], `headerFaults`, `acceptTritonVersions`,
    /// `chunking` (message|coalesce), `loadTime` (s), `linkDelay` (ms), `scaleProtocolTimers`, `controlPort`.
    public mutating func apply(configFile text: [UInt8]) throws(ConfigError) {
        let root: JSON
        do { root = try JSON.parse(text) } catch { throw ConfigError(key: "config.json", value: "<unparsable>", reason: error.reason) }
        try apply(configJSON: root)
    }

    public mutating func apply(configJSON root: JSON) throws(ConfigError) {
        func int(_ j: JSON?, _ key: String, _ range: ClosedRange<Int64>) throws(ConfigError) -> Int? {
            guard let j else { return nil }
            guard let v = j.intValue, range.contains(v) else {
                throw ConfigError(key: key, value: j.compact, reason: "must be an integer in [\(range.lowerBound), \(range.upperBound)]")
            }
            return Int(v)
        }
        if let s = root["ServerConfig"] {
            if let v = s["ipAddress"]?.stringValue { ipAddress = v }
            if let v = s["managementIpAddress"]?.stringValue { managementIpAddress = v }
            if let v = try int(s["port"], "ServerConfig.port", 0...65535) { port = v }
            if let v = try int(s["managementPort"], "ServerConfig.managementPort", 0...65535) { managementPort = v }
            if let v = try int(s["metricsPort"], "ServerConfig.metricsPort", 0...65535) { metricsPort = v }
            if let v = try int(s["interCommPort"], "ServerConfig.interCommPort", 0...65535) { interCommPort = v }
            if let m = s["inferMode"]?.stringValue {
                guard m == "standard" || m == "dmi" else { throw ConfigError(key: "ServerConfig.inferMode", value: m, reason: "must be standard or dmi") }
                dmi = m == "dmi"
            }
            if let v = try int(s["tokenTimeout"], "ServerConfig.tokenTimeout", 0...3600) { tokenTimeout = Double(v) * 1000 }
            if let v = try int(s["e2eTimeout"], "ServerConfig.e2eTimeout", 0...65535) { e2eTimeout = Double(v) * 1000 }
            if let v = try int(s["maxRequestLength"], "ServerConfig.maxRequestLength", 1...100) { maxRequestLength = v << 20 }
        }
        let backend = root["BackendConfig"] ?? root
        var p = engine.profile
        if let m = backend["ModelDeployConfig"] {
            if let v = try int(m["maxSeqLen"], "ModelDeployConfig.maxSeqLen", 1...4_294_967_295) { p.maxSeqLen = v }
            if let v = try int(m["maxInputTokenLen"], "ModelDeployConfig.maxInputTokenLen", 1...4_294_967_295) { p.maxInputTokenLen = v }
            if let mc = m["ModelConfig"]?.arrayValue?.first ?? m["ModelConfig"] {
                if let v = mc["modelName"]?.stringValue { modelName = v }
                if let v = mc["modelWeightPath"]?.stringValue { modelWeightPath = v }
            }
            if let v = m["modelName"]?.stringValue { modelName = v }
        }
        if let s = backend["ScheduleConfig"] {
            if let v = try int(s["cacheBlockSize"], "ScheduleConfig.cacheBlockSize", 1...128) { p.blockSize = v }
            if let v = try int(s["maxPrefillBatchSize"], "ScheduleConfig.maxPrefillBatchSize", 1...5000) { p.maxPrefillBatchSize = v }
            if let v = try int(s["maxPrefillTokens"], "ScheduleConfig.maxPrefillTokens", 1...4_294_967_295) { p.maxPrefillTokens = v }
            if let v = try int(s["maxBatchSize"], "ScheduleConfig.maxBatchSize", 1...5000) { p.maxBatchSize = v }
            if let v = try int(s["maxIterTimes"], "ScheduleConfig.maxIterTimes", 1...4_294_967_295) { p.maxIterTimes = v }
        }
        if let sim = root["Simulator"] {
            if let name = sim["profile"]?.stringValue {
                guard var base = ModelProfile.named(name) else { throw ConfigError(key: "Simulator.profile", value: name, reason: "must be 8b, 70b or tiny") }
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
                        throw ConfigError(key: "Simulator.profileOverrides.\(m.key)", value: m.value.compact, reason: error.message)
                    }
                }
            }
            if let v = sim["speedup"]?.doubleValue {
                guard v > 0 else { throw ConfigError(key: "Simulator.speedup", value: String(v), reason: "must be > 0") }
                engine.speedup = v
            }
            if let v = sim["eos"]?.doubleValue { engine.eosProbability = v }
            if let v = sim["seed"]?.intValue { engine.seed = UInt64(bitPattern: v) }
            if let w = sim["wire"]?.stringValue {
                guard let m = WireMode(rawValue: w) else { throw ConfigError(key: "Simulator.wire", value: w, reason: "must be mindie or compat") }
                wire.mode = m
            }
            for f in sim["fix"]?.arrayValue ?? [] {
                guard let n = f.stringValue, let fix = WireFix(rawValue: n) else {
                    throw ConfigError(key: "Simulator.fix", value: f.compact, reason: "known: \(WireFix.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                wire.fixes.insert(fix)
            }
            for (k, f) in (sim["faults"]?.arrayValue ?? []).enumerated() {
                guard let t = f.stringValue, let fault = Fault.parse(t, id: "config-\(k)") else {
                    throw ConfigError(key: "Simulator.faults", value: f.compact, reason: "expected \"type:k=v,...\"")
                }
                faults.append(fault)
            }
            if let v = sim["headerFaults"]?.boolValue { headerFaults = v }
            if let v = sim["acceptTritonVersions"]?.boolValue { acceptTritonVersions = v }
            if let v = sim["chunking"]?.stringValue { coalesceDResult = v == "coalesce" }
            if let v = sim["loadTime"]?.doubleValue { loadTime = v * 1000 }
            if let v = sim["linkDelay"]?.doubleValue { linkDelay = v }
            if let v = sim["scaleProtocolTimers"]?.boolValue { scaleProtocolTimers = v }
            if let v = try int(sim["controlPort"], "Simulator.controlPort", 0...65535) { controlPort = v }
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
