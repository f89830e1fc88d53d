import Foundation
public import Logging
public import MSCore

/// The Controller's inbound REST API (§2 with DECISIONS 1, 21, 22).
///
/// | Method, path | Answer |
/// |---|---|
/// | GET `/v1/startup`, `/v1/health` | 200 `{"message":"","status":"0"}` while the process runs (liveness) |
/// | GET `/v1/readiness` | 200 with `data` when a publishable instance set exists, else 503 naming what is missing |
/// | GET `/metrics` | 200 Prometheus text (`ControllerMetrics`), leader or standby |
/// | POST `/v1/alarm/coordinator` | 200 all records valid; 422 naming the first invalid record (valid ones are kept) |
/// | POST `/v1/alarm/llm_engine` | 200 valid; 422 naming the field |
/// | POST `/v1/terminate-service` | `stopService?mode=Force` to the instance; 200, 404 unknown instance, 502 stop failed |
///
/// Every refusal is a reply `{"message":"<problem>","status":"1"}`: 400 malformed target or JSON, 404 unknown
/// path, 405 wrong method (with `Allow`), 422 invalid field.
public struct ControllerHTTPAPI: Sendable {
    let runtime: ControllerRuntime
    let board: ControllerStatusBoard
    let alarms: AlarmStore
    let singleNode: Bool
    let logger: Logger
    /// HA: why this process does not lead now (standby, etcd unreachable), or nil when it leads or HA is off.
    let notLeading: (@Sendable () -> String?)?
    let metrics: ControllerMetrics
    /// Whether this process acts now and its HA term (0 without HA), for `/metrics`.
    let leadership: @Sendable () -> (leading: Bool, term: Int64)

    public init(runtime: ControllerRuntime, alarms: AlarmStore = AlarmStore(), singleNode: Bool, logger: Logger,
                notLeading: (@Sendable () -> String?)? = nil, metrics: ControllerMetrics,
                leadership: @escaping @Sendable () -> (leading: Bool, term: Int64) = { (true, 0) }) {
        self.notLeading = notLeading
        self.metrics = metrics
        self.leadership = leadership
        self.runtime = runtime
        self.board = runtime.board
        self.alarms = alarms
        self.singleNode = singleNode
        self.logger = logger
    }

    static let routes: [String: String] = [
        "/v1/startup": "GET", "/v1/health": "GET", "/v1/readiness": "GET", "/metrics": "GET",
        "/v1/alarm/coordinator": "POST", "/v1/alarm/llm_engine": "POST", "/v1/terminate-service": "POST",
    ]

    /// The management dialect's envelope.
    static func body(_ message: String, ok: Bool, data: JSON? = nil) -> String {
        var o: JSON.Object = ["message": .string(message), "status": .string(ok ? "0" : "1")]
        if let data { o["data"] = data }
        return JSON.object(o).serialized()
    }

    /// The handler for `HTTPServer` (runs on a loop thread; never blocks).
    public var handler: HTTPHandler {
        let api = self
        return { req, res in api.handle(req, res) }
    }

    func handle(_ req: HTTPRequest, _ res: HTTPResponder) {
        func reply(_ status: Int, _ message: String, data: JSON? = nil, headers: [(String, String)] = []) {
            res.respondJSON(status: status, Self.body(message, ok: status == 200, data: data), headers: headers)
        }
        guard req.path.hasPrefix("/"), !req.path.contains("..") else {
            return reply(400, "Illegal request-target \(req.path)")
        }
        guard let method = Self.routes[req.path] else { return reply(404, "Cannot find the resource \(req.path)") }
        guard req.method == method else {
            return reply(405, "Method \(req.method) is not allowed on \(req.path); use \(method)", headers: [("Allow", method)])
        }
        switch req.path {
        case "/v1/startup", "/v1/health":
            reply(200, "")
        case "/metrics":
            let (leading, term) = leadership()
            res.respond(
                status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                body: metrics.render(board.snapshot, leading: leading, term: term))
        case "/v1/readiness":
            let s = board.snapshot
            let data = JSON.object([
                "ready": .bool(!s.published.isEmpty), "published": .array(s.published.map { .int(Int64($0)) }),
                "prefill": .int(Int64(s.prefill)), "decode": .int(Int64(s.decode)), "instances": .int(Int64(s.instances)),
            ])
            if !s.published.isEmpty { return reply(200, "", data: data) }
            let why: String
            if let standby = notLeading?() {
                why = standby
            } else if !s.rankTableLoaded {
                why = "no valid global rank table read yet"
            } else if s.instances == 0 {
                why = "the rank table lists no instance"
            } else if !singleNode && !s.initialAssignmentDone {
                why = "roles are not assigned yet (\(s.instances) instances known)"
            } else {
                why = singleNode ? "no healthy instance" : "no P/D pair is ready and linked"
            }
            res.respondJSON(status: 503, Self.body("not ready: \(why)", ok: false, data: data))
        case "/v1/alarm/coordinator":
            guard let v = try? JSON.parse(Data(req.body)) else { return reply(400, "body is not valid JSON") }
            guard case .array(let records) = v else { return reply(422, "body must be a JSON array of alarm records") }
            var valid: [JSON] = []
            var problems: [AlarmRequests.Problem] = []
            for (i, r) in records.enumerated() {
                if let p = AlarmRequests.checkCoordinatorRecord(r, index: i) { problems.append(p) } else { valid.append(r) }
            }
            alarms.accept(valid, firstIsFirstOfBody: problems.first?.field.hasPrefix("[0]") != true)
            if let first = problems.first {
                return reply(422, "\(problems.count) of \(records.count) alarm records dropped; first: \(first)")
            }
            reply(200, "")
        case "/v1/alarm/llm_engine":
            guard let v = try? JSON.parse(Data(req.body)) else { return reply(400, "body is not valid JSON") }
            if let p = AlarmRequests.checkLLMEngine(v) { return reply(422, p.description) }
            logger.info("llm_engine alarm received", metadata: ["body": "\(v.serialized())"])
            reply(200, "")
        case "/v1/terminate-service":
            guard let v = try? JSON.parse(Data(req.body)) else { return reply(400, "body is not valid JSON") }
            guard case .string(let ip)? = v["ip"], IPAddress.isValid(ip) else { return reply(422, "ip must be an IP address") }
            let port: Int?
            switch v["port"] {
            case .string(let s)?: port = Int(s)
            case .int(let i)?: port = Int(exactly: i)
            default: port = nil
            }
            guard let port, (1...65535).contains(port) else { return reply(422, "port must be a port number (string)") }
            let box = res.bound
            let runtime = self.runtime
            Task {
                let failure = await runtime.terminate(ip: ip, port: port)
                box.execute { r in
                    if let (status, message) = failure {
                        r.respondJSON(status: status, Self.body(message, ok: false))
                    } else {
                        r.respondJSON(status: 200, Self.body("", ok: true))
                    }
                }
            }
        default:
            reply(404, "Cannot find the resource \(req.path)")
        }
    }
}

