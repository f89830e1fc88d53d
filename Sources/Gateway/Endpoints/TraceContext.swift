/// W3C Trace Context (`traceparent`) for requests that arrive without one, so an instance's traces of a request
/// join under one trace id with the Coordinator's request id as the parent span.
public enum TraceContext {
    /// `00-<trace id>-<parent id>-01` (version 00, sampled).
    /// - Parameters:
    ///   - traceID: 128 random bits (the high and low halves); an all-zero id is invalid, so a zero half becomes 1.
    ///   - parentID: the Coordinator's request id (the `req-id` header's value), 0 mapped to 1 likewise.
    public static func traceparent(traceID: (UInt64, UInt64), parentID: UInt64) -> String {
        let t = traceID == (0, 0) ? (0, 1) : traceID
        return "00-" + hex16(t.0) + hex16(t.1) + "-" + hex16(parentID == 0 ? 1 : parentID) + "-01"
    }

    /// A fresh `traceparent` whose parent is request `id`.
    public static func make(requestID id: UInt64) -> String {
        var rng = SystemRandomNumberGenerator()
        return traceparent(traceID: (rng.next(), rng.next()), parentID: id)
    }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
