import Foundation
import Logging
import MSCore
import Synchronization
import Testing

@testable import Control

/// A logger that prints nothing.
let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// Polls `condition` every 50 ms until it holds or `seconds` pass.
func eventually(_ seconds: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(nanoseconds: 50_000_000)
    }
    return try await condition()
}

/// A lock-protected value that closures can share.
final class Locked<T: Sendable>: Sendable {
    private let m: Mutex<T>
    init(_ v: T) { m = Mutex(v) }
    func withLock<R>(_ body: (inout T) -> R) -> R { m.withLock { body(&$0) } }
}

/// A fake MindIE Server management port: `/v1/config`, `/v1/status`, `/v1/role/*`, `/stopService`.
///
/// A role post sets the role and makes every posted peer an `"ok"` link at once; the status then says
/// RoleReady. Without a role it reports RoleUnknown / none.
final class FakeInstance: Sendable {
    struct Post: Sendable, Equatable {
        var role: String
        var localID: Int
        var peers: [Int]
    }

    struct State: Sendable {
        var role = "none"
        var peers: [Int] = []
        var posts: [Post] = []
        var stops = 0
    }

    let state = Locked(State())
    let server: HTTPServer
    var port: Int { server.boundPorts[0] }

    /// - Parameters:
    ///   - port: 0 for any free port, or a port to take again after a restart.
    ///   - role/peers: a role already held (a server that survived a controller restart).
    ///   - host: the address to listen on (pods of a discovery test each have their own loopback address).
    init(host: String = "127.0.0.1", port: Int = 0, role: String = "none", peers: [Int] = []) throws {
        let state = self.state
        state.withLock {
            $0.role = role
            $0.peers = peers
        }
        server = try HTTPServer(
            configuration: .init(threads: 1, listeners: [HTTPListener(host: host, port: port)])
        ) { req, res in
            func json(_ s: String, _ status: Int = 200) { res.respondJSON(status: status, s) }
            switch (req.method, req.path) {
            case ("GET", "/v1/config"):
                json(#"{"modelName":"llama2-7b","maxSeqLen":2560,"npuMemSize":-1,"cpuMemSize":0,"worldSize":1,"maxOutputLen":512,"cacheBlockSize":128}"#)
            case ("GET", "/v1/status"):
                let s = state.withLock { $0 }
                let ready = s.role != "none"
                let links = s.peers.map { #"{"target":\#($0),"link":"ok"}"# }.joined(separator: ",")
                json(
                    #"{"service":{"roleStatus":"\#(ready ? "RoleReady" : "RoleUnknown")","currentRole":"\#(s.role)"},"#
                        + #""resource":{"availSlotsNum":200,"availBlockNum":1024,"waitingRequestNum":0,"runningRequestNum":0,"#
                        + #""swappedRequestNum":0,"freeNpuBlockNums":1024,"freeCpuBlockNums":0,"totalNpuBlockNums":1024,"#
                        + #""totalCpuBlockNums":0},"linkStatus":{"peers":[\#(links)]}}"#)
            case ("POST", let p) where p.hasPrefix("/v1/role/"):
                let role = String(p.dropFirst("/v1/role/".count))
                guard let v = try? JSON.parse(Data(req.body)), case .int(let id)? = v["local"]?["id"],
                    case .array(let peers)? = v["peers"]
                else { return json(#"{"error":"bad body"}"#, 422) }
                let ids = peers.compactMap { p -> Int? in if case .int(let i)? = p["id"] { Int(i) } else { nil } }
                state.withLock {
                    $0.role = role
                    $0.peers = ids
                    $0.posts.append(Post(role: role, localID: Int(id), peers: ids))
                }
                json(#"{"result":"ok"}"#)
            case ("GET", "/stopService"):
                state.withLock { $0.stops += 1 }
                res.respond(status: 200, body: "")
            default:
                json(#"{"error":"not found"}"#, 404)
            }
        }
        try server.start()
    }

    var posts: [Post] { state.withLock { $0.posts } }
    var stops: Int { state.withLock { $0.stops } }

    func stop() {
        server.shutdown()
        server.waitUntilStopped()
    }
}

/// A fake Coordinator management port that records every `POST /v1/instances/refresh` body.
final class FakeCoordinator: Sendable {
    let refreshes = Locked<[JSON]>([])
    /// Every other management call: "METHOD path?query body".
    let calls = Locked<[String]>([])
    /// The `GET /v1/coordinator_info` body (503 while nil).
    let info = Locked<String?>(nil)
    let server: HTTPServer
    var port: Int { server.boundPorts[0] }

    init() throws {
        let refreshes = self.refreshes
        let calls = self.calls
        let info = self.info
        server = try HTTPServer(
            configuration: .init(threads: 1, listeners: [HTTPListener(host: "127.0.0.1", port: 0)])
        ) { [calls, info] req, res in
            if req.method == "POST", req.path == "/v1/instances/refresh", let v = try? JSON.parse(Data(req.body)) {
                refreshes.withLock { $0.append(v) }
                return res.respondJSON(status: 200, #"{"result":"ok"}"#)
            }
            calls.withLock { $0.append("\(req.method) \(req.path)\(req.query.map { "?" + $0 } ?? "") \(String(decoding: req.body, as: UTF8.self))") }
            switch (req.method, req.path) {
            case ("POST", "/v1/instances/offline"), ("POST", "/v1/instances/online"):
                res.respondJSON(status: 200, "{}")
            case ("GET", "/v1/coordinator_info"):
                if let body = info.withLock({ $0 }) { res.respondJSON(status: 200, body) } else {
                    res.respondJSON(status: 503, #"{"error":"not initialized"}"#)
                }
            case ("GET", "/v1/instances/tasks"):
                res.respondJSON(status: 200, #"{"tasks":[0]}"#)
            case ("POST", "/v1/instances/query_tasks"):
                res.respondJSON(status: 200, #"{"is_end":true}"#)
            default:
                res.respondJSON(status: 404, #"{"error":"not found"}"#)
            }
        }
        try server.start()
    }

    /// The last refresh body.
    var latest: JSON? { refreshes.withLock { $0.last } }

    /// id → (role code, peers) of the last refresh.
    var latestInstances: [Int: (role: Int, peers: [Int])] {
        guard case .array(let list)? = latest?["instances"] else { return [:] }
        var out: [Int: (Int, [Int])] = [:]
        for i in list {
            guard case .int(let id)? = i["id"], case .int(let role)? = i["static_info"]?["role"],
                case .array(let peers)? = i["dynamic_info"]?["peers"]
            else { continue }
            out[Int(id)] = (Int(role), peers.compactMap { if case .int(let p) = $0 { Int(p) } else { nil } })
        }
        return out
    }

    func stop() {
        server.shutdown()
        server.waitUntilStopped()
    }
}

/// A temp directory with a rank table over fake instances, a config, and a `ControllerService` on port 0 that
/// runs on a `ManualClock` (`eventually` moves it).
final class ClusterFixture: @unchecked Sendable {
    let dir: String
    let coordinator: FakeCoordinator
    var instances: [FakeInstance]
    var service: ControllerService?
    var running: Task<Void, Never>?
    /// The running Controller's clock (a new one for each start).
    var clock = ManualClock()
    var mode: String

    init(instances n: Int, mode: String = "pd_separate") throws {
        dir = NSTemporaryDirectory() + "ctlrt-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        coordinator = try FakeCoordinator()
        instances = try (0..<n).map { _ in try FakeInstance() }
        self.mode = mode
        try writeRankTable()
    }

    var rankTablePath: String { dir + "/global_rank_table_file.json" }
    var processStatePath: String { dir + "/controller_process_status.json" }
    var clusterStatusPath: String { dir + "/cluster_status_output.json" }

    /// Writes the rank table listing the instances at `indices` (all by default).
    func writeRankTable(_ indices: [Int]? = nil) throws {
        let list = (indices ?? Array(instances.indices)).map { i in
            TableServer(
                ip: "127.0.0.1", hostID: "127.0.0.1", mgmtPort: String(instances[i].port),
                predictPort: String(20000 + i), metricPort: String(21000 + i))
        }
        try AtomicFile.write(rankTableJSON(servers: list, coordinators: ["127.0.0.1"]).data, to: rankTablePath)
    }

    /// - Parameter changes: more keys over the fixture's (e.g. file paths under a kubelet volume).
    func config(_ changes: [(String, JSON?)] = []) throws -> ControllerConfig {
        let base: [(String, JSON?)] = [
            ("deploy_mode", .string(mode)),
            ("default_p_rate", 1), ("default_d_rate", 1),
            ("cluster_synchronization_seconds", 1), ("rank_table_detecting_seconds", 1),
            ("http_timeout_seconds", 1), ("http_retries", 0),
            ("mindie_ms_coordinator_port", .int(Int64(coordinator.port))),
            ("global_rank_table_file_path", .string(rankTablePath)),
            ("process_manager.file_path", .string(processStatePath)),
            ("cluster_status.file_path", .string(clusterStatusPath)),
            ("digs_model_config_path", .string(Paths.conf.appendingPathComponent("model_config/llama2-70B.json").path)),
            ("digs_machine_config_path", .string(Paths.conf.appendingPathComponent("machine_config/800IA2.json").path)),
        ]
        return try loadConfig(base.filter { b in !changes.contains { $0.0 == b.0 } } + changes)
    }

    /// Starts a Controller (probe and alarm listeners on free ports).
    @discardableResult
    func startController(
        _ changes: [(String, JSON?)] = [], environment: [String: String] = ["MINDIE_CHECK_INPUTFILES_PERMISSION": "0"]
    ) async throws -> ControllerService {
        clock = ManualClock()
        let s = try ControllerService(
            config: try config(changes), environment: environment, logger: quietLogger, clock: clock,
            portOverrides: (0, 0), metrics: .isolated())
        try s.listen()
        running = Task { await s.run() }
        service = s
        return s
    }

    func stopController() async {
        running?.cancel()
        await running?.value
        running = nil
        service = nil
    }

    /// Waits until `condition` holds, moving the Controller's clock whenever all its work waits on the clock;
    /// gives up after `seconds` of real time.
    func eventually(_ seconds: Double = 20, _ condition: () async throws -> Bool) async rethrows -> Bool {
        guard let board = service?.runtime.board else { return try await condition() }
        return try await clock.drive(board, seconds: seconds, condition)
    }

    /// A request to the running Controller's REST API (listener 0 = probe, 1 = alarm).
    func request(_ method: String, _ path: String, body: String = "", listener: Int = 0) async throws -> HTTPClientResponse {
        let client = HTTPClient()
        return try await client.execute(
            HTTPClientRequest(
                method: method, host: "127.0.0.1", port: service!.boundPorts[listener], path: path,
                headers: [("Content-Type", "application/json")], body: Array(body.utf8), timeoutMilliseconds: 5000))
    }

    /// Waits until the coordinator's last refresh has exactly `ids`.
    func waitForRefresh(_ ids: [Int], seconds: Double = 20) async -> Bool {
        await eventually(seconds) { coordinator.latestInstances.keys.sorted() == ids }
    }

    func tearDown() async {
        await stopController()
        for i in instances { i.stop() }
        coordinator.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// A clock that moves only when told to; sleepers wake when their deadline is reached (or on cancellation).
final class ManualClock: ControllerClock {
    struct Sleeper {
        var id: Int
        var deadline: Date
        var continuation: CheckedContinuation<Void, any Error>
    }

    struct State {
        var now = Date(timeIntervalSince1970: 1_700_000_000)
        var sleepers: [Sleeper] = []
        var nextID = 0
        /// Sleeps cancelled before they registered (the cancel handler ran first).
        var cancelledEarly: Set<Int> = []
    }

    let state = Locked(State())

    func now() -> Date { state.withLock { $0.now } }

    func sleep(seconds: TimeInterval) async throws {
        let id = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                enum Now { case wait, resume, cancel }
                let now = state.withLock { s -> Now in
                    if s.cancelledEarly.remove(id) != nil { return .cancel }
                    if seconds <= 0 { return .resume }
                    s.sleepers.append(Sleeper(id: id, deadline: s.now.addingTimeInterval(seconds), continuation: c))
                    return .wait
                }
                switch now {
                case .resume: c.resume()
                case .cancel: c.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let c = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                guard let i = s.sleepers.firstIndex(where: { $0.id == id }) else {
                    // the sleep has not registered yet: it must not wait once it does
                    s.cancelledEarly.insert(id)
                    return nil
                }
                return s.sleepers.remove(at: i).continuation
            }
            c?.resume(throwing: CancellationError())
        }
    }

    /// Sleeps registered now.
    var sleepers: Int { state.withLock { $0.sleepers.count } }

    /// Moves time to the earliest sleeper's deadline and wakes every sleeper due then.
    /// - Returns: false when nobody sleeps.
    @discardableResult
    func advanceToNextDeadline() -> Bool {
        guard let next = state.withLock({ s in s.sleepers.map(\.deadline).min() }) else { return false }
        advance(max(0, next.timeIntervalSince(now())))
        return true
    }

    /// Waits (polling every 2 ms of real time, for at most `seconds`) until `condition` holds. Whenever every
    /// live task of the runtime that `board` belongs to sleeps on this clock, nothing can change until the clock
    /// moves: it is then moved to the next deadline.
    ///
    /// Why reading two counters is enough: sleepers only go away when this method advances the clock (or on
    /// cancellation), so the count read first is never above the truth at the later read of the live tasks;
    /// every sleeper is a live task; so equal reads mean all live tasks slept at the second read.
    func drive(_ board: ControllerStatusBoard, seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            let asleep = sleepers
            let alive = board.aliveTasks
            if alive > 0 && asleep == alive { advanceToNextDeadline() }
            try? await Task.sleep(nanoseconds: 2_000_000)
        }
        return try await condition()
    }

    /// Moves time forward and wakes every sleeper whose deadline passed.
    func advance(_ seconds: TimeInterval) {
        let due = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.now = s.now.addingTimeInterval(seconds)
            let now = s.now
            let due = s.sleepers.filter { $0.deadline <= now }
            s.sleepers.removeAll { $0.deadline <= now }
            return due.map(\.continuation)
        }
        for c in due { c.resume() }
    }
}
