import Testing
@testable import Gateway

/// Per-request work moved out of the hot path must not change what a client sees.
@Suite("Hot-path constants")
struct HotPathConstantsTests {
    @Test("the cached error tail of a broken stream is the rendered one, for every dialect, streamed or not")
    func errorTails() {
        for d in [Dialect?.none] + Dialect.allCases.map(Optional.some) {
            for s in [false, true] {
                #expect(Coordinator.readFailedTail(dialect: d, stream: s)
                        == GatewayError.readInstanceFailed.streamErrorEvent(dialect: d, stream: s), "\(String(describing: d)) \(s)")
            }
        }
    }

    @Test("generated traceparents are well-formed, carry the request id and never repeat a trace id")
    func traceparents() {
        var seen = Set<Substring>()
        for id in UInt64(0)..<2000 {
            let tp = TraceContext.make(requestID: id)
            let parts = tp.split(separator: "-")
            #expect(tp.utf8.count == 55 && parts.count == 4 && parts[0] == "00" && parts[3] == "01", "\(tp)")
            #expect(parts[1].count == 32 && parts[1].allSatisfy { "0123456789abcdef".contains($0) })
            #expect(parts[1] != Substring(String(repeating: "0", count: 32)))
            #expect(UInt64(parts[2], radix: 16) == max(id, 1))
            #expect(seen.insert(parts[1]).inserted, "trace id repeated: \(tp)")
        }
        #expect(TraceContext.traceparent(traceID: (0xABC, 0), parentID: 0x12) == "00-0000000000000abc0000000000000000-0000000000000012-01")
    }
}
