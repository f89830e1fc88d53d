import Foundation
public import MSCore

/// The persisted list of managed servers (`ms_status_file`, docs/wire/deployer.md §4 "Status file", DECISIONS 26):
/// `{"server_list":[{"namespace","replicas","server_name","server_type","use_service","spec"}]}`, 0640, 4-space
/// indent, written to a temporary file and renamed.
public struct StatusStore: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public struct Entry: Sendable, Equatable {
        public var namespace: String
        public var spec: InferServerSpec
    }

    public struct LoadResult: Sendable {
        public var entries: [Entry]
        /// Entries that were invalid and dropped, each `name: why` (the file is rewritten without them).
        public var dropped: [String]
    }

    /// Reads the file, creating `{"server_list": []}` when it is missing (its directory must exist).
    public func load(mindieTLS: Bool, environment: [String: String]) throws(ConfigLoadError) -> LoadResult {
        if !FileManager.default.fileExists(atPath: path) {
            let dir = (path as NSString).deletingLastPathComponent
            var isDir: ObjCBool = false
            guard dir.isEmpty || (FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) else {
                throw ConfigLoadError("ms_status_file \(path): directory \(dir) does not exist")
            }
            try save([])
            return LoadResult(entries: [], dropped: [])
        }
        let bytes: [UInt8]
        do { bytes = try FileCheck(maxMode: FileCheck.configMode, environment: environment).read(path) } catch {
            throw ConfigLoadError("ms_status_file: \(error)")
        }
        guard let doc = try? JSON.parse(Data(bytes)), let list = doc["server_list"]?.arrayValue else {
            throw ConfigLoadError("ms_status_file \(path): not a JSON object with a server_list array")
        }
        var entries: [Entry] = [], dropped: [String] = []
        for item in list {
            let label = item["server_name"]?.rendered ?? item.rendered
            func drop(_ why: String) { dropped.append("\(label): \(why)") }
            guard let ns = item["namespace"]?.stringValue, InferServerSpec.isValidServerName(ns),
                  item["server_type"]?.stringValue != nil, item["replicas"]?.intValue != nil, item["use_service"]?.boolValue != nil
            else {
                drop("not a status entry (needs namespace, server_type, replicas, use_service)")
                continue
            }
            guard let specDoc = item["spec"] else {
                // the reference's ms_server keeps no spec, so nothing here can rebuild or update the server
                drop("written without a \"spec\" (by the reference's ms_server?): it cannot be restored; its Kubernetes objects " +
                     "are left as they are — remove them with kubectl, or create the server again with msctl")
                continue
            }
            let spec: InferServerSpec
            // A server deployed before `client_mindie_server_tls_enable` changed is still ours: keep it.
            do { spec = try InferServerSpec.validate(specDoc, mindieTLS: specDoc["mindie_server_config"]?["enable_tls"]?.boolValue ?? mindieTLS) } catch {
                drop("its spec is no longer valid: \(error.message)")
                continue
            }
            guard spec.serverName == item["server_name"]?.stringValue else {
                drop("server_name differs from the spec's (\(spec.serverName))")
                continue
            }
            guard !entries.contains(where: { $0.spec.serverName == spec.serverName }) else {
                drop("a second entry for the same server")
                continue
            }
            entries.append(Entry(namespace: ns, spec: spec))
        }
        if !dropped.isEmpty { try save(entries) }
        return LoadResult(entries: entries, dropped: dropped)
    }

    public static func encode(_ entries: [Entry]) -> String {
        let list = entries.map { e in
            jo(["namespace": js(e.namespace), "replicas": ji(e.spec.replicas), "server_name": js(e.spec.serverName),
                "server_type": js(e.spec.serverType.rawValue), "use_service": jb(true), "spec": e.spec.document])
        }
        return jo(["server_list": ja(list)]).serialized(indent: 4) + "\n"
    }

    /// Atomic write: temporary file (0640) in the same directory, fsync, rename.
    public func save(_ entries: [Entry]) throws(ConfigLoadError) {
        let text = Self.encode(entries)
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ConfigLoadError("ms_status_file \(path): cannot write \(tmp): \(String(cString: strerror(errno)))") }
        fchmod(fd, 0o640)
        let ok = Array(text.utf8).withUnsafeBytes { b in write(fd, b.baseAddress, b.count) == b.count }
        fsync(fd)
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw ConfigLoadError("ms_status_file \(path): cannot write: \(String(cString: strerror(errno)))")
        }
    }
}
