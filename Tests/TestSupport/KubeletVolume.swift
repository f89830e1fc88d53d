import Foundation

/// A directory laid out exactly as kubelet's atomic writer lays out a ConfigMap or Secret volume:
/// `..2026_12_05_10_00_00.000000001/<key>` (the files, with `defaultMode`), `..data -> ..2026_…` and
/// `<key> -> ..data/<key>`. `update` delivers new contents the way kubelet does: a new timestamped directory,
/// a `..data_tmp` link renamed over `..data`, then the old directory removed.
public final class KubeletVolume: @unchecked Sendable {
    public let path: String
    public private(set) var generation = 0
    public private(set) var dataDir: String = ""

    public init(_ files: [String: String], mode: Int = 0o640, in parent: String? = nil) throws {
        path = (parent ?? NSTemporaryDirectory()) + "/kubelet-vol-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try update(files, mode: mode)
        for key in files.keys {
            guard symlink("..data/\(key)", "\(path)/\(key)") == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        }
    }

    /// `<volume>/<key>`, the path a user configures.
    public func file(_ key: String) -> String { "\(path)/\(key)" }
    /// `<volume>/..data/<key>`, the path the manifests configure for the rank table.
    public func dataPath(_ key: String) -> String { "\(path)/..data/\(key)" }

    public func update(_ files: [String: String], mode: Int = 0o640) throws {
        generation += 1
        let old = dataDir
        let name = String(format: "..2026_12_05_10_00_%02d.%09d", generation % 60, generation)
        let dir = "\(path)/\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        for (key, text) in files {
            let p = "\(dir)/\(key)"
            guard FileManager.default.createFile(atPath: p, contents: Data(text.utf8)), chmod(p, mode_t(mode)) == 0 else {
                throw POSIXError(.EIO)
            }
        }
        let tmp = "\(path)/..data_tmp"
        unlink(tmp)
        guard symlink(name, tmp) == 0, rename(tmp, "\(path)/..data") == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        dataDir = name
        if !old.isEmpty { try FileManager.default.removeItem(atPath: "\(path)/\(old)") }
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}
