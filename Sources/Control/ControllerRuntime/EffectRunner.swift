import Foundation
public import MSCore

/// What an effect needs to know about the cluster when it runs.
public struct EffectContext: Sendable, Equatable {
    /// Coordinator IPs in table order (the first one gets `offline` and `coordinator_info`).
    public var coordinators: [String]
    /// Before the first refresh: a role post is accepted on any 200; afterwards the body must say
    /// `"result":"ok"` (§3.1).
    public var initPhase: Bool

    public init(coordinators: [String], initPhase: Bool) {
        self.coordinators = coordinators
        self.initPhase = initPhase
    }
}

/// Runs the core's I/O effects and turns their outcomes into events.
public protocol ControllerEffectRunner: Sendable {
    /// Runs one effect at once (`persistIdentity` and `unhealthyEvent` are handled by the runtime, not here; the
    /// `after` delay of `pollTasks` and `queryTasks` is waited by the runtime on its clock before the call).
    /// - Returns: the events that report the outcome, in order.
    func run(_ effect: ControllerCore.Effect, context: EffectContext) async -> [ControllerCore.Event]
    /// `GET /v1/coordinator_info` on the first coordinator (the periodic re-decision).
    func coordinatorInfo(context: EffectContext) async -> CoordinatorInfo?
    /// `GET /stopService?mode=Force` on an instance's management port.
    /// - Returns: nil on success, else what went wrong.
    func stopService(_ key: InstanceKey) async -> String?
}

/// The effect runner over MSCore's `HTTPClient` (§3): per attempt `http_timeout_seconds`, `http_retries` extra
/// attempts, OK = transport success and HTTP 200. Headers `Accept: */*`, `Content-Type: application/json`.
public final class HTTPEffectRunner: ControllerEffectRunner {
    /// Connection settings.
    public struct Configuration: Sendable {
        /// Per attempt.
        public var timeoutSeconds: Int = 5
        /// Extra attempts after the first.
        public var retries: Int = 3
        /// `mindie_ms_coordinator_port`.
        public var coordinatorPort: Int = 1026
        /// Multi-node mode: `/v2/status` and `/v2/role/...`.
        public var v2: Bool = false

        public init(timeoutSeconds: Int = 5, retries: Int = 3, coordinatorPort: Int = 1026, v2: Bool = false) {
            self.timeoutSeconds = timeoutSeconds
            self.retries = retries
            self.coordinatorPort = coordinatorPort
            self.v2 = v2
        }
    }

    let configuration: Configuration
    let servers: HTTPClient
    let coordinators: HTTPClient
    /// HA: every call that changes instances (role posts, refreshes, offline/online, role-switch queries,
    /// stopService) is made only while the fence is open, and carries the term in `x-ms-term` so that a
    /// Coordinator or instance can ignore a deposed leader's late call. nil = HA off (no header).
    let fence: LeaseFence?

    /// - Parameters:
    ///   - serverTLS: TLS to MindIE Servers (`request_server_tls_*`).
    ///   - coordinatorTLS: TLS to the Coordinator (`request_coordinator_tls_*`).
    ///   - fence: HA: the leader's fence (see `fence`).
    public init(configuration: Configuration, serverTLS: TLSClient? = nil, coordinatorTLS: TLSClient? = nil, fence: LeaseFence? = nil) {
        self.configuration = configuration
        self.fence = fence
        self.servers = HTTPClient(tls: serverTLS)
        self.coordinators = HTTPClient(tls: coordinatorTLS)
    }

    static let headers = [("Accept", "*/*"), ("Content-Type", "application/json")]
    /// The header that carries the leader's term.
    public static let termHeader = "x-ms-term"

    /// One call with retries; the last response or error.
    func call(
        _ client: HTTPClient, host: String, port: Int, method: String, path: String, body: Data = Data(),
        retries: Int? = nil, fenced: Bool = false
    ) async -> Result<HTTPClientResponse, HTTPClientError> {
        var req = HTTPClientRequest(
            method: method, host: host, port: port, path: path, headers: Self.headers, body: Array(body),
            timeoutMilliseconds: UInt64(configuration.timeoutSeconds) * 1000)
        var last: Result<HTTPClientResponse, HTTPClientError> = .failure(.cancelled)
        for _ in 0...(retries ?? configuration.retries) {
            if Task.isCancelled { return .failure(.cancelled) }
            if fenced, let fence {
                // checked before every attempt: a leader whose lease is not confirmed sends nothing
                guard let term = fence.term else { return .failure(.cancelled) }
                req.headers = Self.headers + [(Self.termHeader, String(term))]
            }
            do {
                let r = try await client.execute(req)
                last = .success(r)
                if r.status == 200 { return last }
            } catch {
                last = .failure(error)
            }
        }
        return last
    }

    /// A GET on a server's management port, validated by `parse`.
    func probe<T>(_ key: InstanceKey, _ path: String, _ parse: (Data) throws(ProbeFailure) -> T) async -> Result<T, ProbeFailure> {
        switch await call(servers, host: key.ip, port: key.mgmtPort, method: "GET", path: path) {
        case .failure: return .failure(.noReply)
        case .success(let r) where r.status != 200: return .failure(.badResponse("HTTP \(r.status)"))
        case .success(let r):
            do { return .success(try parse(Data(r.body))) } catch { return .failure(error) }
        }
    }

    public func run(_ effect: ControllerCore.Effect, context: EffectContext) async -> [ControllerCore.Event] {
        let v2 = configuration.v2
        switch effect {
        case .getConfig(let id, let key):
            return [.serverConfig(id: id, await probe(key, "/v1/config") { d throws(ProbeFailure) in try ServerConfigInfo(body: d) })]
        case .getStatus(let id, let key):
            let path = v2 ? "/v2/status" : "/v1/status"
            return [.serverStatus(id: id, await probe(key, path) { d throws(ProbeFailure) in try ServerStatus(body: d, v2: v2) })]
        case .postRole(let id, let key, let role, let payload):
            guard let component = role.postPathComponent else { return [.rolePosted(id: id, succeeded: false)] }
            let path = (v2 ? "/v2/role/" : "/v1/role/") + component
            let r = await call(servers, host: key.ip, port: key.mgmtPort, method: "POST", path: path, body: payload.jsonData(),
                fenced: true)
            guard case .success(let resp) = r, resp.status == 200 else { return [.rolePosted(id: id, succeeded: false)] }
            return [.rolePosted(id: id, succeeded: context.initPhase || Self.resultOK(resp.body))]
        case .refresh(let payload):
            let body = payload.jsonData()
            return await withTaskGroup(of: ControllerCore.Event.self) { group in
                for ip in context.coordinators {
                    group.addTask {
                        let r = await self.call(
                            self.coordinators, host: ip, port: self.configuration.coordinatorPort, method: "POST",
                            path: "/v1/instances/refresh", body: body, fenced: true)
                        if case .success(let resp) = r, resp.status == 200 { return .coordinatorRefreshed(ip: ip, succeeded: true) }
                        return .coordinatorRefreshed(ip: ip, succeeded: false)
                    }
                }
                var out: [ControllerCore.Event] = []
                for await e in group { out.append(e) }
                return out
            }
        case .offline(let ids):
            guard let first = context.coordinators.first else { return [.offlineAnswered(succeeded: false)] }
            let ok = await coordinatorOK(first, "POST", "/v1/instances/offline", CoordinatorAPI.idsBody(ids))
            return [.offlineAnswered(succeeded: ok)]
        case .online(let ids):
            for ip in context.coordinators {
                _ = await coordinatorOK(ip, "POST", "/v1/instances/online", CoordinatorAPI.idsBody(ids))
            }
            return []
        case .pollTasks(let ids, _):
            var count: Int?
            for ip in context.coordinators {
                let r = await call(
                    coordinators, host: ip, port: configuration.coordinatorPort, method: "GET",
                    path: CoordinatorAPI.tasksPath(ids: ids))
                guard case .success(let resp) = r, resp.status == 200,
                    let n = try? CoordinatorAPI.taskCount(body: Data(resp.body))
                else { return [.taskCount(nil)] }
                count = max(count ?? n, n)
            }
            return [.taskCount(count)]
        case .queryTasks(let p, let d, let change, _):
            var isEnd: Bool?
            for ip in context.coordinators {
                let r = await call(
                    coordinators, host: ip, port: configuration.coordinatorPort, method: "POST",
                    path: "/v1/instances/query_tasks",
                    body: CoordinatorAPI.queryTasksBody(prefillID: p, decodeID: d, change: change), fenced: true)
                if case .success(let resp) = r, resp.status == 200, let e = try? CoordinatorAPI.isEnd(body: Data(resp.body)) {
                    isEnd = e  // the last answer wins
                } else {
                    isEnd = nil
                }
            }
            return [.queryTasksAnswered(decodeID: d, isEnd: isEnd)]
        case .persistIdentity, .unhealthyEvent:
            return []
        }
    }

    func coordinatorOK(_ ip: String, _ method: String, _ path: String, _ body: Data) async -> Bool {
        let r = await call(
            coordinators, host: ip, port: configuration.coordinatorPort, method: method, path: path, body: body, fenced: true)
        if case .success(let resp) = r, resp.status == 200 { return true }
        return false
    }

    public func coordinatorInfo(context: EffectContext) async -> CoordinatorInfo? {
        guard let first = context.coordinators.first else { return nil }
        let r = await call(
            coordinators, host: first, port: configuration.coordinatorPort, method: "GET", path: "/v1/coordinator_info")
        guard case .success(let resp) = r, resp.status == 200 else { return nil }
        return try? CoordinatorInfo(body: Data(resp.body))
    }

    public func stopService(_ key: InstanceKey) async -> String? {
        switch await call(servers, host: key.ip, port: key.mgmtPort, method: "GET", path: "/stopService?mode=Force", retries: 0, fenced: true) {
        case .failure(let e): return "stopService on \(key): \(e)"
        case .success(let r) where r.status != 200: return "stopService on \(key): HTTP \(r.status)"
        case .success: return nil
        }
    }

    /// Whether a role-post reply body says `"result":"ok"`.
    static func resultOK(_ body: [UInt8]) -> Bool {
        guard let v = try? JSON.parse(Data(body)), case .string(let s)? = v["result"] else { return false }
        return s == "ok"
    }
}
