/// A JSON value: the one JSON type of every module (the Coordinator's request bodies and config, the
/// Controller's and Deployer's files and API bodies, the simulator's wire).
///
/// Numbers keep the integer/non-integer distinction of their text, so validation can say "integer" and a
/// bool is never a number. Objects keep member order, so rendered bodies are byte-exact, and hold each key
/// once.
///
/// Duplicate keys: the last value wins, at the position where the key first appeared. This is what
/// nlohmann::json (MindIE's parser) and most other parsers do, so the Coordinator reads the same value as the
/// engine it forwards a body to.
public enum JSON: Sendable, Hashable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits in `Int64`.
    case int(Int64)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSON])
    case object(Object)

    /// An object from ordered pairs (a later duplicate key replaces the earlier value).
    public static func obj(_ pairs: KeyValuePairs<String, JSON>) -> JSON {
        .object(Object(pairs.map { ($0.key, $0.value) }))
    }

    public static func int(_ v: Int) -> JSON { .int(Int64(v)) }

    /// The member named `key` of an object, else nil.
    public subscript(key: String) -> JSON? {
        guard case .object(let o) = self else { return nil }
        return o[key]
    }

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { b } else { nil } }
    public var arrayValue: [JSON]? { if case .array(let a) = self { a } else { nil } }
    public var objectValue: Object? { if case .object(let o) = self { o } else { nil } }
    public var isNull: Bool { if case .null = self { true } else { false } }
    public var isObject: Bool { if case .object = self { true } else { false } }

    /// The number as an exact integer: an integer, or a non-integer literal (`1.0`, `1e3`) whose value is
    /// integral and exactly representable.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.0e15: return Int64(d)
        default: return nil
        }
    }

    /// The number as a Double.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The name of the value's JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .int: "integer"
        case .double: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// The nesting depth: scalars are 0, a container is 1 + the deepest child.
    public var depth: Int {
        switch self {
        case .array(let a): return 1 + (a.map(\.depth).max() ?? 0)
        case .object(let o): return 1 + (o.values.map(\.depth).max() ?? 0)
        default: return 0
        }
    }

    /// A copy with `key` set (replaced in place if present, appended otherwise); non-objects are unchanged.
    public func setting(_ key: String, _ value: JSON) -> JSON {
        guard case .object(var o) = self else { return self }
        o[key] = value
        return .object(o)
    }
}

extension JSON {
    /// One object member.
    public struct Member: Sendable, Hashable {
        public var key: String
        public var value: JSON
        public init(_ key: String, _ value: JSON) { self.key = key; self.value = value }
    }

    /// An ordered map from keys to values: iteration is in insertion order, each key appears once.
    /// Equality and hashing ignore order (RFC 8259 objects are unordered).
    public struct Object: Sendable, Hashable, RandomAccessCollection, ExpressibleByDictionaryLiteral {
        public private(set) var members: [Member] = []
        /// Key → position, only for objects past `indexedCount` members: request bodies and configs are mostly
        /// small objects, where comparing a few keys costs less than hashing each one (the index was ~4% of the
        /// Coordinator's CPU on small requests).
        private var index: [String: Int]? = nil
        private static let indexedCount = 16

        private func position(of key: String) -> Int? {
            if let index { return index[key] }
            return members.firstIndex { $0.key == key }
        }

        private mutating func reindex() {
            guard members.count > Self.indexedCount else { index = nil; return }
            var built = [String: Int](minimumCapacity: members.count)
            for (n, m) in members.enumerated() { built[m.key] = n }
            index = built
        }

        public init() {}

        /// Members from ordered pairs; a later duplicate key replaces the value at the first position.
        public init(_ pairs: [(String, JSON)]) {
            for (k, v) in pairs { self[k] = v }
        }

        /// Members from a dictionary, in key order.
        public init(_ dictionary: [String: JSON]) {
            for k in dictionary.keys.sorted() { self[k] = dictionary[k] }
        }

        public typealias Key = String
        public typealias Value = JSON
        public init(dictionaryLiteral elements: (String, JSON)...) { self.init(elements) }

        public var startIndex: Int { 0 }
        public var endIndex: Int { members.count }
        public subscript(position: Int) -> (key: String, value: JSON) {
            (members[position].key, members[position].value)
        }

        public var keys: [String] { members.map(\.key) }
        public var values: [JSON] { members.map(\.value) }

        /// The value of `key`; setting nil removes the member.
        public subscript(key: String) -> JSON? {
            get { position(of: key).map { members[$0].value } }
            set {
                if let i = position(of: key) {
                    if let newValue { members[i].value = newValue } else { remove(at: i) }
                } else if let newValue {
                    members.append(Member(key, newValue))
                    if index != nil { index![key] = members.count - 1 } else if members.count > Self.indexedCount { reindex() }
                }
            }
        }

        /// Removes `key`, returning its value if it was present.
        @discardableResult
        public mutating func removeValue(forKey key: String) -> JSON? {
            guard let i = position(of: key) else { return nil }
            let v = members[i].value
            remove(at: i)
            return v
        }

        private mutating func remove(at i: Int) {
            members.remove(at: i)
            reindex()
        }

        /// The members whose pair passes `isIncluded`, in order.
        public func filter(_ isIncluded: ((key: String, value: JSON)) throws -> Bool) rethrows -> Object {
            var out = Object()
            for m in members where try isIncluded((m.key, m.value)) { out[m.key] = m.value }
            return out
        }

        /// Sets `other`'s members over this object; `combine` picks the value of a key both hold.
        public mutating func merge(_ other: Object, uniquingKeysWith combine: (JSON, JSON) throws -> JSON) rethrows {
            self = try merging(other, uniquingKeysWith: combine)
        }

        /// The same keys in the same order with transformed values.
        public func mapValues(_ transform: (JSON) throws -> JSON) rethrows -> Object {
            var out = self
            for i in out.members.indices { out.members[i].value = try transform(out.members[i].value) }
            return out
        }

        /// This object with `other`'s members added; `combine` picks the value of a key both hold.
        public func merging(
            _ other: Object, uniquingKeysWith combine: (JSON, JSON) throws -> JSON
        ) rethrows -> Object {
            var out = self
            for m in other.members { out[m.key] = try out[m.key].map { try combine($0, m.value) } ?? m.value }
            return out
        }

        public static func == (lhs: Object, rhs: Object) -> Bool {
            lhs.members.count == rhs.members.count && lhs.members.allSatisfy { rhs[$0.key] == $0.value }
        }

        public func hash(into hasher: inout Hasher) {
            var combined = 0
            for m in members {
                var h = Hasher()
                h.combine(m.key)
                h.combine(m.value)
                combined ^= h.finalize()
            }
            hasher.combine(members.count)
            hasher.combine(combined)
        }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByFloatLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public typealias Key = String
    public typealias Value = JSON
    public init(dictionaryLiteral elements: (String, JSON)...) { self = .object(Object(elements)) }
}

// MARK: - Rendering

extension JSON {
    /// Compact text, members in order: `{"a":1,"b":[true,null]}`.
    public var compact: String {
        var out = ""
        write(into: &out, indent: nil, sortKeys: false, level: 0)
        return out
    }

    /// The compact text as UTF-8 bytes.
    public var bytes: [UInt8] { Array(compact.utf8) }

    /// Appends the compact text to `out`.
    public func dump(into out: inout String) {
        write(into: &out, indent: nil, sortKeys: false, level: 0)
    }

    /// Text with `indent` spaces per level and `"key": value` members, in order (nlohmann `dump(n)` style).
    public func pretty(indent: Int = 4) -> String {
        var out = ""
        write(into: &out, indent: indent, sortKeys: false, level: 0)
        return out
    }

    /// Text with keys sorted, so equal values render the same whatever their member order;
    /// `indent` spaces per level (nil = compact).
    public func serialized(indent: Int? = nil) -> String {
        var out = ""
        write(into: &out, indent: indent, sortKeys: true, level: 0)
        return out
    }

    /// The value compact with sorted keys, for error messages.
    public var rendered: String { serialized() }

    private func write(into out: inout String, indent: Int?, sortKeys: Bool, level: Int) {
        func newline(_ l: Int) {
            if let n = indent { out += "\n" + String(repeating: " ", count: n * l) }
        }
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += JSON.format(d)
        case .string(let s): JSON.appendQuoted(s, to: &out)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, v) in items.enumerated() {
                if i > 0 { out += "," }
                newline(level + 1)
                v.write(into: &out, indent: indent, sortKeys: sortKeys, level: level + 1)
            }
            newline(level)
            out += "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            let members = sortKeys ? o.members.sorted { $0.key < $1.key } : o.members
            for (i, m) in members.enumerated() {
                if i > 0 { out += "," }
                newline(level + 1)
                JSON.appendQuoted(m.key, to: &out)
                out += indent == nil ? ":" : ": "
                m.value.write(into: &out, indent: indent, sortKeys: sortKeys, level: level + 1)
            }
            newline(level)
            out += "}"
        }
    }

    /// Shortest round-tripping form; integral values keep a `.0` (as nlohmann prints them); non-finite
    /// values, which JSON cannot hold, are `null`.
    static func format(_ d: Double) -> String {
        d.isFinite ? "\(d)" : "null"
    }

    /// Appends `s` as a JSON string literal (nlohmann's escapes: the short forms, else `\u00XX`).
    public static func appendQuoted(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    /// `s` as a JSON string literal.
    public static func quoted(_ s: String) -> String {
        var out = ""
        appendQuoted(s, to: &out)
        return out
    }
}

// MARK: - Codable

extension JSON: Codable {
    private struct CodingName: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: CodingName.self) {
            var o = Object()
            for k in keyed.allKeys { o[k.stringValue] = try keyed.decode(JSON.self, forKey: k) }
            self = .object(o)
            return
        }
        if var list = try? decoder.unkeyedContainer() {
            var items: [JSON] = []
            while !list.isAtEnd { items.append(try list.decode(JSON.self)) }
            self = .array(items)
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else {
            self = .string(try c.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .object(let o):
            var c = encoder.container(keyedBy: CodingName.self)
            for m in o.members { try c.encode(m.value, forKey: CodingName(stringValue: m.key)) }
        case .array(let a):
            var c = encoder.unkeyedContainer()
            for v in a { try c.encode(v) }
        default:
            var c = encoder.singleValueContainer()
            switch self {
            case .null: try c.encodeNil()
            case .bool(let b): try c.encode(b)
            case .int(let i): try c.encode(i)
            case .double(let d): try c.encode(d)
            case .string(let s): try c.encode(s)
            case .array, .object: break
            }
        }
    }
}
