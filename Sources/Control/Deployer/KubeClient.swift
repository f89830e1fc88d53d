import Foundation
public import MSCore

/// A Kubernetes API failure, typed by what the caller can do about it.
public enum KubeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 401: credentials missing or refused.
    case unauthorized(String)
    /// 403: RBAC refused the verb.
    case forbidden(String)
    /// 404.
    case notFound(String)
    /// 409: already exists or a conflicting update.
    case conflict(String)
    /// 422: the object is invalid.
    case invalid(String)
    /// Any other status.
    case status(Int, String)
    /// No HTTP answer.
    case transport(String)
    /// The answer was not the JSON expected.
    case badResponse(String)

    public var description: String {
        switch self {
        case .unauthorized(let m): "unauthorized (401): \(m)"
        case .forbidden(let m): "forbidden (403): \(m)"
        case .notFound(let m): "not found (404): \(m)"
        case .conflict(let m): "conflict (409): \(m)"
        case .invalid(let m): "invalid (422): \(m)"
        case .status(let s, let m): "HTTP \(s): \(m)"
        case .transport(let m): "cannot reach the Kubernetes API server: \(m)"
        case .badResponse(let m): "unexpected answer from the Kubernetes API server: \(m)"
        }
    }

    public var isNotFound: Bool { if case .notFound = self { return true }; return false }

    /// From a non-2xx answer; the message of a `Status` body when there is one.
    static func from(status: Int, body: [UInt8], what: String) -> KubeError {
        var msg = what
        if let v = try? JSON.parse(Data(body)), let m = v["message"]?.stringValue { msg = "\(what): \(m)" }
        else if !body.isEmpty { msg = "\(what): \(String(decoding: body.prefix(256), as: UTF8.self))" }
        switch status {
        case 401: return .unauthorized(msg)
        case 403: return .forbidden(msg)
        case 404: return .notFound(msg)
        case 409: return .conflict(msg)
        case 422: return .invalid(msg)
        default: return .status(status, msg)
        }
    }
}

/// Where the API server is and how to authenticate.
public struct KubeEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// nil = plain HTTP (e.g. `kubectl proxy`).
    public var tls: TLSConfiguration?
    public var bearerToken: String?
    public var timeoutMilliseconds: UInt64

    public init(host: String, port: Int, tls: TLSConfiguration?, bearerToken: String? = nil, timeoutMilliseconds: UInt64 = 3000) {
        self.host = host
        self.port = port
        self.tls = tls
        self.bearerToken = bearerToken
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

/// A small Kubernetes REST client over MSCore's `HTTPClient` (no client library): CRUD of namespaced objects,
/// lists by label/field selector.
public final class KubeClient: Sendable {
    public let endpoint: KubeEndpoint
    let http: HTTPClient

    public init(endpoint: KubeEndpoint) throws(KubeError) {
        self.endpoint = endpoint
        do {
            let tls = try endpoint.tls.map { c throws(HTTPClientError) in try TLSClient(c) }
            http = HTTPClient(tls: tls)
        } catch {
            throw .transport("TLS client setup failed: \(error)")
        }
    }

    /// One request; 2xx → the parsed body (or `.null` when empty).
    public func request(_ method: String, _ path: String, body: JSON? = nil,
                        contentType: String = "application/json") async throws(KubeError) -> JSON {
        var headers: [(String, String)] = [("Accept", "application/json")]
        if let token = endpoint.bearerToken { headers.append(("Authorization", "Bearer \(token)")) }
        let bytes = body.map { Array($0.serialized().utf8) } ?? []
        if body != nil { headers.append(("Content-Type", contentType)) }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(HTTPClientRequest(method: method, host: endpoint.host, port: endpoint.port, path: path,
                                                                headers: headers, body: bytes,
                                                                timeoutMilliseconds: endpoint.timeoutMilliseconds))
        } catch {
            throw .transport("\(method) \(path): \(error)")
        }
        guard (200..<300).contains(response.status) else {
            throw KubeError.from(status: response.status, body: response.body, what: "\(method) \(path)")
        }
        if response.body.isEmpty { return .null }
        guard let v = try? JSON.parse(Data(response.body)) else { throw .badResponse("\(method) \(path): body is not JSON") }
        return v
    }

    public func create(_ object: KubeObject) async throws(KubeError) -> JSON {
        try await request("POST", object.collectionPath, body: object.body)
    }

    public func get(_ kind: KubeObject.Kind, namespace: String, name: String) async throws(KubeError) -> JSON {
        try await request("GET", "\(kind.collectionPath(namespace: namespace))/\(name)")
    }

    /// nil when the object does not exist.
    public func getIfExists(_ kind: KubeObject.Kind, namespace: String, name: String) async throws(KubeError) -> JSON? {
        do { return try await get(kind, namespace: namespace, name: name) } catch where error.isNotFound { return nil }
    }

    /// - Parameter type: `strategic` (`application/strategic-merge-patch+json`, Kubernetes built-ins only) or `merge`.
    public func patch(_ kind: KubeObject.Kind, namespace: String, name: String, patch: JSON, strategic: Bool = true,
                      fieldManager: String? = nil) async throws(KubeError) -> JSON {
        var path = "\(kind.collectionPath(namespace: namespace))/\(name)"
        if let fieldManager { path += "?fieldManager=\(fieldManager)" }
        return try await request("PATCH", path, body: patch,
                                 contentType: strategic ? "application/strategic-merge-patch+json" : "application/merge-patch+json")
    }

    /// Foreground deletion so that a Deployment's pods go with it.
    public func delete(_ kind: KubeObject.Kind, namespace: String, name: String) async throws(KubeError) {
        _ = try await request("DELETE", "\(kind.collectionPath(namespace: namespace))/\(name)",
                              body: jo(["kind": js("DeleteOptions"), "apiVersion": js("v1"), "propagationPolicy": js("Background")]))
    }

    /// A list, optionally cluster-wide (`namespace` nil), filtered by selectors.
    public func list(_ kind: KubeObject.Kind, namespace: String?, labelSelector: String? = nil,
                     fieldSelector: String? = nil) async throws(KubeError) -> JSON {
        var path = namespace.map { kind.collectionPath(namespace: $0) } ?? "\(kind.apiPrefix)/\(kind.resource)"
        var q: [String] = []
        if let labelSelector { q.append("labelSelector=\(Self.percentEncode(labelSelector))") }
        if let fieldSelector { q.append("fieldSelector=\(Self.percentEncode(fieldSelector))") }
        if !q.isEmpty { path += "?" + q.joined(separator: "&") }
        return try await request("GET", path)
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if c.isASCII && (c.isLetter || c.isNumber || "-_.~".contains(c)) { out.append(c) } else { out += String(format: "%%%02X", b) }
        }
        return out
    }
}
