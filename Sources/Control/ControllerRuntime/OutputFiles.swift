public import Foundation
import MSCore

#if canImport(Glibc)
import Glibc
#endif

/// Why an output file could not be written.
public struct OutputFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "cannot write \(path): \(reason)" }
}

/// Atomic writes of the Controller's output files (§10): a temp file beside the target, mode 0640, then a
/// rename, so a reader never sees a half-written file.
public enum AtomicFile {
    /// The mode of every file the Controller writes.
    public static let mode: mode_t = 0o640

    /// Writes `data` to `path` atomically; creates the parent directory (0750) if it is missing.
    /// - Throws: `OutputFileError` naming the path and the system error.
    public static func write(_ data: Data, to path: String) throws(OutputFileError) {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            do {
                try FileManager.default.createDirectory(
                    atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            } catch {
                throw OutputFileError(path: path, reason: "cannot create \(dir): \(error)")
            }
        }
        let temp = path + ".tmp.\(getpid())"
        let fd = open(temp, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw OutputFileError(path: temp, reason: String(cString: strerror(errno))) }
        var failure: String?
        data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                off += n
            }
        }
        if failure == nil && fchmod(fd, mode) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if failure == nil && rename(temp, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temp)
            throw OutputFileError(path: path, reason: failure)
        }
    }
}

/// The cluster status file (§10.2): every live instance with its health, static and dynamic info and peer
/// IPs, plus the coordinators' health. JSON, indent 4.
public enum ClusterStatusFile {
    /// The file's content.
    /// - Parameters:
    ///   - state: the Controller's state.
    ///   - coordinators: coordinator IPs in table order.
    public static func encode(_ state: ControllerCore.State, coordinators: [String]) -> Data {
        func j(_ i: Int) -> JSON { .int(Int64(i)) }
        var list: [JSON] = []
        for id in state.nodes.keys.sorted() {
            let n = state.nodes[id]!
            let r = n.resources
            let si: JSON.Object = [
                "group_id": j(n.groupID ?? 0), "max_seq_len": j(n.config?.maxSeqLen ?? 0),
                "max_output_len": j(n.config?.maxOutputLen ?? 0), "total_slots_num": j(n.totalSlots),
                "total_block_num": j(n.totalBlocks), "block_size": j(n.config?.cacheBlockSize ?? 0),
                "label": j(n.label.rawValue), "role": j(n.role.asciiCode), "p_percentage": j(0), "virtual_id": j(id),
            ]
            let di: JSON.Object = [
                "avail_slots_num": j(r.availSlotsNum), "avail_block_num": j(r.availBlockNum),
                "waiting_request_num": j(r.waitingRequestNum), "running_request_num": j(r.runningRequestNum),
                "swapped_request_num": j(r.swappedRequestNum), "free_npu_block_nums": j(r.freeNpuBlockNums),
                "free_cpu_block_nums": j(r.freeCpuBlockNums), "total_npu_block_nums": j(r.totalNpuBlockNums),
                "total_cpu_block_nums": j(r.totalCpuBlockNums),
            ]
            let peers = n.peers.compactMap { state.nodes[$0]?.instance.ip }.map { JSON.string($0) }
            list.append(
                .object([
                    "delete_time": j(0), "ip": .string(n.instance.ip), "is_healthy": .bool(n.isHealthy),
                    "model_name": .string(n.config?.modelName ?? ""), "static_info": .object(si),
                    "peers": .array(peers), "dynamic_info": .object(di), "is_faulty": .bool(n.phase == .faulty),
                ]))
        }
        let coords = coordinators.map { ip in
            JSON.object(["ip": .string(ip), "is_healthy": .bool(state.coordinators[ip] ?? false)])
        }
        let root = JSON.object(["server": .array(list), "coordinator": .array(coords)])
        return Data((root.serialized(indent: 4) + "\n").utf8)
    }
}
