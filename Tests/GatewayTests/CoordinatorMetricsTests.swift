import Foundation
import Testing
import TestSupport
@testable import Gateway
@testable import MSCore

@Suite("Coordinator metrics")
struct CoordinatorMetricsTests {
    /// `mindie_coordinator_requests_total` series by status, summed over dialects.
    static func repliesByStatus(_ h: Harness) async throws -> [String: Double] {
        let m = try await h.get(port: h.coordinator.externalPort, "/metrics")
        var out: [String: Double] = [:]
        for line in m.text.split(separator: "\n") where line.hasPrefix("mindie_coordinator_requests_total{") {
            guard let s = line.range(of: "status=\""), let end = line[s.upperBound...].firstIndex(of: "\""),
                  let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            out[String(line[s.upperBound..<end]), default: 0] += value
        }
        return out
    }

    @Test("requests_total counts a proxy timeout before the head with the 504 the client got, not 408")
    func proxyTimeoutIs504() async throws {
        let h = try Harness(instances: 1, maxRetry: 0, configure: { $0.health.firstByteTimeoutMs = 300 })
        try await h.refreshAll()
        // frozen: accepts the connection, never sends a head
        try await h.putFault(0, id: "frozen", #"{"type":"hang","params":{"mode":"data"}}"#)
        let r = try await h.chat(stream: true, maxTokens: 2)
        #expect(r.status == 504, "\(r.text)")
        #expect(await eventuallyAsync(within: 10) { (try? await Self.repliesByStatus(h)) == ["504": 1] })
        #expect(try await Self.repliesByStatus(h)["408"] == nil)
    }

    @Test("requests_total still counts the Coordinator's own first-token timeout as the 408 it answers")
    func firstTokenTimeoutIs408() async throws {
        let h = try Harness(instances: 1, firstTokenTimeout: 1, speedup: 1)
        try await h.refreshAll()
        try await h.putFault(0, id: "slow", #"{"type":"slow_reply","params":{"ms":"5000"}}"#)
        let r = try await h.chat()
        #expect(r.status == 408)
        #expect(await eventuallyAsync(within: 10) { (try? await Self.repliesByStatus(h)) == ["408": 1] })
    }
}
