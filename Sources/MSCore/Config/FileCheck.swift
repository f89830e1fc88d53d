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
        case .parentReference(let p): "path \(p) contains '..'"
        case .notFound(let p): "\(p) does not exist"
        case .symlink(let p): "\(p) is a symbolic link"
        case .notRegular(let p): "\(p) is not a regular file"
        case .tooPermissive(let p, let mode, let max):
            "\(p) has mode \(String(mode, radix: 8, uppercase: false).leftPad(4)), more than the allowed \(String(max, radix: 8).leftPad(4)) " +
            (max == FileCheck.secretMode ? "for TLS files (CA, certificates, CRL, keys and password files are readable by their owner only) " : "") +
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
/// One mode rule for every binary (docs/operations.md, "File modes and owners"): config files (and the files they
/// point at, such as the rank table or the model and machine files) at most 0640; every TLS file — CA, certificate,
/// CRL, private key and key-password file — at most 0400. The reference checks certificates as strictly as keys
/// (docs/wire/coordinator.md §8, docs/wire/deployer.md §6), so a certificate's mode never decides whether a
/// deployment that works there starts here.
public struct FileCheck: Sendable {
    /// Config files and the data files they name.
    public static let configMode: UInt32 = 0o640
    /// Every TLS file: CA, certificate, CRL, private key, key-password file.
    public static let secretMode: UInt32 = 0o400

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

    public func validate(_ path: String) throws(FileCheckError) {
        guard !path.isEmpty else { throw .emptyPath }
        guard path.utf8.count <= 4096 else { throw .pathTooLong(path) }
        guard path.utf8.allSatisfy({ c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2E || c == 0x2F || c == 0x7E || c == 0x2D
        }) else { throw .invalidCharacters(path) }
        guard !path.contains("..") else { throw .parentReference(path) }
        var st = stat()
        guard lstat(path, &st) == 0 else { throw .notFound(path) }
        guard (st.st_mode & S_IFMT) != S_IFLNK else { throw .symlink(path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .notRegular(path) }
        guard st.st_size <= 101 << 20 else { throw .tooLarge(path: path, bytes: Int(st.st_size)) }
        guard checkPermissions else { return }
        let mode = UInt32(st.st_mode) & 0o777
        guard mode & ~maxMode == 0 else { throw .tooPermissive(path: path, mode: mode, maximum: maxMode) }
        guard st.st_uid == getuid() else { throw .wrongOwner(path: path, owner: st.st_uid, expected: getuid()) }
    }

    /// Checks, then reads the whole file.
    public func read(_ path: String) throws(FileCheckError) -> [UInt8] {
        try validate(path)
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
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
