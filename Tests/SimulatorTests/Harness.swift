@testable import Simulator
import MSCore

/// Records what an instance wrote for one request.
final class RecordingSink: ResponseSink {
    var status: Int?
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    var chunks: [[UInt8]] = []
    var streaming = false
    var ended = false
    var aborted = false
    var onClientGone: (() -> Void)?
    var isFinished: Bool { ended || aborted || (status != nil && !streaming) }

    func respond(status: Int, headers: [(String, String)], body: [UInt8]) {
        precondition(self.status == nil, "responded twice")
        self.status = status; self.headers = headers; self.body = body
    }
    func startStream(status: Int, headers: [(String, String)]) {
        precondition(self.status == nil, "responded twice")
        self.status = status; self.headers = headers; streaming = true
    }
    func write(_ bytes: [UInt8]) { precondition(streaming && !ended && !aborted); chunks.append(bytes) }
    func end() { ended = true }
    func abort() { aborted = true }

    var text: String { String(decoding: streaming ? chunks.flatMap { $0 } : body, as: UTF8.self) }
    var json: JSON? { try? JSON.parse(body) }
    func header(_ n: String) -> String? { headers.first { $0.0.lowercased() == n }?.1 }
    /// The `/dresult` messages so far, split at NUL.
    var messages: [String] { PDWire.split(chunks.flatMap { $0 }).messages }
    /// Client leaves.
    func leave() { let cb = onClientGone; onClientGone = nil; cb?() }
}

/// Instances on one manual clock, connected by an in-memory transport.
final class Cluster: PDTransport {
    var now: Double = 0
    var instances: [SimInstance] = []
    var deferred: [() -> Void] = []
    var decodeCalls = 0
    var releases: [String] = []
    var stops: [Bool] = []

    @discardableResult
    func add(_ configure: (inout InstanceConfiguration) -> Void = { _ in }) -> SimInstance {
        var c = InstanceConfiguration()
        c.engine = EngineConfiguration(profile: .tiny)
        c.modelName = "llama"
        c.ipAddress = "127.0.0.\(instances.count + 1)"
        configure(&c)
        let i = SimInstance(index: instances.count, configuration: c, clock: { [unowned self] in self.now }, wallClock: { 1_700_000_000 })
        i.transport = self
        i.onStop = { [unowned self] in self.stops.append($0) }
        instances.append(i)
        return i
    }

    func instance(host: String, port: Int) -> SimInstance? {
        instances.first { $0.configuration.ipAddress == host && $0.configuration.interCommPort == port }
    }

    func sendDecode(host: String, port: Int, parameters: DecodeParameters, completion: @escaping (String?) -> Void) {
        decodeCalls += 1
        let d = instance(host: host, port: port)
        deferred.append {
            guard let d else { completion("connect refused"); return }
            completion(d.receiveDecode(parameters))
        }
    }

    func sendRelease(host: String, port: Int, reqId: String) {
        releases.append(reqId)
        let p = instance(host: host, port: port)
        deferred.append { _ = p?.releaseKV(reqId: reqId) }
    }

    func settle() {
        var guardCount = 0
        while !deferred.isEmpty, guardCount < 1000 {
            let d = deferred; deferred = []
            for w in d { w() }
            guardCount += 1
        }
    }

    /// Advances the clock to `t`, waking instances at every deadline on the way.
    func advance(to t: Double) {
        settle()
        while true {
            let next = instances.compactMap(\.nextWakeup).min()
            guard let n = next, n <= t else { break }
            now = max(now, n)
            for i in instances { i.wake() }
            settle()
        }
        now = t
        for i in instances { i.wake() }
        settle()
    }

    func advance(by ms: Double) { advance(to: now + ms) }

    /// Sends a request and settles deferred work.
    @discardableResult
    func send(_ i: SimInstance, _ method: String, _ path: String, _ body: String = "", headers: [(String, String)] = [], ports: [PortKind]? = nil) -> RecordingSink {
        let sink = RecordingSink()
        var q: String?
        var p = path
        if let qi = path.firstIndex(of: "?") { q = String(path[path.index(after: qi)...]); p = String(path[..<qi]) }
        i.handle(SimRequest(method: method, path: p, query: q, headers: headers.map { ($0.0, $0.1) }, body: Array(body.utf8), ports: ports ?? [.data, .management, .metrics, .interComm, .control]), sink: sink)
        settle()
        return sink
    }

    /// Runs until `sink` is finished (or `limit` ms pass).
    func run(until sink: RecordingSink, limit: Double = 60_000) {
        let end = now + limit
        while !sink.isFinished, now < end {
            let next = instances.compactMap(\.nextWakeup).min() ?? end
            advance(to: min(max(next, now), end))
            if next > end { break }
        }
    }

    static let local = #""local":{"server_ip":"127.0.0.1","id":1,"host_ip":"127.0.0.1","device":[]}"#
    static func peer(_ ip: String, _ id: Int) -> String { #"{"server_ip":"\#(ip)","id":\#(id),"host_ip":"\#(ip)","device":[]}"# }

    /// Two dmi instances, 1P1D, both RoleReady.
    static func pd(_ configure: @escaping (inout InstanceConfiguration) -> Void = { _ in }) -> (Cluster, SimInstance, SimInstance) {
        let c = Cluster()
        let p = c.add { $0.dmi = true; configure(&$0) }
        let d = c.add { $0.dmi = true; configure(&$0) }
        c.send(p, "POST", "/v1/role/prefill", "{\(local),\"peers\":[\(peer("127.0.0.2", 2))]}")
        c.send(d, "POST", "/v1/role/decode", "{\(local),\"peers\":[\(peer("127.0.0.1", 1))]}")
        c.advance(by: 10_000)
        return (c, p, d)
    }
}

let chatBody = #"{"model":"llama","messages":[{"role":"user","content":"hello there"}],"max_tokens":5,"seed":11}"#
