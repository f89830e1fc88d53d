import Foundation
public import MSCore
import Synchronization

extension HTTPResponder: ResponseSink {}

/// The ports one instance ended up listening on (after `start()`).
public struct InstancePorts: Sendable, Equatable {
    public var host: String
    public var data: Int
    public var management: Int
    public var metrics: Int
    public var interComm: Int
    public var control: Int?

    public var json: JSON {
        .obj([
            "host": .string(host), "port": .int(data), "managementPort": .int(management), "metricsPort": .int(metrics),
            "interCommPort": .int(interComm), "controlPort": control.map { .int($0) } ?? .null,
        ])
    }
}

/// Hosts N simulated MindIE Server instances in this process, each with its own ports, its own state and its
/// own event-loop thread (MSCore's h2o server).
///
/// ```swift
/// var c = InstanceConfiguration(); c.port = 0; c.managementPort = 0; c.metricsPort = 0; c.interCommPort = 0
/// let sim = try SimulatorServer(configuration: .init(instances: [c, c]))
/// try sim.start()
/// sim.ports[0].data   // bound port
/// sim.shutdown()
/// ```
public final class SimulatorServer: @unchecked Sendable {
    /// How the process is configured.
    public struct Configuration: Sendable {
        public var instances: [InstanceConfiguration]
        /// Time advances only through `advanceClock` / `POST /sim/clock/advance`.
        public var manualClock: Bool
        public var maxConnections: Int
        public init(instances: [InstanceConfiguration], manualClock: Bool = false, maxConnections: Int = 0) {
            self.instances = instances; self.manualClock = manualClock; self.maxConnections = maxConnections
        }
    }

    public let configuration: Configuration
    private var hosts: [InstanceHost] = []
    private let manualNow = ManualTime()
    private let start0 = ContinuousClock.now
    /// Called (on a background thread) when an instance stops (`stopService`, true = Force) or crashes.
    /// Default: that instance's listeners close. `mindie_sim` exits the process instead.
    public var onInstanceExit: (@Sendable (Int, _ force: Bool) -> Void)?
    private let stoppedAll = DispatchSemaphore(value: 0)

    public init(configuration: Configuration) throws(HTTPServerError) {
        self.configuration = configuration
        let clock: @Sendable () -> Double
        if configuration.manualClock {
            let m = manualNow
            clock = { m.value.withLock { $0 } }
        } else {
            let t0 = start0
            clock = {
                let d = ContinuousClock.now - t0
                return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
            }
        }
        for (i, c) in configuration.instances.enumerated() {
            hosts.append(try InstanceHost(index: i, configuration: c, clock: clock, maxConnections: configuration.maxConnections, owner: self))
        }
    }

    /// The bound ports of each instance (known at init, except for an instance with a load time or a
    /// `slow_start` on `listen`, whose port-0 listeners are only bound when it starts).
    public var ports: [InstancePorts] { hosts.map(\.ports) }

    /// Starts every instance's loop; an instance with a load time (or `slow_start` on `listen`) starts later.
    public func start() throws(HTTPServerError) {
        for h in hosts { try h.start() }
    }

    /// Stops every instance.
    public func shutdown() {
        for h in hosts { h.stop() }
        stoppedAll.signal()
    }

    /// Blocks until `shutdown()`.
    public func waitUntilStopped() {
        stoppedAll.wait()
        stoppedAll.signal()
    }

    /// Manual clock: moves time forward by `ms` and lets every instance run what became due.
    public func advanceClock(by ms: Double) {
        manualNow.value.withLock { $0 += ms }
        for h in hosts { h.wakeFromAnyThread() }
    }

    /// Runs `body` on instance `index`'s loop with the instance, and returns its result.
    public func withInstance<T: Sendable>(_ index: Int, _ body: @escaping @Sendable (SimInstance) -> T) async -> T {
        let h = hosts[index]
        return await withCheckedContinuation { cont in
            // a stopped instance's loop refuses the work; nothing else touches the instance then, so read it here
            if !h.execute({ cont.resume(returning: body(h.instance)) }) { cont.resume(returning: body(h.instance)) }
        }
    }

    /// Runs `body` on every instance's loop and returns once all have run (a stopped instance runs it here:
    /// nothing else touches it then). Blocks the calling thread, which must not be an instance's loop; for
    /// synchronous teardown, where awaiting `withInstance` would need a free thread of the task pool.
    public func withEveryInstance(_ body: @escaping @Sendable (SimInstance) -> Void) {
        let group = DispatchGroup()
        for h in hosts {
            group.enter()
            if !h.execute({ body(h.instance); group.leave() }) {
                body(h.instance)
                group.leave()
            }
        }
        group.wait()
    }

    func host(ip: String, interCommPort: Int) -> InstanceHost? {
        hosts.first { $0.instance.configuration.ipAddress == ip && $0.ports.interComm == interCommPort }
    }

    func instanceExited(_ index: Int, force: Bool) {
        if let cb = onInstanceExit {
            DispatchQueue.global().async { cb(index, force) }
        } else {
            let h = hosts[index]
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { h.stop() }
        }
    }
}

/// One instance with its HTTP server and loop.
final class InstanceHost: @unchecked Sendable {
    let instance: SimInstance
    private(set) var server: HTTPServer?
    private(set) var ports: InstancePorts
    private let maxConnections: Int
    private weak var owner: SimulatorServer?
    private var timer: LoopTimer?
    private var client: HTTPClient?
    private let runningFlag = Atomic<Bool>(false)
    var running: Bool { runningFlag.load(ordering: .acquiring) }
    private let manual: Bool
    private let delayStart: Double
    private let clock: @Sendable () -> Double

    init(index: Int, configuration c: InstanceConfiguration, clock: @escaping @Sendable () -> Double, maxConnections: Int, owner: SimulatorServer) throws(HTTPServerError) {
        self.owner = owner
        self.clock = clock
        self.manual = owner.configuration.manualClock
        self.maxConnections = maxConnections
        var startDelay = c.loadTime
        if let f = c.faults.first(where: { $0.type == "slow_start" }), (f.params["phase"] ?? f.mode ?? "listen") == "listen" {
            startDelay = max(startDelay, (f.double("s") ?? 0) * 1000)
        }
        delayStart = startDelay
        var cc = c
        if startDelay > 0 { cc.loadTime = 0 }
        instance = SimInstance(index: index, configuration: cc, clock: clock, wallClock: { Date().timeIntervalSince1970 })
        ports = InstancePorts(
            host: c.ipAddress, data: c.port, management: c.managementPort, metrics: c.metricsPort, interComm: c.interCommPort,
            control: c.controlPort)
        // ports bind now, unless the instance must stay unreachable for a while (load time, slow_start)
        if startDelay <= 0 { try bind() }
    }

    /// Creates the listeners and records the bound ports in the instance's configuration.
    private func bind() throws(HTTPServerError) {
        let c = instance.configuration
        // group port kinds by (host, port); port 0 always gets a listener of its own
        var listeners: [HTTPListener] = []
        var kinds: [[PortKind]] = []
        func add(_ host: String, _ port: Int, _ kind: PortKind) {
            if port != 0, let i = listeners.firstIndex(where: { $0.port == port && $0.host == host }) {
                kinds[i].append(kind)
                return
            }
            listeners.append(HTTPListener(host: host, port: port, tag: listeners.count))
            kinds.append([kind])
        }
        add(c.ipAddress, c.port, .data)
        add(c.managementIpAddress, c.managementPort, .management)
        add(c.managementIpAddress, c.metricsPort, .metrics)
        add(c.ipAddress, c.interCommPort, .interComm)
        if let cp = c.controlPort { add(c.managementIpAddress, cp, .control) }
        var tagKinds: [Int: [PortKind]] = [:]
        for (i, k) in kinds.enumerated() { tagKinds[i] = k }
        // set once below, before start(): no request reaches the handler earlier
        let box = Mutex<InstanceHost?>(nil)
        let server = try HTTPServer(
            configuration: HTTPServerConfiguration(
                threads: 1, listeners: listeners, maxRequestBodyBytes: 2 * c.maxRequestLength,  // the instance answers the spec's JSON 413 itself below this
                maxConnections: maxConnections, idleTimeoutMilliseconds: 600_000, gracefulTimeoutMilliseconds: 1000),
            handler: { [tagKinds] req, responder in
                guard let host = box.withLock({ $0 }) else { responder.respond(status: 503, headers: [], body: []); return }
                host.serve(req, responder, kinds: tagKinds[req.listener] ?? [.data])
            })
        let bound = server.boundPorts
        func port(_ kind: PortKind) -> Int? {
            kinds.firstIndex { $0.contains(kind) }.map { bound[$0] }
        }
        ports = InstancePorts(
            host: c.ipAddress, data: port(.data)!, management: port(.management)!, metrics: port(.metrics)!,
            interComm: port(.interComm)!, control: port(.control))
        // no request can reach the instance before start(), so its configuration may be updated here
        instance.configuration.port = ports.data
        instance.configuration.managementPort = ports.management
        instance.configuration.metricsPort = ports.metrics
        instance.configuration.interCommPort = ports.interComm
        instance.configuration.controlPort = ports.control
        self.server = server
        box.withLock { $0 = self }
    }

    func start() throws(HTTPServerError) {
        if delayStart > 0 {
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(delayStart))) { [self] in
                do { try self.startNow() } catch {
                    FileHandle.standardError.write(Data("mindie_sim: instance \(self.instance.index) cannot listen: \(error)\n".utf8))
                }
            }
            return
        }
        try startNow()
    }

    private func startNow() throws(HTTPServerError) {
        if server == nil { try bind() }
        guard let server else { return }
        try server.start()
        runningFlag.store(true, ordering: .releasing)
        let loop = server.loops[0]
        client = HTTPClient(loop: loop)
        execute { [self] in
            instance.transport = self
            instance.onWakeupChanged = { [unowned self] t in self.arm(t) }
            instance.onStop = { [unowned self] force in self.owner?.instanceExited(instance.index, force: force) }
            instance.onCrash = { [unowned self] _ in self.owner?.instanceExited(instance.index, force: true) }
            instance.onRefuse = { [unowned self] seconds in self.refuse(for: seconds) }
            if manual {
                instance.advanceClock = { [weak owner] ms in owner?.advanceClock(by: ms) }
            }
            instance.wake()
        }
    }

    /// The `refuse` fault: drop every connection, close the listeners, and listen again after `seconds`.
    private func refuse(for seconds: Double?) {
        instance.dropConnections()
        timer?.cancel()
        timer = nil
        DispatchQueue.global().async { [self] in
            self.stop()
            self.server = nil
            self.client = nil
            guard let seconds else { return }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(seconds * 1000))) { [self] in
                do { try self.startNow() } catch {
                    FileHandle.standardError.write(Data("mindie_sim: instance \(self.instance.index) cannot listen again: \(error)\n".utf8))
                }
            }
        }
    }

    func stop() {
        guard runningFlag.exchange(false, ordering: .acquiringAndReleasing) else { return }
        server?.shutdown()
    }

    /// Runs `work` on this instance's loop; false (work not run) when the instance has no running loop.
    @discardableResult
    func execute(_ work: @escaping () -> Void) -> Bool {
        guard let loop = server?.loops.first else { return false }
        let w = LoopBound(work, on: loop)
        return loop.execute { w.value() }
    }

    func wakeFromAnyThread() {
        guard running else { return }
        execute { [self] in instance.wake() }
    }

    private func arm(_ deadline: Double?) {
        timer?.cancel()
        timer = nil
        guard let deadline, !manual, let loop = server?.loops.first else { return }
        let delay = max(0, (deadline - clock()).rounded(.up))
        timer = loop.schedule(afterMilliseconds: UInt64(delay)) { [unowned self] in
            self.timer = nil
            self.instance.wake()
        }
    }

    private func serve(_ req: HTTPRequest, _ responder: HTTPResponder, kinds: [PortKind]) {
        let r = SimRequest(method: req.method, path: req.path, query: req.query, headers: req.headers.all, body: req.body, ports: kinds)
        instance.handle(r, sink: responder)
        // a late timer may have been missed while the handler ran
        arm(instance.nextWakeup)
    }
}

extension InstanceHost: PDTransport {
    func sendDecode(host: String, port: Int, parameters: DecodeParameters, completion: @escaping (String?) -> Void) {
        guard let ownLoop = server?.loops.first else { completion("no loop"); return }
        let done = LoopBound(completion, on: ownLoop)
        if let d = owner?.host(ip: host, interCommPort: port), d.running {
            // same process: a direct call on D's loop, the answer back on ours
            d.execute { [self] in
                let why = d.instance.receiveDecode(parameters)
                self.execute { done.value(why) }
            }
            return
        }
        guard let client, let loop = server?.loops.first else { completion("no client"); return }
        var status = 0
        var body: [UInt8] = []
        client.stream(
            HTTPClientRequest(method: "POST", host: host, port: port, path: "/sim/pd/decode",
                              headers: [("content-type", "application/json")], body: parameters.json.bytes, timeoutMilliseconds: 10_000),
            on: loop, onHead: { s, _ in status = s }, onBody: { body += $0 },
            onEnd: { err in
                if let err { done.value("\(err)"); return }
                guard status == 200, let j = try? JSON.parse(body), let ok = j["isValidDecodeParameters"]?.boolValue else {
                    done.value("bad answer from D (status \(status))"); return
                }
                done.value(ok ? nil : (j["errorMessage"]?.stringValue ?? "refused"))
            })
    }

    func sendRelease(host: String, port: Int, reqId: String) {
        if let p = owner?.host(ip: host, interCommPort: port), p.running {
            p.execute { _ = p.instance.releaseKV(reqId: reqId) }
            return
        }
        guard let client, let loop = server?.loops.first else { return }
        client.stream(
            HTTPClientRequest(method: "POST", host: host, port: port, path: "/sim/pd/release",
                              headers: [("content-type", "application/json")], body: JSON.obj(["reqId": .string(reqId)]).bytes,
                              timeoutMilliseconds: 10_000),
            on: loop, onHead: { _, _ in }, onBody: { _ in }, onEnd: { _ in })
    }
}


/// The manual clock's time (ms).
final class ManualTime: Sendable {
    let value = Mutex<Double>(0)
}
