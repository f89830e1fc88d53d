import Foundation

/// A configuration value that cannot be used, in any binary's config file or environment.
///
/// The description names the file, the key, the value found and what is allowed (DECISIONS 3), in one format for
/// every binary, e.g. `ms_coordinator.json: request_limit.max_requests = 0: allowed integer 1...90000`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The file is not JSON, or its top level is not an object.
        case invalidJSON
        /// A required key is absent.
        case missingKey
        /// The key holds a value of the wrong JSON type.
        case wrongType
        /// A number (or a length) outside its allowed range.
        case outOfRange
        /// A value of the right type that is not allowed (unknown enum value, invalid address, bad combination).
        case invalidValue
    }

    public var code: Code
    /// The file (or source) the value came from, e.g. `ms_coordinator.json` or `environment`.
    public var file: String
    /// Dotted key path, e.g. `http_config.predict_port`, `<document>` for the whole file, or an environment
    /// variable's name.
    public var key: String
    /// The offending value as compact JSON (or the environment variable's text), `<missing>` when absent.
    public var value: String
    /// What is allowed, e.g. `integer 1...90000` or `one of "1, 0", "1, 1"`.
    public var allowed: String

    public init(code: Code = .invalidValue, file: String, key: String, value: String, allowed: String) {
        self.code = code
        self.file = file
        self.key = key
        self.value = value
        self.allowed = allowed
    }

    public var description: String { "\(file): \(key) = \(value): allowed \(allowed)" }
}

/// Typed, range-checked access to one JSON object of a config file; every error carries the file and the full
/// key path, so each binary's parser states only its keys and ranges.
public struct ConfigReader: Sendable {
    public let file: String
    /// Dotted path of this object ("" for the top level).
    public let path: String
    public let object: JSON.Object

    public init(file: String, path: String = "", object: JSON.Object) {
        self.file = file
        self.path = path
        self.object = object
    }

    /// The top-level object of a whole file.
    /// - Throws: `.invalidJSON` at key `<document>` when the text is not JSON or its top level is not an object.
    public init(document bytes: some Collection<UInt8>, file: String, maxDepth: Int = 512) throws(ConfigError) {
        let root: JSON
        do {
            root = try JSON.parse(bytes, maxDepth: maxDepth)
        } catch {
            throw ConfigError(code: .invalidJSON, file: file, key: "<document>", value: error.reason, allowed: "a JSON object")
        }
        guard case .object(let o) = root else {
            throw ConfigError(
                code: .invalidJSON, file: file, key: "<document>", value: String(root.compact.prefix(40)),
                allowed: "a JSON object")
        }
        self.init(file: file, object: o)
    }

    /// The full dotted path of member `k`.
    public func key(_ k: String) -> String { path.isEmpty ? k : path + "." + k }

    /// The error for member `k` holding `v`; an absent value (nil) is always `.missingKey`.
    public func fail(_ k: String, _ v: JSON?, _ allowed: String, _ code: ConfigError.Code = .invalidValue) -> ConfigError {
        ConfigError(code: v == nil ? .missingKey : code, file: file, key: key(k), value: v?.compact ?? "<missing>", allowed: allowed)
    }

    public func has(_ k: String) -> Bool { object[k] != nil }

    /// Member `k`, which must be present.
    public func required(_ k: String, _ allowed: String) throws(ConfigError) -> JSON {
        guard let v = object[k] else { throw fail(k, nil, allowed) }
        return v
    }

    /// The object at `k`, whose errors name paths below `k`.
    public func section(_ k: String) throws(ConfigError) -> ConfigReader {
        let v = try required(k, "an object")
        guard case .object(let o) = v else { throw fail(k, v, "an object", .wrongType) }
        return ConfigReader(file: file, path: key(k), object: o)
    }

    /// The object at `k`, nil when absent.
    public func optionalSection(_ k: String) throws(ConfigError) -> ConfigReader? {
        has(k) ? try section(k) : nil
    }

    public func bool(_ k: String) throws(ConfigError) -> Bool {
        let v = try required(k, "true or false")
        guard case .bool(let b) = v else { throw fail(k, v, "true or false", .wrongType) }
        return b
    }

    public func bool(_ k: String, default d: Bool) throws(ConfigError) -> Bool {
        has(k) ? try bool(k) : d
    }

    /// Any string, empty included.
    public func string(_ k: String) throws(ConfigError) -> String {
        let v = try required(k, "a string")
        guard case .string(let s) = v else { throw fail(k, v, "a string", .wrongType) }
        return s
    }

    /// A string whose character count is in `length`.
    public func string(_ k: String, length: ClosedRange<Int>) throws(ConfigError) -> String {
        let allowed = "a string of \(length.lowerBound)...\(length.upperBound) characters"
        let v = try required(k, allowed)
        guard case .string(let s) = v else { throw fail(k, v, allowed, .wrongType) }
        guard length.contains(s.count) else { throw fail(k, v, allowed, .outOfRange) }
        return s
    }

    /// A string from a fixed set; `def` when absent (nil `def` = mandatory).
    public func choice(_ k: String, _ values: [String], default def: String? = nil) throws(ConfigError) -> String {
        let allowed = "one of " + values.map { "\"\($0)\"" }.joined(separator: ", ")
        guard let v = object[k] else {
            if let def { return def }
            throw fail(k, nil, allowed)
        }
        guard case .string(let s) = v else { throw fail(k, v, allowed, .wrongType) }
        guard values.contains(s) else { throw fail(k, v, allowed, .invalidValue) }
        return s
    }

    /// An integer written as one (`1.0` is refused), within `range`.
    public func int(_ k: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let allowed = "integer \(range.lowerBound)...\(range.upperBound)"
        let v = try required(k, allowed)
        guard case .int(let n) = v else { throw fail(k, v, allowed, .wrongType) }
        guard let i = Int(exactly: n), range.contains(i) else { throw fail(k, v, allowed, .outOfRange) }
        return i
    }

    public func int(_ k: String, _ range: ClosedRange<Int>, default d: Int) throws(ConfigError) -> Int {
        has(k) ? try int(k, range) : d
    }

    /// A number with an integral value (`128`, `128.0`, `1.28e2`) within `range`; nil when absent. For files
    /// whose writers (MindIE's own `config.json`) may render integers as floats.
    public func integral(_ k: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let v = object[k] else { return nil }
        guard let n = v.intValue, let i = Int(exactly: n), range.contains(i) else {
            throw fail(k, v, "integer \(range.lowerBound)...\(range.upperBound)", v.doubleValue == nil ? .wrongType : .outOfRange)
        }
        return i
    }

    /// A JSON number within `range`.
    public func double(_ k: String, _ range: ClosedRange<Double>) throws(ConfigError) -> Double {
        let allowed = "number \(range.lowerBound)...\(range.upperBound)"
        let v = try required(k, allowed)
        guard let d = v.doubleValue else { throw fail(k, v, allowed, .wrongType) }
        guard range.contains(d) else { throw fail(k, v, allowed, .outOfRange) }
        return d
    }

    /// A JSON number or a string holding a finite number (surrounding whitespace allowed), within `range`
    /// (the Controller's model and machine files write both).
    public func numberOrNumericString(_ k: String, _ range: ClosedRange<Double>) throws(ConfigError) -> Double {
        let allowed = "a number or numeric string \(range.lowerBound)...\(range.upperBound)"
        let v = try required(k, allowed)
        let d: Double
        switch v {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        case .string(let s):
            guard let x = Double(s.trimmingCharacters(in: .whitespaces)), x.isFinite else {
                throw fail(k, v, allowed, .wrongType)
            }
            d = x
        default: throw fail(k, v, allowed, .wrongType)
        }
        guard range.contains(d) else { throw fail(k, v, allowed, .outOfRange) }
        return d
    }

    /// A port given as a JSON string of decimal digits, 1024...65535 (ms_coordinator.json style).
    public func stringPort(_ k: String) throws(ConfigError) -> Int {
        let allowed = "a string holding a port 1024...65535"
        let v = try required(k, allowed)
        guard case .string(let s) = v else { throw fail(k, v, allowed, .wrongType) }
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isNumber }), let p = Int(s), (1024...65535).contains(p) else {
            throw fail(k, v, allowed, .outOfRange)
        }
        return p
    }

    /// An integer given as a JSON string, surrounding spaces allowed (digs_scheduler_config style); `def` when
    /// absent.
    public func stringInt(_ k: String, _ range: ClosedRange<Int>, default def: Int) throws(ConfigError) -> Int {
        guard let v = object[k] else { return def }
        let allowed = "a string holding an integer \"\(range.lowerBound)\"...\"\(range.upperBound)\""
        guard case .string(let s) = v else { throw fail(k, v, allowed, .wrongType) }
        guard let i = Int(trimmingSpaces(s)), range.contains(i) else { throw fail(k, v, allowed, .outOfRange) }
        return i
    }

    /// A number given as a JSON string, surrounding spaces allowed (digs_scheduler_config style); `def` when
    /// absent.
    public func stringDouble(_ k: String, _ range: ClosedRange<Double>, default def: Double) throws(ConfigError) -> Double {
        guard let v = object[k] else { return def }
        let allowed = "a string holding a number \"\(range.lowerBound)\"...\"\(range.upperBound)\""
        guard case .string(let s) = v else { throw fail(k, v, allowed, .wrongType) }
        guard let d = Double(trimmingSpaces(s)), d.isFinite, range.contains(d) else {
            throw fail(k, v, allowed, .outOfRange)
        }
        return d
    }
}

/// `s` without leading and trailing U+0020 (only spaces: the reference's scheduler strings trim nothing else).
private func trimmingSpaces(_ s: String) -> Substring {
    var t = Substring(s)
    while t.first == " " { t.removeFirst() }
    while t.last == " " { t.removeLast() }
    return t
}
