public import Foundation
import MSCore

/// The Controller's management calls to the Coordinator (§3.2) that have pure parts.
public enum CoordinatorAPI {
    /// `GET /v1/instances/tasks?id=1&id=2`.
    public static func tasksPath(ids: [Int]) -> String { TasksReply.path(ids: ids) }

    /// The task count of a `tasks` reply: exactly one integer in [−1, 2^31−1]. Drained iff ≤ 0.
    /// - Throws: `ProbeFailure.badResponse`.
    public static func taskCount(body: Data) throws(ProbeFailure) -> Int {
        guard let reply = try? TasksReply(body: body), reply.tasks.count == 1 else {
            throw .badResponse("tasks must hold exactly one integer in [-1, 2147483647]")
        }
        return reply.tasks[0]
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
