import Synchronization

/// W3C Trace Context (`traceparent`) for requests that arrive without one, so an instance's traces of a request
/// join under one trace id with the Coordinator's request id as the parent span.
public enum TraceContext {
    /// `00-<trace id>-<parent id>-01` (version 00, sampled).
    /// - Parameters:
    ///   - traceID: 128 random bits (the high and low halves); an all-zero id is invalid, so a zero half becomes 1.
    ///   - parentID: the Coordinator's request id (the `req-id` header's value), 0 mapped to 1 likewise.
    public static func traceparent(traceID: (UInt64, UInt64), parentID: UInt64) -> String {
        let t = traceID == (0, 0) ? (0, 1) : traceID
        // written in place: no temporary array per request
        return String(unsafeUninitializedCapacity: 55) { out in
            out.initialize(repeating: 0x2D) // '-' where no digit goes
            out[0] = 0x30
            out[1] = 0x30
            hex16(t.0, into: out, at: 3)
            hex16(t.1, into: out, at: 19)
            hex16(parentID == 0 ? 1 : parentID, into: out, at: 36)
            out[53] = 0x30
            out[54] = 0x31
            return 55
        }
    }

    /// A fresh `traceparent` whose parent is request `id`. The trace id is splitmix64 over a per-process random seed
    /// and a counter, not the system generator: that is a getrandom(2) system call per request on the loop thread,
    /// for ids that need to be unique and unguessable in practice, not cryptographic keys.
    public static func make(requestID id: UInt64) -> String {
        let n = counter.add(2, ordering: .relaxed).newValue
        return traceparent(traceID: (splitmix(seed.0 &+ n &* 0x9E37_79B9_7F4A_7C15), splitmix(seed.1 &+ (n &+ 1) &* 0x9E37_79B9_7F4A_7C15)),
                           parentID: id)
    }

    private static let seed: (UInt64, UInt64) = {
        var rng = SystemRandomNumberGenerator()
        return (rng.next(), rng.next())
    }()
    private static let counter = Atomic<UInt64>(0)

    static func splitmix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private static func hex16(_ v: UInt64, into out: UnsafeMutableBufferPointer<UInt8>, at start: Int) {
        for i in 0..<16 {
            let d = UInt8((v >> UInt64(60 - 4 * i)) & 0xF)
            out[start + i] = d < 10 ? 0x30 + d : 0x57 + d // 'a' - 10
        }
    }
}
