import Foundation
import MSCore
import Testing

/// The converter every binary uses for a `*_tls_items` block.
@Suite("TLS items → configuration")
struct TLSItemsTests {
    /// Writes the five files of an item set at 0400 (the password file holds `password`), except `loose` at 0440.
    static func items(password: [UInt8] = Array("secret\n".utf8), loose: String? = nil) throws -> (TLSItems, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-items-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var paths: [String: String] = [:]
        for name in ["ca.pem", "cert.pem", "key.pem", "key_pwd.txt", "crl.pem"] {
            let p = dir.appendingPathComponent(name).path
            #expect(FileManager.default.createFile(atPath: p, contents: Data(name == "key_pwd.txt" ? password : Array("x".utf8))))
            #expect(chmod(p, name == loose ? 0o440 : 0o400) == 0)
            paths[name] = p
        }
        let items = TLSItems(
            caCert: paths["ca.pem"]!, tlsCert: paths["cert.pem"]!, tlsKey: paths["key.pem"]!,
            tlsPasswd: paths["key_pwd.txt"]!, tlsCrl: paths["crl.pem"]!)
        return (items, dir)
    }

    @Test("files at 0400 give a configuration with the key password read from its file")
    func accepted() throws {
        let (items, dir) = try Self.items()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try items.configuration(environment: [:])
        #expect(c.certificatePath == items.tlsCert && c.privateKeyPath == items.tlsKey)
        #expect(c.caPath == items.caCert && c.crlPath == items.tlsCrl && c.keyPassword == "secret" && c.verifyPeer)
    }

    @Test("no password file, no CRL: neither is set")
    func optionalFiles() throws {
        var (items, dir) = try Self.items()
        defer { try? FileManager.default.removeItem(at: dir) }
        items.tlsPasswd = ""
        items.tlsCrl = ""
        let c = try items.configuration(environment: [:], verifyPeer: false)
        #expect(c.keyPassword == nil && c.crlPath == nil && !c.verifyPeer)
    }

    @Test("every TLS file, the password file included, is held to 0400", arguments: ["ca.pem", "cert.pem", "key.pem", "key_pwd.txt", "crl.pem"])
    func groupReadableRefused(file: String) throws {
        let (items, dir) = try Self.items(loose: file)
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: FileCheckError.tooPermissive(path: dir.appendingPathComponent(file).path, mode: 0o440, maximum: 0o400)) {
            try items.configuration(environment: [:])
        }
    }

    @Test("the password is the file without its trailing line breaks; spaces are kept", arguments: [
        ("pw\n", "pw"), ("pw\r\n", "pw"), ("pw\n\n", "pw"), ("pw", "pw"), (" pw \t\n", " pw \t"), ("a\nb\n", "a\nb"),
    ])
    func trimming(file: String, password: String) {
        #expect(TLSItems.password(Array(file.utf8)) == password)
    }
}
