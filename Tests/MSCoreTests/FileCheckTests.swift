import Foundation
import MSCore
import Testing
import TestSupport

/// The shared input-file checks on kubelet's ConfigMap/Secret layout (`key -> ..data/key`, `..data -> ..<timestamp>`).
@Suite("FileCheck: kubelet volume layout")
struct FileCheckTests {
    let config = FileCheck(maxMode: FileCheck.configMode, environment: [:])
    let tls = FileCheck.tls(environment: [:])

    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test("a ConfigMap file is read through key -> ..data/key and through ..data/key, checks on the target")
    func readsBothPaths() throws {
        let v = try KubeletVolume(["config.json": "{\"a\":1}"])
        defer { v.remove() }
        #expect(text(try config.read(v.file("config.json"))) == "{\"a\":1}")
        #expect(text(try config.read(v.dataPath("config.json"))) == "{\"a\":1}")
        #expect(try config.validate(v.file("config.json")) == "\(v.path)/\(v.dataDir)/config.json")
        // with the relaxation on, as before
        #expect(text(try FileCheck(environment: ["MINDIE_CHECK_INPUTFILES_PERMISSION": "0"]).read(v.dataPath("config.json"))) == "{\"a\":1}")
    }

    @Test("the mode rule applies to the target: defaultMode 0644 is refused, naming the target; the relaxation accepts it")
    func modeOnTarget() throws {
        let v = try KubeletVolume(["config.json": "{}"], mode: 0o644)
        defer { v.remove() }
        #expect(throws: FileCheckError.self) { try config.read(v.file("config.json")) }
        do {
            _ = try config.read(v.file("config.json"))
        } catch {
            #expect("\(error)".contains("0644") && "\(error)".contains(v.dataDir))
        }
        #expect(text(try FileCheck(environment: ["MINDIE_CHECK_INPUTFILES_PERMISSION": "0"]).read(v.file("config.json"))) == "{}")
    }

    @Test("a Secret file at defaultMode 0400 passes the TLS rule; 0600 does not")
    func secretModes() throws {
        let ok = try KubeletVolume(["tls.key": "k"], mode: 0o400)
        let loose = try KubeletVolume(["tls.key": "k"], mode: 0o600)
        defer { ok.remove(); loose.remove() }
        #expect(try tls.validate(ok.file("tls.key")).hasSuffix("/tls.key"))
        #expect(throws: FileCheckError.self) { try tls.validate(loose.file("tls.key")) }
    }

    @Test("a file owned by another non-root user is refused through the layout too")
    func owner() throws {
        let v = try KubeletVolume(["config.json": "{}"])
        defer { v.remove() }
        let target = "\(v.path)/\(v.dataDir)/config.json"
        guard getuid() == 0 else {
            // without root the test cannot chown; the owner rule is the same code as for plain files
            #expect(chown(target, getuid() + 1, getgid()) != 0)
            return
        }
        #expect(chown(target, 4321, 0) == 0)
        #expect(throws: FileCheckError.wrongOwner(path: "\(v.file("config.json")) (kubelet volume file \(target))", owner: 4321, expected: 0)) {
            try config.read(v.file("config.json"))
        }
    }

    @Test("an update swap (new timestamped dir, ..data_tmp renamed over ..data, old dir removed) is followed by the next read")
    func updateSwap() throws {
        let v = try KubeletVolume(["global_ranktable.json": "one"])
        defer { v.remove() }
        #expect(text(try config.read(v.dataPath("global_ranktable.json"))) == "one")
        let before = v.dataDir
        try v.update(["global_ranktable.json": "two"])
        #expect(v.dataDir != before && !FileManager.default.fileExists(atPath: "\(v.path)/\(before)"))
        #expect(text(try config.read(v.dataPath("global_ranktable.json"))) == "two")
        #expect(text(try config.read(v.file("global_ranktable.json"))) == "two")
    }

    @Test("links outside kubelet's layout stay refused")
    func otherLinks() throws {
        let v = try KubeletVolume(["config.json": "{}"])
        defer { v.remove() }
        let outside = NSTemporaryDirectory() + "/fc-outside-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outside) }
        #expect(FileManager.default.createFile(atPath: "\(outside)/secret.json", contents: Data("{}".utf8)))
        #expect(chmod("\(outside)/secret.json", 0o640) == 0)

        // a plain link to a file elsewhere
        #expect(symlink("\(outside)/secret.json", "\(v.path)/plain.json") == 0)
        #expect(throws: FileCheckError.symlink("\(v.path)/plain.json")) { try config.read("\(v.path)/plain.json") }
        // a link that names ..data but another key
        #expect(symlink("..data/config.json", "\(v.path)/other.json") == 0)
        #expect(throws: FileCheckError.symlink("\(v.path)/other.json")) { try config.read("\(v.path)/other.json") }
        // the file inside the data dir is itself a link out of the volume
        #expect(symlink("\(outside)/secret.json", "\(v.path)/\(v.dataDir)/linked.json") == 0)
        #expect(throws: FileCheckError.self) { try config.read(v.dataPath("linked.json")) }
        // ..data pointing outside the volume (absolute, or through a parent reference)
        for target in [outside, "../\((outside as NSString).lastPathComponent)", "..data"] {
            let w = try KubeletVolume(["secret.json": "{}"])
            defer { w.remove() }
            #expect(unlink("\(w.path)/..data") == 0 && symlink(target, "\(w.path)/..data") == 0)
            #expect(throws: FileCheckError.self) { try config.read(w.file("secret.json")) }
            #expect(throws: FileCheckError.self) { try config.read(w.dataPath("secret.json")) }
        }
        // a '..'-named directory that is itself a link out of the volume
        let w = try KubeletVolume(["secret.json": "{}"])
        defer { w.remove() }
        #expect(symlink(outside, "\(w.path)/..evil") == 0)
        #expect(unlink("\(w.path)/..data") == 0 && symlink("..evil", "\(w.path)/..data") == 0)
        #expect(throws: FileCheckError.self) { try config.read(w.file("secret.json")) }
    }

    @Test("'..' stays refused outside the one ..data component", arguments: ["a/../b", "/tmp/..x/config.json", "/tmp/..data/..data/x", "/tmp/..data", "/tmp/a..b"])
    func parentReferences(path: String) {
        #expect(throws: FileCheckError.self) { try config.read(path) }
        #expect(throws: FileCheckError.self) { try FileCheck(environment: ["MINDIE_CHECK_INPUTFILES_PERMISSION": "0"]).read(path) }
    }

    @Test("a plain file keeps the old rules: 0640 read, 0644 refused, a symlink refused")
    func plainFiles() throws {
        let dir = NSTemporaryDirectory() + "/fc-plain-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = "\(dir)/c.json"
        #expect(FileManager.default.createFile(atPath: p, contents: Data("x".utf8)) && chmod(p, 0o640) == 0)
        #expect(text(try config.read(p)) == "x")
        #expect(chmod(p, 0o644) == 0)
        #expect(throws: FileCheckError.tooPermissive(path: p, mode: 0o644, maximum: 0o640)) { try config.read(p) }
        #expect(symlink(p, "\(dir)/l.json") == 0)
        #expect(throws: FileCheckError.symlink("\(dir)/l.json")) { try config.read("\(dir)/l.json") }
    }
}
