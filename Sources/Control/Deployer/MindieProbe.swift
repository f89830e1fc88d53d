import Foundation
public import MSCore

/// Asks a MindIE Server pod's management port what the reference's query asks (`/v2/health/ready`,
/// `/v2/health/live`, `/info`), over TLS when `client_mindie_server_tls_enable` is on.
public struct MindieProbe: Sendable {
    let http: HTTPClient
    let timeoutMilliseconds: UInt64

    public init(tls: TLSConfiguration?, timeoutMilliseconds: UInt64 = 3000) throws(HTTPClientError) {
        http = HTTPClient(tls: try tls.map { c throws(HTTPClientError) in try TLSClient(c) })
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    public struct Result: Sendable, Equatable {
        public var ready: Bool
        public var live: Bool
        public var info: JSON?
        /// Why the pod could not be asked (then readiness and liveness come from Kubernetes).
        public var unreachable: String?
    }

    public func probe(ip: String, port: Int) async -> Result {
        func call(_ path: String) async throws(HTTPClientError) -> HTTPClientResponse {
            try await http.execute(HTTPClientRequest(host: ip, port: port, path: path, timeoutMilliseconds: timeoutMilliseconds))
        }
        do {
            let ready = try await call("/v2/health/ready").status == 200
            let live = try await call("/v2/health/live").status == 200
            var info: JSON?
            if let r = try? await call("/info"), r.status == 200 { info = (try? JSON.parse(Data(r.body))) ?? .string(r.text) }
            return Result(ready: ready, live: live, info: info, unreachable: nil)
        } catch {
            return Result(ready: false, live: false, info: nil, unreachable: error.description)
        }
    }
}
