import Foundation
import Synchronization

/// An etcd call that did not give an answer we can use.
public enum EtcdError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No HTTP answer (connect refused, timeout, TLS failure): etcd is unreachable from here.
    case unreachable(endpoint: String, HTTPClientError)
    /// etcd answered with an error (`{"error","code"}` of its JSON gateway).
    case refused(endpoint: String, status: Int, message: String)
    /// The answer was not the JSON we expect (not an etcd v3 gateway at that address?).
    case malformed(endpoint: String, String)

    public var description: String {
        switch self {
        case .unreachable(let e, let err): "etcd at \(e) unreachable: \(err)"
        case .refused(let e, let s, let m): "etcd at \(e) refused the call (HTTP \(s)): \(m)"
        case .malformed(let e, let m): "etcd at \(e) gave an unexpected answer (is it an etcd v3 JSON gateway?): \(m)"
        }
    }
}

/// One key of etcd with its revisions.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    /// 0 when the key is not attached to a lease.
    public var lease: Int64
}

/// A comparison of a transaction (`Compare` of etcd's KV API).
public struct EtcdCompare: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        /// 0 = the key does not exist.
        case createRevision(Int64)
        case modRevision(Int64)
        case version(Int64)
        case value([UInt8])
    }

    public enum Result: String, Sendable {
        case equal = "EQUAL", notEqual = "NOT_EQUAL", greater = "GREATER", less = "LESS"
    }

    public var key: String
    public var target: Target
    public var result: Result

    public init(key: String, _ target: Target, _ result: Result = .equal) {
        self.key = key
        self.target = target
        self.result = result
    }
}

/// One operation of a transaction.
public enum EtcdOperation: Sendable, Equatable {
    /// `lease` 0 = no lease.
    case put(key: String, value: [UInt8], lease: Int64)
    case get(key: String)
    case delete(key: String)
}

/// What a transaction did.
public struct EtcdTxnResult: Sendable, Equatable {
    public var succeeded: Bool
    /// The store's revision after the transaction (the revision of its writes when it wrote).
    public var revision: Int64
    /// For each `get` of the branch that ran, in order: the key found, if any.
    public var gets: [EtcdKeyValue?]
}

/// A granted lease.
public struct EtcdLease: Sendable, Equatable {
    public var id: Int64
    /// Seconds as etcd granted them.
    public var ttl: Int64
}

/// An etcd v3 client over its JSON gateway (`POST /v3/...`, keys and values base64) on MSCore's `HTTPClient`
/// (architecture.md, "HA"). Every call has a deadline. With several members, a call starts at the member that
/// answered last and moves on to the next one on a transport failure or a 5xx (a member without quorum), so one dead
/// member costs one deadline, once. Safe to share between tasks.
public final class EtcdClient: Sendable {
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { "\(host):\(port)" }
    }

    public let endpoints: [Endpoint]
    let client: HTTPClient
    let timeoutMilliseconds: UInt64
    let isTLS: Bool
    /// The member that answered last (where the next call starts).
    private let preferred = Atomic<Int>(0)

    /// - Parameters:
    ///   - endpoints: etcd client URLs' host and port (tried in order on transport failures).
    ///   - tls: TLS to etcd (`etcd_server_tls_*`): verifies etcd against the CA, presents the client certificate.
    ///   - timeoutMilliseconds: per call (the reference's RPC deadline is 5 s).
    public init(endpoints: [Endpoint], tls: TLSClient? = nil, timeoutMilliseconds: UInt64 = 5000) {
        precondition(!endpoints.isEmpty, "an etcd client needs an endpoint")
        self.endpoints = endpoints
        self.client = HTTPClient(tls: tls)
        self.timeoutMilliseconds = timeoutMilliseconds
        self.isTLS = tls != nil
    }

    public var endpointDescription: String { endpoints.map(\.description).joined(separator: ",") }

    /// The member the next call starts at: the one that answered last.
    public var current: Endpoint { endpoints[preferred.load(ordering: .relaxed) % endpoints.count] }

    // MARK: - KV

    /// The key, if present, and the store's revision.
    public func get(_ key: String) async throws(EtcdError) -> (EtcdKeyValue?, revision: Int64) {
        let (ep, r) = try await call("/v3/kv/range", ["key": b64(key)])
        return (try kvs(r["kvs"], ep).first, try revision(r, ep))
    }

    /// Every key under `prefix`.
    public func getPrefix(_ prefix: String) async throws(EtcdError) -> [EtcdKeyValue] {
        let (ep, r) = try await call("/v3/kv/range", ["key": b64(prefix), "range_end": b64Bytes(Self.prefixEnd(prefix))])
        return try kvs(r["kvs"], ep)
    }

    /// - Returns: the revision of the write.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], lease: Int64 = 0) async throws(EtcdError) -> Int64 {
        var body: [String: Any] = ["key": b64(key), "value": b64Bytes(value)]
        if lease != 0 { body["lease"] = String(lease) }
        let (ep, r) = try await call("/v3/kv/put", body)
        return try revision(r, ep)
    }

    /// - Returns: how many keys were deleted.
    @discardableResult
    public func delete(_ key: String) async throws(EtcdError) -> Int {
        let (_, r) = try await call("/v3/kv/deleterange", ["key": b64(key)])
        return Int(Self.int64(r["deleted"]) ?? 0)
    }

    /// An atomic compare-then-act.
    public func txn(_ compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []) async throws(EtcdError)
        -> EtcdTxnResult
    {
        let body: [String: Any] = [
            "compare": compare.map(compareJSON), "success": success.map(opJSON), "failure": failure.map(opJSON),
        ]
        let (ep, r) = try await call("/v3/kv/txn", body)
        let succeeded = (r["succeeded"] as? Bool) ?? false  // the gateway omits false
        var gets: [EtcdKeyValue?] = []
        for case let resp as [String: Any] in (r["responses"] as? [Any]) ?? [] {
            if let range = resp["response_range"] as? [String: Any] { gets.append(try kvs(range["kvs"], ep).first) }
        }
        return EtcdTxnResult(succeeded: succeeded, revision: try revision(r, ep), gets: gets)
    }

    // MARK: - Leases

    public func grantLease(ttlSeconds: Int64) async throws(EtcdError) -> EtcdLease {
        let (ep, r) = try await call("/v3/lease/grant", ["TTL": String(ttlSeconds)])
        if let e = r["error"] as? String, !e.isEmpty { throw .refused(endpoint: ep, status: 200, message: e) }
        guard let id = Self.int64(r["ID"]), let ttl = Self.int64(r["TTL"]) else { throw .malformed(endpoint: ep, "lease grant without ID/TTL") }
        return EtcdLease(id: id, ttl: ttl)
    }

    /// One keep-alive round.
    /// - Returns: the TTL the lease has again, in seconds; 0 when the lease no longer exists (expired or revoked).
    public func keepAlive(_ id: Int64) async throws(EtcdError) -> Int64 {
        let (ep, r) = try await call("/v3/lease/keepalive", ["ID": String(id)])
        // a streamed RPC: the gateway wraps the one answer in "result"
        guard let result = r["result"] as? [String: Any] else {
            if let e = r["error"] as? [String: Any] {
                throw .refused(endpoint: ep, status: 200, message: (e["message"] as? String) ?? "\(e)")
            }
            throw .malformed(endpoint: ep, "keep-alive answer without result")
        }
        return Self.int64(result["TTL"]) ?? 0
    }

    /// Remaining seconds of a lease; 0 or less when it is gone.
    public func timeToLive(_ id: Int64) async throws(EtcdError) -> Int64 {
        let (_, r) = try await call("/v3/lease/timetolive", ["ID": String(id)])
        return Self.int64(r["TTL"]) ?? 0
    }

    /// Revokes a lease: every key attached to it is deleted. A lease already gone is not an error.
    public func revoke(_ id: Int64) async throws(EtcdError) {
        do {
            _ = try await call("/v3/lease/revoke", ["ID": String(id)])
        } catch .refused(_, _, let message) where message.contains("lease not found") {
            return
        }
    }

    // MARK: - Wire

    func call(_ path: String, _ body: [String: Any]) async throws(EtcdError) -> (String, [String: Any]) {
        let data: Data
        do { data = try JSONSerialization.data(withJSONObject: body) } catch {
            throw .malformed(endpoint: endpointDescription, "cannot encode request: \(error)")
        }
        var lastError: EtcdError = .malformed(endpoint: endpointDescription, "no endpoint")
        let first = preferred.load(ordering: .relaxed)
        for k in 0..<endpoints.count {
            let index = (first + k) % endpoints.count
            let ep = endpoints[index]
            let name = (isTLS ? "https://" : "http://") + ep.description
            let req = HTTPClientRequest(
                method: "POST", host: ep.host, port: ep.port, path: path,
                headers: [("content-type", "application/json"), ("host", ep.description)], body: Array(data),
                timeoutMilliseconds: timeoutMilliseconds)
            let resp: HTTPClientResponse
            do { resp = try await client.execute(req) } catch {
                lastError = .unreachable(endpoint: name, error)
                continue
            }
            let obj = try? JSONSerialization.jsonObject(with: Data(resp.body)) as? [String: Any]
            guard resp.status == 200 else {
                let message = (obj?["error"] as? String) ?? (obj?["message"] as? String) ?? String(resp.text.prefix(200))
                lastError = .refused(endpoint: name, status: resp.status, message: message)
                // a member cut off from the quorum answers 5xx: another may serve; a 4xx is about the call itself
                if resp.status >= 500, k + 1 < endpoints.count { continue }
                throw lastError
            }
            guard let obj else { throw .malformed(endpoint: name, "not a JSON object: \(resp.text.prefix(200))") }
            if index != first { preferred.store(index, ordering: .relaxed) }
            return (name, obj)
        }
        throw lastError
    }

    func revision(_ r: [String: Any], _ ep: String) throws(EtcdError) -> Int64 {
        guard let h = r["header"] as? [String: Any], let rev = Self.int64(h["revision"]) else {
            throw .malformed(endpoint: ep, "answer without header.revision")
        }
        return rev
    }

    func kvs(_ v: Any?, _ ep: String) throws(EtcdError) -> [EtcdKeyValue] {
        guard let v else { return [] }
        guard let list = v as? [Any] else { throw .malformed(endpoint: ep, "kvs is not a list") }
        var out: [EtcdKeyValue] = []
        for case let kv as [String: Any] in list {
            guard let k = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else {
                throw .malformed(endpoint: ep, "key is not base64")
            }
            let value = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            out.append(
                EtcdKeyValue(
                    key: String(decoding: k, as: UTF8.self), value: Array(value),
                    createRevision: Self.int64(kv["create_revision"]) ?? 0, modRevision: Self.int64(kv["mod_revision"]) ?? 0,
                    version: Self.int64(kv["version"]) ?? 0, lease: Self.int64(kv["lease"]) ?? 0))
        }
        return out
    }

    func compareJSON(_ c: EtcdCompare) -> [String: Any] {
        var o: [String: Any] = ["key": b64(c.key), "result": c.result.rawValue]
        switch c.target {
        case .createRevision(let r): o["target"] = "CREATE"; o["create_revision"] = String(r)
        case .modRevision(let r): o["target"] = "MOD"; o["mod_revision"] = String(r)
        case .version(let v): o["target"] = "VERSION"; o["version"] = String(v)
        case .value(let v): o["target"] = "VALUE"; o["value"] = b64Bytes(v)
        }
        return o
    }

    func opJSON(_ op: EtcdOperation) -> [String: Any] {
        switch op {
        case .put(let k, let v, let lease):
            var p: [String: Any] = ["key": b64(k), "value": b64Bytes(v)]
            if lease != 0 { p["lease"] = String(lease) }
            return ["request_put": p]
        case .get(let k): return ["request_range": ["key": b64(k)]]
        case .delete(let k): return ["request_delete_range": ["key": b64(k)]]
        }
    }

    func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
    func b64Bytes(_ b: [UInt8]) -> String { Data(b).base64EncodedString() }

    /// int64 fields arrive as JSON strings (protobuf JSON mapping); tolerate numbers too.
    static func int64(_ v: Any?) -> Int64? {
        if let s = v as? String { return Int64(s) }
        if let n = v as? NSNumber { return n.int64Value }
        return nil
    }

    /// The first key after every key that starts with `prefix`.
    static func prefixEnd(_ prefix: String) -> [UInt8] {
        var b = Array(prefix.utf8)
        while let last = b.last {
            if last < 0xff {
                b[b.count - 1] = last + 1
                return b
            }
            b.removeLast()
        }
        return [0]
    }
}
