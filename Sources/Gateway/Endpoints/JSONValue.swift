/// A parsed JSON value that keeps object key order and the exact text of numbers.
///
/// The Coordinator parses bodies only to route and schedule; it never rewrites them. This small
/// parser gives exact type checks (a bool is never a number), a nesting-depth limit
/// (DECISIONS 14) and a deterministic compact dump used for affinity keys.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's literal text as it appeared in the input (e.g. `"1.10"`, `"-3"`).
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in input order. Duplicate keys are kept; lookups return the last one.
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member named `key` of an object (the last one if repeated), else nil.
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.last(where: { $0.0 == key })?.1
    }

    /// The string payload, if this is a string.
    public var stringValue: String? { if case let .string(s) = self { s } else { nil } }
    /// The bool payload, if this is a bool.
    public var boolValue: Bool? { if case let .bool(b) = self { b } else { nil } }
    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { a } else { nil } }
    /// The members, if this is an object.
    public var objectValue: [(String, JSONValue)]? { if case let .object(o) = self { o } else { nil } }
    /// The number as a Double, if this is a number.
    public var doubleValue: Double? { if case let .number(n) = self { Double(n) } else { nil } }

    /// The number as an exact integer, if this is a number without fraction or exponent that fits Int64.
    public var integerValue: Int64? {
        guard case let .number(n) = self else { return nil }
        if let i = Int64(n) { return i }
        // Accept integral values written as 1.0 / 1e3 only if exact.
        if let d = Double(n), d.rounded() == d, abs(d) < 9.0e15 { return Int64(d) }
        return nil
    }

    /// The nesting depth: scalars are 0, a container is 1 + the deepest child.
    public var depth: Int {
        switch self {
        case .array(let a): return 1 + (a.map(\.depth).max() ?? 0)
        case .object(let o): return 1 + (o.map(\.1.depth).max() ?? 0)
        default: return 0
        }
    }

    /// Compact JSON text of this value, keys in input order, strings escaped minimally.
    public func dumped() -> String {
        var out = ""
        dump(into: &out)
        return out
    }

    /// Appends the compact JSON text of this value to `out`.
    public func dump(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): JSONValue.appendQuoted(s, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.dump(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += "," }
                JSONValue.appendQuoted(k, to: &out)
                out += ":"
                v.dump(into: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal.
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

/// Why a body is not acceptable JSON.
public enum JSONParseError: Error, Sendable, Equatable {
    /// Not JSON; `offset` is the byte where parsing failed.
    case syntax(offset: Int)
    /// Containers nested deeper than `limit`.
    case tooDeep(limit: Int)
}

extension JSONValue {
    /// Parses one JSON text (RFC 8259; surrounding whitespace allowed, nothing else after it).
    /// - Parameters:
    ///   - bytes: UTF-8 JSON text.
    ///   - maxDepth: the deepest container nesting accepted; the top-level container is depth 1.
    /// - Throws: `JSONParseError.syntax` for malformed input, `.tooDeep` past `maxDepth`.
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = 512) throws(JSONParseError) -> JSONValue {
        let result: Result<JSONValue, JSONParseError>
        if let r = bytes.withContiguousStorageIfAvailable({ buf in
            var p = JSONParser(buf: buf, maxDepth: maxDepth)
            return Result { () throws(JSONParseError) in try p.parseDocument() }
        }) {
            result = r
        } else {
            result = Array(bytes).withUnsafeBufferPointer { buf in
                var p = JSONParser(buf: buf, maxDepth: maxDepth)
                return Result { () throws(JSONParseError) in try p.parseDocument() }
            }
        }
        return try result.get()
    }

    /// Parses a JSON text given as a String.
    public static func parse(_ text: String, maxDepth: Int = 512) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }
}

private struct JSONParser {
    let buf: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var i = 0
    var depth = 0

    init(buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWS()
        let v = try parseValue()
        skipWS()
        guard i == buf.count else { throw .syntax(offset: i) }
        return v
    }

    mutating func skipWS() {
        while i < buf.count, buf[i] == 0x20 || buf[i] == 0x0A || buf[i] == 0x0D || buf[i] == 0x09 { i += 1 }
    }

    mutating func expect(_ lit: StaticString) throws(JSONParseError) {
        let n = lit.utf8CodeUnitCount
        guard i + n <= buf.count else { throw .syntax(offset: i) }
        let p = lit.utf8Start
        for k in 0..<n where buf[i + k] != p[k] { throw .syntax(offset: i + k) }
        i += n
    }

    mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard i < buf.count else { throw .syntax(offset: i) }
        switch buf[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default: return try parseNumber()
        }
    }

    mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > maxDepth { throw .tooDeep(limit: maxDepth) }
    }

    mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        i += 1
        var members: [(String, JSONValue)] = []
        skipWS()
        if i < buf.count, buf[i] == UInt8(ascii: "}") { i += 1; depth -= 1; return .object(members) }
        while true {
            skipWS()
            guard i < buf.count, buf[i] == UInt8(ascii: "\"") else { throw .syntax(offset: i) }
            let key = try parseString()
            skipWS()
            guard i < buf.count, buf[i] == UInt8(ascii: ":") else { throw .syntax(offset: i) }
            i += 1
            skipWS()
            let value = try parseValue()
            members.append((key, value))
            skipWS()
            guard i < buf.count else { throw .syntax(offset: i) }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "}") { i += 1; break }
            throw .syntax(offset: i)
        }
        depth -= 1
        return .object(members)
    }

    mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        i += 1
        var items: [JSONValue] = []
        skipWS()
        if i < buf.count, buf[i] == UInt8(ascii: "]") { i += 1; depth -= 1; return .array(items) }
        while true {
            skipWS()
            items.append(try parseValue())
            skipWS()
            guard i < buf.count else { throw .syntax(offset: i) }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "]") { i += 1; break }
            throw .syntax(offset: i)
        }
        depth -= 1
        return .array(items)
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = i
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        if i < buf.count, buf[i] == UInt8(ascii: "-") { i += 1 }
        guard i < buf.count, isDigit(buf[i]) else { throw .syntax(offset: i) }
        if buf[i] == 0x30 { i += 1 } else { while i < buf.count, isDigit(buf[i]) { i += 1 } }
        if i < buf.count, buf[i] == UInt8(ascii: ".") {
            i += 1
            guard i < buf.count, isDigit(buf[i]) else { throw .syntax(offset: i) }
            while i < buf.count, isDigit(buf[i]) { i += 1 }
        }
        if i < buf.count, buf[i] == UInt8(ascii: "e") || buf[i] == UInt8(ascii: "E") {
            i += 1
            if i < buf.count, buf[i] == UInt8(ascii: "+") || buf[i] == UInt8(ascii: "-") { i += 1 }
            guard i < buf.count, isDigit(buf[i]) else { throw .syntax(offset: i) }
            while i < buf.count, isDigit(buf[i]) { i += 1 }
        }
        return .number(String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self))
    }

    mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard i + 4 <= buf.count else { throw .syntax(offset: i) }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw .syntax(offset: i)
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func parseString() throws(JSONParseError) -> String {
        i += 1  // opening quote
        let start = i
        // Fast path: no escapes.
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                let s = String(validating: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
                guard let s else { throw .syntax(offset: start) }
                i += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw .syntax(offset: i) }
            i += 1
        }
        var bytes = Array(UnsafeBufferPointer(rebasing: buf[start..<i]))
        while i < buf.count {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                guard let s = String(validating: bytes, as: UTF8.self) else { throw .syntax(offset: start) }
                return s
            }
            if c < 0x20 { throw .syntax(offset: i) }
            if c != UInt8(ascii: "\\") { bytes.append(c); i += 1; continue }
            i += 1
            guard i < buf.count else { throw .syntax(offset: i) }
            let e = buf[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if cp >= 0xD800 && cp < 0xDC00 {
                    // High surrogate: a low surrogate must follow.
                    guard i + 1 < buf.count, buf[i] == UInt8(ascii: "\\"), buf[i + 1] == UInt8(ascii: "u") else {
                        throw .syntax(offset: i)
                    }
                    i += 2
                    let lo = try hex4()
                    guard lo >= 0xDC00 && lo < 0xE000 else { throw .syntax(offset: i) }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                } else if cp >= 0xDC00 && cp < 0xE000 {
                    throw .syntax(offset: i)
                }
                guard let scalar = Unicode.Scalar(cp) else { throw .syntax(offset: i) }
                bytes.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                throw .syntax(offset: i - 1)
            }
        }
        throw .syntax(offset: i)
    }
}
