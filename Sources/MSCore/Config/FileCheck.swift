#if canImport(Glibc)
import Glibc
#endif

/// Why a file the product reads was refused (the reference's input-file checks, DECISIONS 4).
public enum FileCheckError: Error, Equatable, CustomStringConvertible, Sendable {
    case emptyPath
    case pathTooLong(String)
    case invalidCharacters(String)
    case parentReference(String)
    case notFound(String)
    case symlink(String)
    case notKubeletLayout(path: String, reason: String)
    case notRegular(String)
    case tooPermissive(path: String, mode: UInt32, maximum: UInt32)
    case wrongOwner(path: String, owner: UInt32, expected: UInt32)
    case tooLarge(path: String, bytes: Int)
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .emptyPath: "empty file path"
        case .pathTooLong(let p): "path is longer than 4096 characters: \(p.prefix(64))…"
        case .invalidCharacters(let p): "path \(p) has characters outside [A-Za-z0-9_./~-]"
        case .parentReference(let p): "path \(p) contains '..' (only the '..data' directory of a Kubernetes ConfigMap/Secret volume is allowed)"
        case .notFound(let p): "\(p) does not exist"
        case .symlink(let p):
            "\(p) is a symbolic link (the only link followed is kubelet's ConfigMap/Secret volume layout, name -> ..data/name)"
        case .notKubeletLayout(let p, let reason):
            "\(p) is not laid out as a kubelet ConfigMap/Secret volume: \(reason)"
        case .notRegular(let p): "\(p) is not a regular file"
        case .tooPermissive(let p, let mode, let max):
            "\(p) has mode \(String(mode, radix: 8, uppercase: false).leftPad(4)), more than the allowed \(String(max, radix: 8).leftPad(4)) " +
            (max & 0o477 == FileCheck.secretMode ? "for TLS files (CA, certificates, CRL, keys and password files are readable by their owner only) " : "") +
            "(chmod it, or set MINDIE_CHECK_INPUTFILES_PERMISSION=0 to skip the check)"
        case .wrongOwner(let p, let owner, let expected): "\(p) is owned by uid \(owner), not by the running user (uid \(expected))"
        case .tooLarge(let p, let bytes): "\(p) is \(bytes) bytes, over the 101 MiB limit"
        case .unreadable(let p, let reason): "cannot read \(p): \(reason)"
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}

/// The reference's checks on every file it reads: a plain path, no symlink, a regular file owned by the running
/// user, with permissions within `maxMode`.
///
/// One mode rule for every binary (docs/operations.md, "File modes and owners"): config files (and the files they point at, such as the
/// rank table or the model and machine files) at most 0640; every TLS file — CA, certificate, CRL, private key and
/// key-password file — at most 0400. The reference checks certificates as strictly as keys (docs/wire/coordinator.md §8,
/// docs/wire/deployer.md §6), so a certificate's mode never decides whether a deployment that works there starts here.
///
/// Kubernetes delivers config files through ConfigMap and Secret volumes, which kubelet's atomic writer lays out as
/// `volume/..2026_12_05_10_00_00.123/key` (the real files), `volume/..data -> ..2026_…` and `volume/key -> ..data/key`.
/// That one layout is followed on purpose, given either as `volume/key` or `volume/..data/key`: `..data` must be a
/// link to a sibling `..`-named directory, the file must be a regular file directly inside it (resolving inside the
/// volume directory), and the mode and owner checks apply to that file. Kubelet writes the files as root and, with a
/// pod `fsGroup`, adds group read to `defaultMode`; so a root-owned file of that layout passes the owner check and may
/// be group-readable (a TLS file 0440), never group- or world-writable. Any other symlink is refused as before.
/// Every read resolves `..data` again, so a reader that re-reads (the Controller's rank table) follows kubelet's update
/// swap (new timestamped directory, `..data_tmp` renamed over `..data`, old directory removed).
public struct FileCheck: Sendable {
    /// Config files and the data files they name.
    public static let configMode: UInt32 = 0o640
    /// Every TLS file: CA, certificate, CRL, private key, key-password file.
    public static let secretMode: UInt32 = 0o400
    /// The `..data` link of kubelet's atomic-writer layout.
    public static let kubeletDataLink = "..data"

    /// The check for TLS files (`secretMode`).
    public static func tls(environment: [String: String]) -> FileCheck {
        FileCheck(maxMode: secretMode, environment: environment)
    }

    public var maxMode: UInt32
    /// False when `MINDIE_CHECK_INPUTFILES_PERMISSION=0` (permission and owner checks off).
    public var checkPermissions: Bool

    public init(maxMode: UInt32 = FileCheck.configMode, environment: [String: String]) {
        self.maxMode = maxMode
        self.checkPermissions = environment["MINDIE_CHECK_INPUTFILES_PERMISSION"] != "0"
    }

    /// The file actually read for a checked path: `path` itself, or the real file behind kubelet's links.
    struct Located {
        var file: String
        var kubelet: Bool
    }

    /// Checks the path's syntax and finds the file behind it (kubelet's layout resolved, any other link refused).
    func locate(_ path: String) throws(FileCheckError) -> Located {
        guard !path.isEmpty else { throw .emptyPath }
        guard path.utf8.count <= 4096 else { throw .pathTooLong(path) }
        guard path.utf8.allSatisfy({ c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2E || c == 0x2F || c == 0x7E || c == 0x2D
        }) else { throw .invalidCharacters(path) }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let dataIndices = parts.indices.filter { parts[$0] == Self.kubeletDataLink }
        // '..' stays refused everywhere except as the one `..data` component of a volume path
        guard dataIndices.count <= 1, !parts.filter({ $0 != Self.kubeletDataLink }).joined(separator: "/").contains("..") else {
            throw .parentReference(path)
        }
        if let i = dataIndices.first {
            guard i == parts.count - 2, !parts[i + 1].isEmpty else {
                throw .notKubeletLayout(path: path, reason: "'..data' must be followed by the file's name")
            }
            return try kubeletFile(path, volume: parts[..<i].joined(separator: "/"), key: parts[i + 1])
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { throw .notFound(path) }
        guard (st.st_mode & S_IFMT) == S_IFLNK else { return Located(file: path, kubelet: false) }
        let key = parts.last ?? ""
        guard readLink(path) == "\(Self.kubeletDataLink)/\(key)" else { throw .symlink(path) }
        return try kubeletFile(path, volume: parts.dropLast().joined(separator: "/"), key: key)
    }

    /// `volume/..data/key` resolved to `volume/..<timestamp>/key`, required to stay inside `volume`.
    func kubeletFile(_ path: String, volume rawVolume: String, key: String) throws(FileCheckError) -> Located {
        let volume = rawVolume.isEmpty ? (path.hasPrefix("/") ? "/" : ".") : rawVolume
        let dataLink = "\(volume)/\(Self.kubeletDataLink)"
        var st = stat()
        guard lstat(dataLink, &st) == 0 else { throw .notFound(path) }
        guard (st.st_mode & S_IFMT) == S_IFLNK, let target = readLink(dataLink) else {
            throw .notKubeletLayout(path: path, reason: "\(dataLink) is not a symbolic link")
        }
        guard target.hasPrefix(".."), target != "..", target != Self.kubeletDataLink, !target.contains("/") else {
            throw .notKubeletLayout(path: path, reason: "\(dataLink) points to \(target), not to a '..'-named directory beside it")
        }
        let dir = "\(volume)/\(target)"
        guard lstat(dir, &st) == 0 else { throw .notFound(path) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw .notKubeletLayout(path: path, reason: "\(dir) is not a directory")
        }
        let file = "\(dir)/\(key)"
        guard let realVolume = realPath(volume), let realFile = realPath(file) else { throw .notFound(path) }
        guard realFile.hasPrefix(realVolume == "/" ? "/" : realVolume + "/") else {
            throw .notKubeletLayout(path: path, reason: "it resolves to \(realFile), outside the volume directory \(realVolume)")
        }
        return Located(file: file, kubelet: true)
    }

    /// The type, size, mode and owner checks on the file's status (`display` names it in errors).
    func check(_ st: stat, display: String, kubelet: Bool) throws(FileCheckError) {
        guard (st.st_mode & S_IFMT) != S_IFLNK else { throw .symlink(display) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .notRegular(display) }
        guard st.st_size <= 101 << 20 else { throw .tooLarge(path: display, bytes: Int(st.st_size)) }
        guard checkPermissions else { return }
        let mode = UInt32(st.st_mode) & 0o777
        // kubelet writes volume files as root and adds group read for the pod's fsGroup
        let byKubelet = kubelet && st.st_uid == 0
        let allowed = byKubelet ? maxMode | 0o040 : maxMode
        guard mode & ~allowed == 0 else { throw .tooPermissive(path: display, mode: mode, maximum: allowed) }
        guard st.st_uid == getuid() || byKubelet else { throw .wrongOwner(path: display, owner: st.st_uid, expected: getuid()) }
    }

    /// Checks the file and returns the path of the regular file that was checked (the target for kubelet's layout).
    @discardableResult
    public func validate(_ path: String) throws(FileCheckError) -> String {
        let loc = try locate(path)
        var st = stat()
        guard lstat(loc.file, &st) == 0 else { throw .notFound(path) }
        try check(st, display: Self.display(path, loc), kubelet: loc.kubelet)
        return loc.file
    }

    /// Checks, then reads the whole file. The checks apply to the opened descriptor, so a file swapped between the
    /// check and the read is never read unchecked; a kubelet update that removes the old directory meanwhile is
    /// resolved again.
    public func read(_ path: String) throws(FileCheckError) -> [UInt8] {
        var attempt = 0
        while true {
            attempt += 1
            let loc = try locate(path)
            let fd = open(loc.file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            if fd < 0 {
                let e = errno
                if e == ENOENT && loc.kubelet && attempt < 3 { continue }
                if e == ELOOP { throw .symlink(Self.display(path, loc)) }
                if e == ENOENT { throw .notFound(path) }
                throw .unreadable(path: path, reason: String(cString: strerror(e)))
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
            try check(st, display: Self.display(path, loc), kubelet: loc.kubelet)
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = Glibc.read(fd, &buf, buf.count)
                if n < 0 { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
                if n == 0 { break }
                out.append(contentsOf: buf[0..<n])
            }
            return out
        }
    }

    static func display(_ path: String, _ loc: Located) -> String {
        loc.file == path ? path : "\(path) (kubelet volume file \(loc.file))"
    }

    func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
