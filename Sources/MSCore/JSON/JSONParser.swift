/// Why a text is not acceptable JSON.
public enum JSONParseError: Error, Sendable, Equatable {
    /// Not JSON; `offset` is the byte where parsing failed.
    case syntax(offset: Int)
    /// Containers nested deeper than `limit`.
    case tooDeep(limit: Int)

    /// The byte where parsing stopped.
    public var offset: Int? { if case .syntax(let o) = self { o } else { nil } }

    /// A short human-readable reason.
    public var reason: String {
        switch self {
        case .syntax(let o): "syntax error at byte \(o)"
        case .tooDeep(let l): "nesting deeper than \(l)"
        }
    }
}

extension JSON {
    /// Parses one JSON text (RFC 8259; surrounding whitespace allowed, nothing else after it).
    /// Duplicate object keys follow the rule on `JSON`: the last value wins, at the first key's position.
    /// - Parameters:
    ///   - bytes: UTF-8 JSON text.
    ///   - maxDepth: the deepest container nesting accepted; the top-level container is depth 1.
    /// - Throws: `JSONParseError.syntax` for malformed input, `.tooDeep` past `maxDepth`.
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = 512) throws(JSONParseError) -> JSON {
        let result: Result<JSON, JSONParseError>
        if let r = bytes.withContiguousStorageIfAvailable({ buf in
            var p = Parser(buf: buf, maxDepth: maxDepth)
            return Result { () throws(JSONParseError) in try p.parseDocument() }
        }) {
            result = r
        } else {
            result = Array(bytes).withUnsafeBufferPointer { buf in
                var p = Parser(buf: buf, maxDepth: maxDepth)
                return Result { () throws(JSONParseError) in try p.parseDocument() }
            }
        }
        return try result.get()
    }

    /// Parses a JSON text given as a String.
    public static func parse(_ text: String, maxDepth: Int = 512) throws(JSONParseError) -> JSON {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }
}

private struct Parser {
    let buf: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var i = 0
    var depth = 0

    init(buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSON {
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

    mutating func parseValue() throws(JSONParseError) -> JSON {
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

    mutating func parseObject() throws(JSONParseError) -> JSON {
        try enter()
        i += 1
        var members = JSON.Object()
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
            members[key] = try parseValue()
            skipWS()
            guard i < buf.count else { throw .syntax(offset: i) }
            if buf[i] == UInt8(ascii: ",") { i += 1; continue }
            if buf[i] == UInt8(ascii: "}") { i += 1; break }
            throw .syntax(offset: i)
        }
        depth -= 1
        return .object(members)
    }

    mutating func parseArray() throws(JSONParseError) -> JSON {
        try enter()
        i += 1
        var items: [JSON] = []
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

    mutating func parseNumber() throws(JSONParseError) -> JSON {
        let start = i
        var integral = true
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        if i < buf.count, buf[i] == UInt8(ascii: "-") { i += 1 }
        guard i < buf.count, isDigit(buf[i]) else { throw .syntax(offset: i) }
        if buf[i] == 0x30 { i += 1 } else { while i < buf.count, isDigit(buf[i]) { i += 1 } }
        if i < buf.count, buf[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard i < buf.count, isDigit(buf[i]) else { throw .syntax(offset: i) }
            while i < buf.count, isDigit(buf[i]) { i += 1 }
        }
        if i < buf.count, buf[i] == UInt8(ascii: "e") || buf[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < buf.count, buf[i] == UInt8(ascii: "+") || buf[i] == UInt8(ascii: "-") { i += 1 }
            guard i < buf.count, isDigit(buf[i]) else { throw .syntax(offset: i) }
            while i < buf.count, isDigit(buf[i]) { i += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
        if integral, let v = Int64(text) { return .int(v) }
        guard let d = Double(text) else { throw .syntax(offset: start) }
        return .double(d)
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
