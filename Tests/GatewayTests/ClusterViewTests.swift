import Foundation
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore
import Simulator

/// The Coordinator's view of the cluster across refreshes: load accounting, refresh validation.
@Suite("Coordinator cluster view", .serialized)
struct ClusterViewTests {
    /// `allocated_slots` of each instance in `/v1/coordinator_info`.
    static func allocated(_ h: Harness) async throws -> [Int: Int] {
        let r = try await h.get(port: h.coordinator.managementPort, "/v1/coordinator_info")
        let j = try JSONSerialization.jsonObject(with: Data(r.body)) as! [String: Any]
        var out: [Int: Int] = [:]
        for e in j["schedule_info"] as! [[String: Any]] { out[(e["id"] as! NSNumber).intValue] = (e["allocated_slots"] as! NSNumber).intValue }
        return out
    }

    /// The `mindie_coordinator_instance_inflight_requests` series of `/metrics`, by instance.
    static func inflightGauge(_ h: Harness) async throws -> [String: String] {
        let m = try await h.get(port: h.coordinator.externalPort, "/metrics")
        var out: [String: String] = [:]
        for line in m.text.split(separator: "\n") where line.hasPrefix("mindie_coordinator_instance_inflight_requests{") {
            guard let q1 = line.firstIndex(of: "\""), let q2 = line[line.index(after: q1)...].firstIndex(of: "\""),
                  let sp = line.lastIndex(of: " ") else { continue }
            out[String(line[line.index(after: q1)..<q2])] = String(line[line.index(after: sp)...])
        }
        return out
    }

    @Test("issue 13.1: refreshes while streams are in flight leave every count at 0 once they end")
    func loadSurvivesRefreshes() async throws {
        let h = try Harness(instances: 2, algorithm: .leastLoad, speedup: 1)
        try await h.refreshAll()
        let streams = (0..<6).map { i in Task { try await h.chat("stream \(i)", stream: true, maxTokens: 120) } }
        #expect(await eventually(within: 10) { h.coordinator.inFlightCount == 6 })
        let during = try await Self.allocated(h)
        #expect(during.values.reduce(0, +) == 6, "\(during)")
        // the Controller's periodic refresh of the same instances, several times mid-stream
        for _ in 0..<3 { try await h.refreshAll() }
        #expect(try await Self.allocated(h).values.reduce(0, +) == 6)
        for s in streams {
            let r = try await s.value
            #expect(r.status == 200)
            #expect(r.text.hasSuffix("data: [DONE]\n\n"))
        }
        #expect(await eventually(within: 5) { h.coordinator.inFlightCount == 0 })
        #expect(try await Self.allocated(h) == [0: 0, 1: 0])
        #expect(try await Self.inflightGauge(h) == ["0": "0", "1": "0"])
        let tasks = try await h.get(port: h.coordinator.managementPort, "/v1/instances/tasks?id=0&id=1")
        #expect(tasks.text == #"{"tasks":[0,0]}"#)
        // least_load still sees two idle instances: two requests in a row land on different instances
        let before = [try await h.simMetric(0, "request_received_total"), try await h.simMetric(1, "request_received_total")]
        let a = Task { try await h.chat("a", stream: true, maxTokens: 600) } // long enough to be seen in flight on a loaded machine
        #expect(await eventually(within: 10) { h.coordinator.inFlightCount == 1 })
        let b = try await h.chat("b", stream: true, maxTokens: 2)
        #expect(b.status == 200)
        _ = try await a.value
        let after = [try await h.simMetric(0, "request_received_total"), try await h.simMetric(1, "request_received_total")]
        #expect(after[0] - before[0] == 1 && after[1] - before[1] == 1, "\(before) → \(after)")
    }

    @Test("issue 13.2: a refresh with a duplicate id or an impossible dynamic value → 400 naming it; the last good set stays")
    func refusesBrokenRefreshes() async throws {
        let h = try Harness(instances: 2)
        try await h.refreshAll()
        func infoIDs() async throws -> [Int] {
            let r = try await h.get(port: h.coordinator.managementPort, "/v1/coordinator_info")
            let j = try JSONSerialization.jsonObject(with: Data(r.body)) as! [String: Any]
            return (j["schedule_info"] as! [[String: Any]]).map { ($0["id"] as! NSNumber).intValue }
        }
        let dup = try await h.refresh([h.instanceJSON(0), h.instanceJSON(1, id: 0)], ids: [0, 0])
        #expect(dup.status == 400)
        #expect(dup.text.contains("instance 0"), "\(dup.text)")
        let dupInstances = try await h.refresh([h.instanceJSON(0), h.instanceJSON(1, id: 0)], ids: [0, 1])
        #expect(dupInstances.status == 400)
        #expect(dupInstances.text.contains("instance 0"), "\(dupInstances.text)")
        let negative = try await h.refresh([h.instanceJSON(0), h.instanceJSON(1).replacingOccurrences(of: "\"avail_slots_num\":200", with: "\"avail_slots_num\":-5")])
        #expect(negative.status == 400)
        #expect(negative.text.contains("instance 1") && negative.text.contains("avail_slots_num"), "\(negative.text)")
        let blocks = try await h.refresh([h.instanceJSON(0).replacingOccurrences(of: "\"avail_block_num\":1024", with: "\"avail_block_num\":\"lots\"")])
        #expect(blocks.status == 400)
        #expect(blocks.text.contains("avail_block_num"), "\(blocks.text)")
        let peers = try await h.refresh([h.instanceJSON(0).replacingOccurrences(of: "\"peers\":[]", with: "\"peers\":[-1]")])
        #expect(peers.status == 400)
        #expect(peers.text.contains("peers"), "\(peers.text)")
        // the previous set is kept and serves
        #expect(try await infoIDs() == [0, 1])
        for i in 0..<4 { #expect(try await h.chat("after \(i)", maxTokens: 2).status == 200) }
        #expect(try await h.simMetric(0, "request_received_total") == 2)
        #expect(try await h.simMetric(1, "request_received_total") == 2)
        // a negative static value only skips its instance (docs/wire/coordinator.md §3.1), without bringing the process down
        let badStatic = try await h.refresh([h.instanceJSON(0), h.instanceJSON(1).replacingOccurrences(of: "\"group_id\":0", with: "\"group_id\":-3")])
        #expect(badStatic.status == 200)
        #expect(try await infoIDs() == [0])
    }

    /// The `mindie_coordinator_*` line of `/metrics` for `name` and instance `id`, or nil.
    static func series(_ h: Harness, _ name: String, _ id: Int) async throws -> String? {
        let m = try await h.get(port: h.coordinator.externalPort, "/metrics")
        let prefix = "\(name){instance=\"\(id)\"} "
        return m.text.split(separator: "\n").first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    static func retries(_ h: Harness) async throws -> String? {
        let m = try await h.get(port: h.coordinator.externalPort, "/metrics")
        return m.text.split(separator: "\n").first { $0.hasPrefix("mindie_coordinator_retries_total") }.map(String.init)
    }

    static func circuits(_ h: Harness) async throws -> [Int: String] {
        let r = try await h.get(port: h.coordinator.managementPort, "/v1/coordinator_info")
        let j = try JSONSerialization.jsonObject(with: Data(r.body)) as! [String: Any]
        var out: [Int: String] = [:]
        for e in j["schedule_info"] as! [[String: Any]] { out[(e["id"] as! NSNumber).intValue] = e["circuit"] as? String ?? "closed" }
        return out
    }

    @Test("issue 13.4: a frozen instance is steered around: its attempts time out and retry elsewhere, its circuit opens, a probe closes it")
    func frozenInstanceOpensItsCircuit() async throws {
        // a 1 s first-token timeout would end every request that waits on the frozen instance with 408
        let h = try Harness(instances: 2, firstTokenTimeout: 5, configure: { c in
            c.health.firstByteTimeoutMs = 300
            c.health.failureThreshold = 2
            c.health.openMs = 400
            c.health.maxOpenMs = 800
            c.health.probeTimeoutMs = 300
        })
        try await h.refreshAll()
        // frozen: accepts connections (as a stopped process's kernel does), never answers
        try await h.putFault(0, id: "frozen", #"{"type":"hang","params":{"mode":"data"}}"#)
        for i in 0..<4 {
            let r = try await h.chat("before \(i)", stream: true, maxTokens: 2)
            #expect(r.status == 200, "\(r.text)")
            #expect(r.text.hasSuffix("data: [DONE]\n\n"))
        }
        #expect(try await Self.circuits(h)[0] != "closed")
        #expect(try await Self.circuits(h)[1] == "closed")
        #expect(try await Self.series(h, "mindie_coordinator_instance_circuit_state", 0) != "0")
        // open: new requests go to instance 1 only, none waits on instance 0 first (no retry)
        let retriesBefore = try await Self.retries(h)
        let servedBy1 = try await h.simMetric(1, "request_received_total")
        for i in 0..<6 {
            #expect(try await h.chat("during \(i)", stream: i % 2 == 0, maxTokens: 2).status == 200)
        }
        #expect(try await h.simMetric(1, "request_received_total") == servedBy1 + 6)
        #expect(try await Self.retries(h) == retriesBefore)
        // thawed: the next probe answers and the circuit closes; instance 0 serves again
        _ = try await h.client.execute(HTTPClientRequest(method: "DELETE", host: h.sim.ports[0].host, port: h.sim.ports[0].control!, path: "/sim/faults/frozen"))
        #expect(await eventuallyAsync(within: 10) { (try? await Self.circuits(h)[0]) == "closed" })
        #expect(try await Self.series(h, "mindie_coordinator_instance_circuit_state", 0) == "0")
        let servedBy0 = try await h.simMetric(0, "request_received_total")
        for i in 0..<4 { #expect(try await h.chat("after \(i)", maxTokens: 2).status == 200) }
        #expect(try await h.simMetric(0, "request_received_total") > servedBy0)
        #expect(try await Self.retries(h) == retriesBefore)
    }

    @Test("issue 13 (also): scale-in drains — a stream on a removed instance finishes; new requests avoid it")
    func scaleInDrains() async throws {
        let h = try Harness(instances: 2, speedup: 1, configure: { $0.exceptions.drainTimeout = 30 })
        try await h.refreshAll()
        let stream = Task { try await h.chat("long", stream: true, maxTokens: 150) }
        #expect(await eventually(within: 10) { h.coordinator.inFlightCount == 1 })
        let tasks = try await h.get(port: h.coordinator.managementPort, "/v1/instances/tasks?id=0&id=1")
        let busy = tasks.text == #"{"tasks":[1,0]}"# ? 0 : 1
        let other = 1 - busy
        // scale in: the instance serving the stream leaves the set
        #expect(try await h.refresh([h.instanceJSON(other, id: other)], ids: [other]).status == 200)
        let before = try await h.simMetric(busy, "request_received_total")
        for i in 0..<3 { #expect(try await h.chat("new \(i)", maxTokens: 2).status == 200) }
        #expect(try await h.simMetric(busy, "request_received_total") == before)
        let r = try await stream.value
        #expect(r.status == 200)
        #expect(r.text.hasSuffix("data: [DONE]\n\n"), "\(r.text.suffix(200))")
        #expect(await eventually(within: 5) { h.coordinator.inFlightCount == 0 })
    }
}
