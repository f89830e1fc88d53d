import Foundation
import Synchronization
public import MSCore

/// Validation of the alarm bodies the Controller receives (§2).
public enum AlarmRequests {
    /// A refused body or record: the field and why.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public var field: String
        public var reason: String
        public var description: String { "\(field) \(reason)" }
    }

    static let intRanges: [(String, ClosedRange<Int64>?)] = [
        ("category", 1...7), ("cleared", 0...1), ("clearCategory", 1...2), ("occurUtc", nil), ("occurTime", nil),
        ("eventType", 1...21), ("severity", 1...4), ("serviceAffectedType", 0...1), ("reasonId", nil),
    ]
    static let stringKeys = [
        "originSystem", "originSystemName", "originSystemType", "probableCause", "location", "moi", "alarmId",
        "alarmName", "additionalInformation",
    ]

    /// Checks one record of `POST /v1/alarm/coordinator`.
    public static func checkCoordinatorRecord(_ v: JSON, index: Int) -> Problem? {
        let p = "[\(index)]."
        guard let o = v.objectValue else { return Problem(field: "[\(index)]", reason: "must be an object") }
        for (k, range) in intRanges {
            guard case .int(let i)? = o[k] else { return Problem(field: p + k, reason: "must be an integer") }
            if let range, !range.contains(i) {
                return Problem(field: p + k, reason: "= \(i) is outside [\(range.lowerBound), \(range.upperBound)]")
            }
        }
        for k in stringKeys {
            guard case .string(let s)? = o[k], !s.isEmpty else { return Problem(field: p + k, reason: "must be a non-empty string") }
        }
        return nil
    }

    /// Checks a `POST /v1/alarm/llm_engine` body.
    public static func checkLLMEngine(_ v: JSON) -> Problem? {
        guard let o = v.objectValue else { return Problem(field: "body", reason: "must be a JSON object") }
        guard case .string(let ip)? = o["node_manager_ip"], ip.count <= 45, IPAddress.isValid(ip) else {
            return Problem(field: "node_manager_ip", reason: "must be an IP address of at most 45 characters")
        }
        guard case .array(let outer)? = o["alarm_info"] else { return Problem(field: "alarm_info", reason: "must be an array") }
        for (i, inner) in outer.enumerated() {
            guard case .array(let list) = inner else { return Problem(field: "alarm_info[\(i)]", reason: "must be an array") }
            for (j, a) in list.enumerated() {
                let f = "alarm_info[\(i)][\(j)]"
                guard case .int? = a["timestamp"] else { return Problem(field: f + ".timestamp", reason: "must be an integer") }
                for k in ["errCode", "createdBy", "errorLocation"] {
                    guard case .string? = a[k] else { return Problem(field: f + "." + k, reason: "must be a string") }
                }
            }
        }
        return nil
    }
}

/// Received alarms waiting to be forwarded (≤1000, oldest dropped), and the coordinator's readiness as its
/// exception alarm `0xFC001004` reports it.
public final class AlarmStore: Sendable {
    public static let capacity = 1000
    public static let coordinatorExceptionID = "0xFC001004"

    struct Inner {
        var queue: [JSON] = []
        var coordinatorReady = true
        var swallowedRaise = false
        var swallowedClear = false
    }

    private let inner = Mutex(Inner())
    public init() {}

    /// Alarms queued for the external sink, oldest first.
    public var queued: [JSON] { inner.withLock { $0.queue } }
    /// False after the coordinator raised `0xFC001004` and before it cleared it.
    public var coordinatorReady: Bool { inner.withLock { $0.coordinatorReady } }

    /// Takes the valid records of one coordinator alarm post (`first` = the body's first record).
    func accept(_ records: [JSON], firstIsFirstOfBody: Bool) {
        inner.withLock { s in
            for (i, r) in records.enumerated() {
                if i == 0 && firstIsFirstOfBody, case .string(let id)? = r["alarmId"], id == Self.coordinatorExceptionID {
                    let raised = r["cleared"] == .int(0)
                    s.coordinatorReady = !raised
                    // The first raise and the first clear are swallowed (§2).
                    if raised && !s.swallowedRaise {
                        s.swallowedRaise = true
                        continue
                    }
                    if !raised && !s.swallowedClear {
                        s.swallowedClear = true
                        continue
                    }
                }
                s.queue.append(r)
                if s.queue.count > Self.capacity { s.queue.removeFirst(s.queue.count - Self.capacity) }
            }
        }
    }
}
