public import Foundation
public import MSCore

/// A real etcd (Debian `etcd-server`) on loopback with free ports and a temporary data directory, for tests.
/// `stop()` kills it and `start()` brings it back on the same ports and data (an outage).
public final class EtcdServer: @unchecked Sendable {
    public let clientPort: Int
    public let peerPort: Int
    public let dataDir: URL
    /// Server TLS (and client-certificate auth) from a test PKI directory.
    public let pki: URL?
    private var process: Process?
    private let logURL: URL

    public init(pki: URL? = nil) throws {
        clientPort = freePort()
        var p = freePort()
        while p == clientPort { p = freePort() }
        peerPort = p
        dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dataDir, withIntermediateDirectories: true)
        logURL = dataDir.appendingPathComponent("etcd.log")
        self.pki = pki
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dataDir)
    }

    public var endpoint: EtcdClient.Endpoint { .init(host: "127.0.0.1", port: clientPort) }

    public var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    public func start() throws {
        guard process == nil else { return }
        let scheme = pki == nil ? "http" : "https"
        var args = [
            "--name", "test", "--data-dir", dataDir.appendingPathComponent("data").path,
            "--listen-client-urls", "\(scheme)://127.0.0.1:\(clientPort)",
            "--advertise-client-urls", "\(scheme)://127.0.0.1:\(clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
            "--initial-cluster", "test=http://127.0.0.1:\(peerPort)",
        ]
        if let pki {
            args += [
                "--cert-file", pki.appendingPathComponent("server.pem").path,
                "--key-file", pki.appendingPathComponent("server.key.pem").path,
                "--trusted-ca-file", pki.appendingPathComponent("ca.pem").path, "--client-cert-auth",
            ]
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        p.arguments = args
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        try p.run()
        process = p
        // ready when the client port accepts (the gateway answers as soon as it listens)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if Self.accepts(clientPort) { return }
            guard p.isRunning else { break }
            usleep(50_000)
        }
        throw NSError(domain: "EtcdServer", code: 1, userInfo: [NSLocalizedDescriptionKey: "etcd did not start: \(self.log.suffix(2000))"])
    }

    public func stop() {
        guard let p = process else { return }
        process = nil
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

extension EtcdServer {
    /// Waits until etcd serves reads (a single member elects itself about a second after it listens).
    public func waitServing(_ client: EtcdClient, within seconds: Double = 20) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        var last: (any Error)?
        while Date() < deadline {
            do {
                _ = try await client.get("/ready-probe")
                return
            } catch {
                last = error
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        throw NSError(domain: "EtcdServer", code: 2, userInfo: [NSLocalizedDescriptionKey: "etcd not serving: \(String(describing: last))"])
    }
}
