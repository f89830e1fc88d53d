/// One `*_tls_items` block of a config file, as every binary reads it: file paths, empty when not given.
public struct TLSItems: Sendable, Equatable {
    public var caCert: String
    public var tlsCert: String
    public var tlsKey: String
    /// The file holding the private key's password; empty for an unencrypted key.
    public var tlsPasswd: String
    public var tlsCrl: String

    public init(caCert: String = "", tlsCert: String = "", tlsKey: String = "", tlsPasswd: String = "", tlsCrl: String = "") {
        self.caCert = caCert
        self.tlsCert = tlsCert
        self.tlsKey = tlsKey
        self.tlsPasswd = tlsPasswd
        self.tlsCrl = tlsCrl
    }

    /// Checks every named file with the TLS rule (`FileCheck.tls`: at most 0400, owner, no symlink), reads the key
    /// password and builds the configuration. The one converter of all binaries, so a TLS block that starts one
    /// binary starts the others.
    /// - Throws: `FileCheckError` for the first file refused.
    public func configuration(environment: [String: String], verifyPeer: Bool = true) throws(FileCheckError) -> TLSConfiguration {
        let check = FileCheck.tls(environment: environment)
        for path in [caCert, tlsCert, tlsKey, tlsCrl] where !path.isEmpty { _ = try check.validate(path) }
        let password = tlsPasswd.isEmpty ? nil : Self.password(try check.read(tlsPasswd))
        return TLSConfiguration(
            certificatePath: tlsCert, privateKeyPath: tlsKey, caPath: caCert,
            crlPath: tlsCrl.isEmpty ? nil : tlsCrl, keyPassword: password, verifyPeer: verifyPeer)
    }

    /// The password in a password file: its bytes without the line breaks that end the file. Spaces and tabs are
    /// password characters; a file written with `echo` (one trailing newline) or on Windows (CRLF) reads the same.
    public static func password(_ bytes: [UInt8]) -> String {
        var end = bytes.count
        while end > 0, bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D { end -= 1 }
        return String(decoding: bytes[..<end], as: UTF8.self)
    }
}
