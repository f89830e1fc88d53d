import Foundation
import MSCore
import Synchronization
import Testing
import TestSupport
@testable import Simulator

/// Socket-level tests of the glue: real listeners on 127.0.0.x, MSCore's client.
@Suite(.serialized, .timeLimit(.minutes(1))) struct ServerTests {
    func config(_ ip: String = "127.0.0.1", dmi: Bool = false) -> InstanceConfiguration {
        var c = InstanceConfiguration()
        c.ipAddress = ip; c.managementIpAddress = ip
        c.port = 0; c.managementPort = 0; c.metricsPort = 0; c.interCommPort = 0; c.controlPort = 0
        c.engine = EngineConfiguration(profile: .tiny, speedup: 10)
        c.modelName = "llama"
        c.dmi = dmi
        c.linkDelay = 20
        c.roleCheckInterval = 50
        return c
    }

    func post(_ client: HTTPClient, _ host: String, _ port: Int, _ path: String, _ body: String, headers: [(String, String)] = []) async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(method: "POST", host: host, port: port, path: path, headers: headers, body: Array(body.utf8)))
    }

    func get(_ client: HTTPClient, _ host: String, _ port: Int, _ path: String) async throws -> HTTPClientResponse {
        try await client.execute(HTTPClientRequest(host: host, port: port, path: path))
    }

    @Test func twoInstancesServeIndependently() async throws {
        let sim = try SimulatorServer(configuration: .init(instances: [config(), config()]))
        try sim.start()
        defer { sim.shutdown() }
        let client = HTTPClient()
        let ports = sim.ports
        #expect(ports.count == 2 && ports[0].data != ports[1].data)
        let r = try await post(client, "127.0.0.1", ports[0].data, "/v1/chat/completions", chatBody)
        #expect(r.status == 200)
        #expect(r.headers["content-type"] == "application/json")
        let j = try JSON.parse(r.body)
        #expect(j["usage"]?["completion_tokens"] == 5)
        let m0 = try await get(client, "127.0.0.1", ports[0].metrics, "/metrics").text
        let m1 = try await get(client, "127.0.0.1", ports[1].metrics, "/metrics").text
        #expect(m0.contains("request_success_total{model_name=\"llama\"} 1\n"))
        #expect(m1.contains("request_success_total{model_name=\"llama\"} 0\n"))
        let st = try await get(client, "127.0.0.1", ports[1].management, "/v1/status")
        let stj = try JSON.parse(st.body)
        #expect(st.status == 200 && stj["service"]?["roleStatus"] == "RoleReady")
        let none = try await get(client, "127.0.0.1", ports[0].data, "/nope")
        #expect(none.status == 404 && none.body.isEmpty)
        // a stream arrives as SSE frames ending in [DONE]
        let stream = try await post(client, "127.0.0.1", ports[1].data, "/v1/completions", #"{"model":"llama","prompt":"x","max_tokens":3,"stream":true}"#)
        #expect(stream.headers["content-type"] == "text/event-stream")
        #expect(stream.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.count == 4)
        #expect(stream.text.hasSuffix("data: [DONE]\n\n"))
    }

    @Test(arguments: ["loadTime", "slow_start"]) func loadTimeKeepsPortsClosed(_ how: String) async throws {
        var c = config()
        if how == "loadTime" { c.loadTime = 300 } else { c.faults = [Fault.parse("slow_start:s=0.3", id: "s")!] }
        let sim = try SimulatorServer(configuration: .init(instances: [c]))
        try sim.start()
        defer { sim.shutdown() }
        #expect(sim.ports[0].data == 0)  // not bound yet
        let up = await eventuallyTrue(within: 5) { sim.ports[0].data != 0 }
        #expect(up)
        try await Task.sleep(for: .milliseconds(50))
        let client = HTTPClient()
        let r = try await client.execute(HTTPClientRequest(host: "127.0.0.1", port: sim.ports[0].management, path: "/v2/health/ready"))
        #expect(r.status == 200)
    }

    @Test func aStoppedInstanceStillAnswersItsState() async throws {
        let sim = try SimulatorServer(configuration: .init(instances: [config()]))
        try sim.start()
        sim.shutdown()
        sim.waitUntilStopped()
        // its loop is gone: the read must come back, not wait forever on work nobody runs
        let answer = Box<Int?>(nil)
        Task.detached { answer.set(await sim.withInstance(0) { $0.engine.runningCount }) }
        #expect(await eventuallyTrue(within: 10) { answer.get() == 0 })
    }

    @Test func refuseClosesThePortsForAWhile() async throws {
        // ports are picked at the first bind and reused when the listeners come back
        let sim = try SimulatorServer(configuration: .init(instances: [config()]))
        try sim.start()
        defer { sim.shutdown() }
        let ports = sim.ports[0]
        let client = HTTPClient()
        let put = try await client.execute(HTTPClientRequest(method: "PUT", host: "127.0.0.1", port: ports.control!, path: "/sim/faults/r", body: Array(#"{"type":"refuse","params":{"s":0.5}}"#.utf8)))
        #expect(put.status == 200)
        let down = await eventuallyTrue(within: 3) {
            do { _ = try await client.execute(HTTPClientRequest(host: "127.0.0.1", port: ports.management, path: "/health", timeoutMilliseconds: 500)); return false } catch {
                return true
            }
        }
        #expect(down)
        let back = await eventuallyTrue(within: 5) {
            (try? await client.execute(HTTPClientRequest(host: "127.0.0.1", port: ports.management, path: "/health", timeoutMilliseconds: 500)))?.status == 200
        }
        #expect(back)
        #expect(sim.ports[0] == ports)
        let r = try await post(client, "127.0.0.1", ports.data, "/v1/chat/completions", chatBody)
        #expect(r.status == 200)
    }

    @Test func prefillToDecodeAcrossProcessesUsesHTTP() async throws {
        // two SimulatorServer objects: the P reaches the D through POST /sim/pd/decode and /sim/pd/release
        let dsim = try SimulatorServer.loopback(count: 1, dmi: true, speedup: 10) { c, _ in
            c.ipAddress = "127.0.0.3"; c.managementIpAddress = "127.0.0.3"; c.linkDelay = 20; c.roleCheckInterval = 50; c.modelName = "llama"
        }
        defer { dsim.shutdown() }
        let psim = try SimulatorServer.loopback(count: 1, dmi: true, speedup: 10) { c, _ in
            c.linkDelay = 20; c.roleCheckInterval = 50; c.modelName = "llama"
        }
        defer { psim.shutdown() }
        let client = HTTPClient()
        let p = psim.ports[0], d = dsim.ports[0]
        let lp = #"{"server_ip":"127.0.0.1","id":1,"host_ip":"127.0.0.1","device":[]}"#
        let ld = #"{"server_ip":"127.0.0.3","id":3,"host_ip":"127.0.0.3","device":[]}"#
        _ = try await post(client, "127.0.0.1", p.management, "/v1/role/prefill", "{\"local\":\(lp),\"peers\":[\(ld)]}")
        _ = try await post(client, "127.0.0.3", d.management, "/v1/role/decode", "{\"local\":\(ld),\"peers\":[\(lp)]}")
        let body = #"{"model":"llama","prompt":"hello","max_tokens":3}"#
        let r = try await post(client, "127.0.0.1", p.data, "/v1/completions", body,
                               headers: [("req-type", "prefill"), ("req-id", "0f"), ("d-target", "127.0.0.3;\(d.interComm)")])
        #expect(r.status == 200 && r.text == #"{"reqId":"0f","isStream":false}"#)
        let released = await eventuallyTrue(within: 5) { await psim.withInstance(0) { $0.engine.pool.usedBlocks } == 0 }
        #expect(released)
        // without a /dresult link, D drops the result and counts it
        let dropped = await eventuallyTrue(within: 5) { await dsim.withInstance(0) { $0.metrics.dresultDropped } == 1 }
        #expect(dropped)
        // d-target naming the P itself: served as a mixed request
        let selfTarget = try await post(client, "127.0.0.1", p.data, "/v1/completions", body,
                                        headers: [("req-type", "prefill"), ("req-id", "10"), ("d-target", "127.0.0.1;\(p.interComm)")])
        let sj = try JSON.parse(selfTarget.body)
        #expect(selfTarget.status == 200 && sj["object"] == "text_completion")
        // nobody listens there: the P's 500
        let refused = try await post(client, "127.0.0.1", p.data, "/v1/completions", body,
                                     headers: [("req-type", "prefill"), ("req-id", "11"), ("d-target", "127.0.0.3;1")])
        #expect(refused.status == 500)
        #expect((try JSON.parse(refused.body))["error"]?.stringValue?.hasPrefix("[P Node] Send D request failed:") == true)
    }

    @Test func manualClockHoldsTheAnswerUntilAdvanced() async throws {
        var c = config()
        c.engine.speedup = 1
        let sim = try SimulatorServer(configuration: .init(instances: [c], manualClock: true))
        try sim.start()
        defer { sim.shutdown() }
        let client = HTTPClient()
        let port = sim.ports[0].data
        let answered = Flag()
        let task = Task {
            let r = try await client.execute(HTTPClientRequest(method: "POST", host: "127.0.0.1", port: port, path: "/v1/chat/completions", body: Array(chatBody.utf8)))
            answered.set()
            return r
        }
        // the request is queued at t = 0; nothing happens while the clock stands still
        let queued = await eventuallyTrue(within: 5) { await sim.withInstance(0) { $0.engine.runningCount } == 1 }
        #expect(queued)
        try await Task.sleep(for: .milliseconds(100))
        let early = answered.isSet
        #expect(!early)
        // tiny: prefill 2 + 0.02·n ms, then 4 decode steps of ≈ 6 ms
        let control = try #require(sim.ports[0].control)
        let adv = try await post(client, "127.0.0.1", control, "/sim/clock/advance", #"{"ms":100}"#)
        #expect(adv.status == 200)
        let r = try await task.value
        #expect(r.status == 200)
        let rj = try JSON.parse(r.body)
        #expect(rj["usage"]?["completion_tokens"] == 5)
    }

    @Test func prefillToDecodeOverLoopback() async throws {
        let sim = try SimulatorServer(configuration: .init(instances: [config("127.0.0.1", dmi: true), config("127.0.0.2", dmi: true)]))
        try sim.start()
        defer { sim.shutdown() }
        let client = HTTPClient()
        let p = sim.ports[0], d = sim.ports[1]
        let local1 = #"{"server_ip":"127.0.0.1","id":1,"host_ip":"127.0.0.1","device":[]}"#
        let local2 = #"{"server_ip":"127.0.0.2","id":2,"host_ip":"127.0.0.2","device":[]}"#
        let r1 = try await post(client, "127.0.0.1", p.management, "/v1/role/prefill", "{\"local\":\(local1),\"peers\":[\(local2)]}")
        let r2 = try await post(client, "127.0.0.2", d.management, "/v1/role/decode", "{\"local\":\(local2),\"peers\":[\(local1)]}")
        #expect(r1.status == 200 && r2.status == 200)
        let ready = await eventuallyTrue(within: 5) {
            let a = await sim.withInstance(0) { $0.role.status == .ready }
            let b = await sim.withInstance(1) { $0.role.status == .ready }
            return a && b
        }
        #expect(ready)
        // the /dresult link, read on the client's loop
        let received = Mutex<[UInt8]>([])
        let loop = client.loop
        loop.execute {
            client.stream(HTTPClientRequest(host: "127.0.0.2", port: d.data, path: "/dresult", timeoutMilliseconds: 60_000), on: loop,
                          onHead: { _, _ in }, onBody: { b in received.withLock { $0 += b } }, onEnd: { _ in })
        }
        let linked = await eventuallyTrue(within: 5) { await sim.withInstance(1) { $0.dresult != nil } }
        #expect(linked)
        let body = #"{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true}"#
        let r = try await post(client, "127.0.0.1", p.data, "/v1/chat/completions", body,
                               headers: [("req-type", "prefill"), ("req-id", "ab12"), ("d-target", "127.0.0.2;\(d.interComm)")])
        #expect(r.status == 200)
        let reply = try JSON.parse(r.body)
        #expect(reply["isLastResp"] == false && reply["reqId"] == "ab12")
        let done = await eventuallyTrue(within: 5) { received.withLock { PDWire.split($0).messages.contains("lastData:data: [DONE]\n\n") } }
        #expect(done)
        let messages = received.withLock { PDWire.split($0).messages }
        #expect(messages.filter { $0 == "reqId:ab12" }.count == 4)
        #expect(messages.filter { $0.hasPrefix("data:data: ") }.count == 2)
        // P got the release: its KV is free again
        let freed = await eventuallyTrue(within: 5) { await sim.withInstance(0) { $0.engine.pool.usedBlocks } == 0 }
        #expect(freed)
    }
}

func eventuallyTrue(within seconds: Double, _ condition: () async -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

final class Flag: @unchecked Sendable {
    private let m = Mutex<Bool>(false)
    func set() { m.withLock { $0 = true } }
    var isSet: Bool { m.withLock { $0 } }
}
