import Foundation
import MSCore
import Testing

@testable import Control

/// The one mode rule for TLS files (FileCheck): CA, certificate, CRL, key and password file at most 0400, in the
/// Controller as in the Coordinator and the Deployer.
@Suite("Controller TLS items: file modes")
struct TLSFileModeTests {
    /// Writes the five TLS files of an item set with `mode`, except `loose` which gets `looseMode`.
    static func items(mode: Int16 = 0o400, loose: String? = nil, looseMode: Int16 = 0o440) throws -> (ControllerConfig.TLSItems, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ctl-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var paths: [String: String] = [:]
        for name in ["ca.pem", "cert.pem", "cert.key.pem", "key_pwd.txt", "crl.pem"] {
            let p = dir.appendingPathComponent(name).path
            #expect(FileManager.default.createFile(atPath: p, contents: Data("x".utf8)))
            #expect(chmod(p, mode_t(name == loose ? looseMode : mode)) == 0)
            paths[name] = p
        }
        return (
            ControllerConfig.TLSItems(
                caCert: paths["ca.pem"]!, tlsCert: paths["cert.pem"]!, tlsKey: paths["cert.key.pem"]!,
                tlsPasswd: paths["key_pwd.txt"]!, tlsCrl: paths["crl.pem"]!),
            dir
        )
    }

    @Test("every TLS file at 0400 is accepted")
    func ownerOnly() throws {
        let (items, dir) = try Self.items()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try ControllerService.tlsConfiguration(.init(enabled: true, items: items), "http_server", [:])
        #expect(c?.certificatePath == items.tlsCert && c?.keyPassword == "x")
    }

    @Test("a certificate, CA or CRL readable by the group (0440) is refused, naming the file and the rule", arguments: ["ca.pem", "cert.pem", "crl.pem", "key_pwd.txt"])
    func groupReadable(file: String) throws {
        let (items, dir) = try Self.items(loose: file)
        defer { try? FileManager.default.removeItem(at: dir) }
        do {
            _ = try ControllerService.tlsConfiguration(.init(enabled: true, items: items), "http_server", [:])
            Issue.record("\(file) at 0440 was accepted")
        } catch {
            let text = "\(error)"
            #expect(text.contains("tls_config.http_server_tls_items"))
            #expect(text.contains(dir.appendingPathComponent(file).path) && text.contains("0440") && text.contains("0400"))
        }
    }

    @Test("MINDIE_CHECK_INPUTFILES_PERMISSION=0 switches the mode check off")
    func checkOff() throws {
        let (items, dir) = try Self.items(loose: "cert.pem", looseMode: 0o644)
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try ControllerService.tlsConfiguration(
            .init(enabled: true, items: items), "http_server", ["MINDIE_CHECK_INPUTFILES_PERMISSION": "0"])
        #expect(c != nil)
    }
}
