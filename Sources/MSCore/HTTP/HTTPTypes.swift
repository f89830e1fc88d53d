internal import CH2O

/// Header fields in arrival order with case-insensitive lookup.
public struct HTTPHeaders: Sendable, Sequence {
    public var all: [(name: String, value: String)]

    public init(_ all: [(name: String, value: String)] = []) { self.all = all }

    public subscript(_ name: String) -> String? {
        for h in all where h.name.count == name.count && h.name.lowercased() == name.lowercased() { return h.value }
        return nil
    }

    public func values(_ name: String) -> [String] {
        all.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    public mutating func add(_ name: String, _ value: String) { all.append((name, value)) }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { all.makeIterator() }
}

/// A request as the server received it (the body is fully read before the handler runs).
public struct HTTPRequest: Sendable {
    public let method: String
    /// The path without the query.
    public let path: String
    public let query: String?
    public let headers: HTTPHeaders
    public let body: [UInt8]
    /// The tag of the listener it arrived on.
    public let listener: Int
    public let isTLS: Bool
    /// 0x100/0x101 for HTTP/1.x, 0x200 for HTTP/2.
    public let httpVersion: Int

    public init(method: String, path: String, query: String? = nil, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
                listener: Int = 0, isTLS: Bool = false, httpVersion: Int = 0x101) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.listener = listener
        self.isTLS = isTLS
        self.httpVersion = httpVersion
    }

    /// Query parameters (no percent-decoding beyond '+').
    public var queryItems: [String: String] {
        guard let query else { return [:] }
        var out: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            out[String(kv[0])] = kv.count > 1 ? String(kv[1].map { $0 == "+" ? " " : $0 }) : ""
        }
        return out
    }
}

/// Certificates for a TLS listener or a TLS client.
public struct TLSConfiguration: Sendable, Equatable {
    public var certificatePath: String
    public var privateKeyPath: String
    public var caPath: String?
    public var crlPath: String?
    public var keyPassword: String?
    /// Server: require and verify a client certificate (mutual TLS). Client: verify the server.
    public var verifyPeer: Bool
    /// 13 (default) or 12.
    public var minimumVersion: Int

    public init(certificatePath: String = "", privateKeyPath: String = "", caPath: String? = nil, crlPath: String? = nil,
                keyPassword: String? = nil, verifyPeer: Bool = true, minimumVersion: Int = 13) {
        self.certificatePath = certificatePath
        self.privateKeyPath = privateKeyPath
        self.caPath = caPath
        self.crlPath = crlPath
        self.keyPassword = keyPassword
        self.verifyPeer = verifyPeer
        self.minimumVersion = minimumVersion
    }

    func withC<R>(_ body: (UnsafePointer<ch2o_tls_config_t>) -> R) -> R {
        func opt(_ s: String?) -> UnsafeMutablePointer<CChar>? { s.flatMap { $0.isEmpty ? nil : strdup($0) } }
        let cert = opt(certificatePath), key = opt(privateKeyPath), ca = opt(caPath), crl = opt(crlPath), pw = opt(keyPassword)
        defer { for p in [cert, key, ca, crl, pw] { free(p) } }
        var c = ch2o_tls_config_t(cert_file: cert, key_file: key, key_password: pw, ca_file: ca, crl_file: crl,
                                  min_version: Int32(minimumVersion), verify_peer: verifyPeer ? 1 : 0)
        return withUnsafePointer(to: &c) { body($0) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Calls `body` with the headers laid out as C `ch2o_header_t`s pointing into one temporary buffer.
func withCHeaders<R>(_ headers: [(String, String)], _ body: (UnsafePointer<ch2o_header_t>?, Int) -> R) -> R {
    if headers.isEmpty { return body(nil, 0) }
    var bytes: [UInt8] = []
    var spans: [(Int, Int, Int, Int)] = []
    spans.reserveCapacity(headers.count)
    for (name, value) in headers {
        let n0 = bytes.count
        bytes.append(contentsOf: name.utf8)
        let v0 = bytes.count
        bytes.append(contentsOf: value.utf8)
        spans.append((n0, v0 - n0, v0, bytes.count - v0))
    }
    return bytes.withUnsafeBufferPointer { buf in
        let base = UnsafeRawPointer(buf.baseAddress!).assumingMemoryBound(to: CChar.self)
        let cheaders = spans.map { s in
            ch2o_header_t(name: base + s.0, name_len: s.1, value: base + s.2, value_len: s.3)
        }
        return cheaders.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
    }
}

/// A C error buffer as a String.
func cError(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func string(_ p: UnsafePointer<CChar>?, _ len: Int) -> String {
    guard let p, len > 0 else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
}
