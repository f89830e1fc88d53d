import Foundation

/// `GET /v1/coordinator_info` (§3.2): per-instance allocations and the request-length summary used by the
/// periodic re-decision. Any violation rejects the whole reply.
public struct CoordinatorInfo: Sendable, Equatable {
    public struct Schedule: Sendable, Equatable {
        /// ≥ 0.
        public var id: Int
        /// 0...5000.
        public var allocatedSlots: Int
        /// 0...2^32−1.
        public var allocatedBlocks: Int
    }

    /// At most 288 (6·16·3) entries.
    public var scheduleInfo: [Schedule]
    /// 0...2^32−1.
    public var inputLength: Int
    /// 0...2^32−1.
    public var outputLength: Int

    /// Largest number of `schedule_info` entries.
    public static let maxScheduleEntries = 288

    /// Parses and validates a reply body.
    /// - Throws: `ProbeFailure.badResponse` naming the field.
    public init(body: Data) throws(ProbeFailure) {
        let o = try ServerConfigInfo.object(body)
        guard case .array(let list)? = o["schedule_info"] else { throw .badResponse("schedule_info") }
        guard list.count <= Self.maxScheduleEntries else {
            throw .badResponse("schedule_info has \(list.count) entries (at most \(Self.maxScheduleEntries))")
        }
        var out: [Schedule] = []
        for e in list {
            let eo = e.objectValue
            out.append(
                Schedule(
                    id: try ServerConfigInfo.int(eo, "id", 0...Int64(Int32.max)),
                    allocatedSlots: try ServerConfigInfo.int(eo, "allocated_slots", 0...5000),
                    allocatedBlocks: try ServerConfigInfo.int(eo, "allocated_blocks", 0...4_294_967_295)))
        }
        scheduleInfo = out
        guard let lengths = o["request_length_info"]?.objectValue else { throw .badResponse("request_length_info") }
        inputLength = try ServerConfigInfo.int(lengths, "input_len", 0...4_294_967_295)
        outputLength = try ServerConfigInfo.int(lengths, "output_len", 0...4_294_967_295)
    }
}

/// The Controller's management calls to the Coordinator (§3.2) that have pure parts.
public enum CoordinatorAPI {
    /// `GET /v1/instances/tasks?id=1&id=2`.
    public static func tasksPath(ids: [Int]) -> String {
        "/v1/instances/tasks" + (ids.isEmpty ? "" : "?" + ids.map { "id=\($0)" }.joined(separator: "&"))
    }

    /// The task count of a `tasks` reply: exactly one integer in [−1, 2^31−1]. Drained iff ≤ 0.
    /// - Throws: `ProbeFailure.badResponse`.
    public static func taskCount(body: Data) throws(ProbeFailure) -> Int {
        let o = try ServerConfigInfo.object(body)
        guard case .array(let tasks)? = o["tasks"], tasks.count == 1, case .int(let n) = tasks[0],
            (-1...Int64(Int32.max)).contains(n)
        else { throw .badResponse("tasks must hold exactly one integer in [-1, 2147483647]") }
        return Int(n)
    }

    /// The `{"ids":[…]}` body of `/v1/instances/offline` and `/v1/instances/online`.
    public static func idsBody(_ ids: [Int]) -> Data {
        Data(("{\"ids\":[" + ids.map(String.init).joined(separator: ",") + "]}").utf8)
    }

    /// The body of `POST /v1/instances/query_tasks`: role_change_type 0 = P→D, 1 = D→P.
    public static func queryTasksBody(prefillID: Int, decodeID: Int, change: RoleChange) -> Data {
        Data("{\"p_id\":\(prefillID),\"d_id\":\(decodeID),\"role_change_type\":\(change.rawValue)}".utf8)
    }

    /// `is_end` of a `query_tasks` reply.
    public static func isEnd(body: Data) throws(ProbeFailure) -> Bool {
        let o = try ServerConfigInfo.object(body)
        guard case .bool(let b)? = o["is_end"] else { throw .badResponse("is_end") }
        return b
    }

    /// A role switch direction.
    public enum RoleChange: Int, Sendable, Equatable {
        case prefillToDecode = 0
        case decodeToPrefill = 1
    }
}
