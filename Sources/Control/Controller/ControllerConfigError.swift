import MSCore

/// A configuration file (ms_controller.json, a model or a machine file) that cannot be used.
///
/// The message names the file, the key (a dotted path such as `http_server.ip`), the value found and what
/// is allowed, as DECISIONS rule 3 requires.
public struct ControllerConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The file is not JSON, or its top level is not an object.
        case invalidJSON
        /// A required key is absent.
        case missingKey
        /// The key holds a value of the wrong JSON type.
        case wrongType
        /// A number outside its allowed range.
        case outOfRange
        /// A value of the right type that is not allowed (unknown enum value, invalid IP, bad combination).
        case invalidValue
    }

    public var code: Code
    /// The file the value came from, e.g. `ms_controller.json`.
    public var file: String
    /// Dotted path of the key, e.g. `multi_node_infer_config.p_node_config.tp_size`.
    public var key: String
    /// The value found, rendered as JSON, or `<missing>`.
    public var value: String
    /// What is allowed, e.g. `integer in [1024, 65535]`.
    public var allowed: String

    public init(code: Code, file: String, key: String, value: String, allowed: String) {
        self.code = code
        self.file = file
        self.key = key
        self.value = value
        self.allowed = allowed
    }

    public var description: String {
        "\(file): key '\(key)' has value \(value); allowed: \(allowed)"
    }
}

/// Reads typed, range-checked values from one JSON object, producing `ControllerConfigError`s that name
/// the full key path.
struct ConfigReader {
    let object: JSON.Object
    let file: String
    let prefix: String

    init(object: JSON.Object, file: String, prefix: String = "") {
        self.object = object
        self.file = file
        self.prefix = prefix
    }

    /// Parses `data` as a JSON object.
    init(data: Data, file: String) throws(ControllerConfigError) {
        let value: JSON
        do {
            value = try JSON.parse(data)
        } catch {
            throw ControllerConfigError(
                code: .invalidJSON, file: file, key: "", value: "<unparsable: \(error.reason)>",
                allowed: "a JSON object")
        }
        guard case .object(let o) = value else {
            throw ControllerConfigError(
                code: .invalidJSON, file: file, key: "", value: value.typeName, allowed: "a JSON object")
        }
        self.init(object: o, file: file)
    }

    func path(_ key: String) -> String { prefix.isEmpty ? key : prefix + "." + key }

    func error(_ code: ControllerConfigError.Code, _ key: String, _ value: JSON?, _ allowed: String)
        -> ControllerConfigError
    {
        ControllerConfigError(
            code: code, file: file, key: path(key), value: value?.rendered ?? "<missing>", allowed: allowed)
    }

    func contains(_ key: String) -> Bool { object[key] != nil }

    func required(_ key: String, _ allowed: String) throws(ControllerConfigError) -> JSON {
        guard let v = object[key] else { throw error(.missingKey, key, nil, allowed) }
        return v
    }

    func bool(_ key: String) throws(ControllerConfigError) -> Bool {
        let v = try required(key, "true or false")
        guard case .bool(let b) = v else { throw error(.wrongType, key, v, "true or false") }
        return b
    }

    func bool(_ key: String, default d: Bool) throws(ControllerConfigError) -> Bool {
        contains(key) ? try bool(key) : d
    }

    func int(_ key: String, in range: ClosedRange<Int64>) throws(ControllerConfigError) -> Int {
        let allowed = "integer in [\(range.lowerBound), \(range.upperBound)]"
        let v = try required(key, allowed)
        guard case .int(let i) = v else { throw error(.wrongType, key, v, allowed) }
        guard range.contains(i) else { throw error(.outOfRange, key, v, allowed) }
        return Int(i)
    }

    func int(_ key: String, in range: ClosedRange<Int64>, default d: Int) throws(ControllerConfigError) -> Int {
        contains(key) ? try int(key, in: range) : d
    }

    func string(_ key: String, length: ClosedRange<Int> = 1...4096) throws(ControllerConfigError) -> String {
        let allowed = "string of \(length.lowerBound)...\(length.upperBound) characters"
        let v = try required(key, allowed)
        guard case .string(let s) = v else { throw error(.wrongType, key, v, allowed) }
        guard length.contains(s.count) else { throw error(.outOfRange, key, v, allowed) }
        return s
    }

    func string(_ key: String, oneOf values: [String]) throws(ControllerConfigError) -> String {
        let allowed = "one of " + values.map { "\"\($0)\"" }.joined(separator: ", ")
        let v = try required(key, allowed)
        guard case .string(let s) = v else { throw error(.wrongType, key, v, allowed) }
        guard values.contains(s) else { throw error(.invalidValue, key, v, allowed) }
        return s
    }

    func object(_ key: String) throws(ControllerConfigError) -> ConfigReader {
        let v = try required(key, "object")
        guard case .object(let o) = v else { throw error(.wrongType, key, v, "object") }
        return ConfigReader(object: o, file: file, prefix: path(key))
    }

    func optionalObject(_ key: String) throws(ControllerConfigError) -> ConfigReader? {
        contains(key) ? try object(key) : nil
    }

    /// A number given as a JSON number or a numeric string (model and machine files), within `range`.
    func flexibleDouble(_ key: String, in range: ClosedRange<Double>) throws(ControllerConfigError) -> Double {
        let allowed = "number (or numeric string) in [\(range.lowerBound), \(range.upperBound)]"
        let v = try required(key, allowed)
        let d: Double
        switch v {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        case .string(let s):
            guard let x = Double(s.trimmingCharacters(in: .whitespaces)), x.isFinite else {
                throw error(.wrongType, key, v, allowed)
            }
            d = x
        default: throw error(.wrongType, key, v, allowed)
        }
        guard range.contains(d) else { throw error(.outOfRange, key, v, allowed) }
        return d
    }
}

import Foundation
