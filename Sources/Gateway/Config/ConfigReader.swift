import MSCore

/// A configuration value that is missing, of the wrong type or out of range.
///
/// The description names the file, the key (dotted path), the value found and what is allowed
/// (DECISIONS 3), e.g. `ms_coordinator.json: request_limit.max_requests = 0: allowed integer 1...90000`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file (or source) the value came from, e.g. `ms_coordinator.json` or `environment`.
    public var file: String
    /// Dotted key path, e.g. `http_config.predict_port`, or the environment variable name.
    public var key: String
    /// The offending value as text (`<missing>` when absent).
    public var value: String
    /// What is allowed, e.g. `integer 1...90000` or `"1, 0" or "1, 1"`.
    public var allowed: String

    public init(file: String, key: String, value: String, allowed: String) {
        self.file = file
        self.key = key
        self.value = value
        self.allowed = allowed
    }

    public var description: String { "\(file): \(key) = \(value): allowed \(allowed)" }
}

/// Typed access to one JSON object, producing `ConfigError`s that carry the full key path.
struct ConfigReader {
    let file: String
    let path: String
    let object: JSON

    init(file: String, path: String, object: JSON) {
        self.file = file
        self.path = path
        self.object = object
    }

    func key(_ k: String) -> String { path.isEmpty ? k : path + "." + k }

    func fail(_ k: String, _ v: JSON?, _ allowed: String) -> ConfigError {
        ConfigError(file: file, key: key(k), value: v.map { $0.compact } ?? "<missing>", allowed: allowed)
    }

    func has(_ k: String) -> Bool { object[k] != nil }

    func section(_ k: String) throws(ConfigError) -> ConfigReader {
        guard let v = object[k], case .object = v else { throw fail(k, object[k], "an object") }
        return ConfigReader(file: file, path: key(k), object: v)
    }

    func bool(_ k: String) throws(ConfigError) -> Bool {
        guard let b = object[k]?.boolValue else { throw fail(k, object[k], "true or false") }
        return b
    }

    func string(_ k: String) throws(ConfigError) -> String {
        guard let s = object[k]?.stringValue else { throw fail(k, object[k], "a string") }
        return s
    }

    func int(_ k: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let v = object[k]
        guard case .int(let n)? = v, let i = Int(exactly: n), range.contains(i) else {
            throw fail(k, v, "integer \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }

    func double(_ k: String, _ range: ClosedRange<Double>) throws(ConfigError) -> Double {
        let v = object[k]
        guard let d = v?.doubleValue, range.contains(d) else {
            throw fail(k, v, "number \(range.lowerBound)...\(range.upperBound)")
        }
        return d
    }

    /// A port given as a JSON string of decimal digits, 1024–65535.
    func port(_ k: String) throws(ConfigError) -> Int {
        let v = object[k]
        guard let s = v?.stringValue, !s.isEmpty, s.allSatisfy(\.isASCII), s.allSatisfy(\.isNumber),
              let p = Int(s), (1024...65535).contains(p) else {
            throw fail(k, v, "a string holding a port 1024...65535")
        }
        return p
    }

    /// An integer given as a JSON string (digs_scheduler_config style); `def` when absent.
    func stringInt(_ k: String, _ range: ClosedRange<Int>, default def: Int) throws(ConfigError) -> Int {
        guard let v = object[k] else { return def }
        guard let s = v.stringValue, let i = Int(s.trimmingSpaces), range.contains(i) else {
            throw fail(k, v, "a string holding an integer \"\(range.lowerBound)\"...\"\(range.upperBound)\"")
        }
        return i
    }

    /// A number given as a JSON string (digs_scheduler_config style); `def` when absent.
    func stringDouble(_ k: String, _ range: ClosedRange<Double>, default def: Double) throws(ConfigError) -> Double {
        guard let v = object[k] else { return def }
        guard let s = v.stringValue, let d = Double(s.trimmingSpaces), d.isFinite, range.contains(d) else {
            throw fail(k, v, "a string holding a number \"\(range.lowerBound)\"...\"\(range.upperBound)\"")
        }
        return d
    }

    /// A string from a fixed set; `def` when absent (nil `def` = mandatory).
    func choice(_ k: String, _ allowed: [String], default def: String?) throws(ConfigError) -> String {
        guard let v = object[k] else {
            if let def { return def }
            throw fail(k, nil, "one of " + allowed.map { "\"\($0)\"" }.joined(separator: ", "))
        }
        guard let s = v.stringValue, allowed.contains(s) else {
            throw fail(k, v, "one of " + allowed.map { "\"\($0)\"" }.joined(separator: ", "))
        }
        return s
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

/// Checks that `s` is a literal IPv4 (dotted quad) or IPv6 address.
func isValidIPAddress(_ s: String) -> Bool {
    if s.contains(":") { return isValidIPv6(s) }
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return false }
    for p in parts {
        guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(p), n <= 255 else {
            return false
        }
        if p.count > 1 && p.first == "0" { return false }
    }
    return true
}

private func isValidIPv6(_ s: String) -> Bool {
    var text = Substring(s)
    var groupsNeeded = 8
    // A trailing dotted quad counts as two groups.
    if let lastColon = text.lastIndex(of: ":"), text[text.index(after: lastColon)...].contains(".") {
        guard isValidIPAddress(String(text[text.index(after: lastColon)...])) else { return false }
        text = text[...lastColon]
        if text.hasSuffix("::") == false { text = text.dropLast() }
        groupsNeeded = 6
    }
    let doubleColon = text.components(separatedBy: "::")
    guard doubleColon.count <= 2 else { return false }
    func groups(_ t: Substring) -> [Substring]? {
        if t.isEmpty { return [] }
        let g = t.split(separator: ":", omittingEmptySubsequences: false)
        for x in g where x.isEmpty || x.count > 4 || !x.allSatisfy(\.isHexDigit) { return nil }
        return g
    }
    if doubleColon.count == 2 {
        guard let a = groups(Substring(doubleColon[0])), let b = groups(Substring(doubleColon[1])) else { return false }
        return a.count + b.count < groupsNeeded
    }
    guard let g = groups(text) else { return false }
    return g.count == groupsNeeded
}

extension Substring {
    fileprivate func components(separatedBy sep: String) -> [Substring] {
        var out: [Substring] = []
        var rest = self
        while let r = rest.firstRange(of: sep) {
            out.append(rest[..<r.lowerBound])
            rest = rest[r.upperBound...]
        }
        out.append(rest)
        return out
    }
}
