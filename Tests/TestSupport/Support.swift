public import Foundation
import Synchronization
public import MSCore

/// Starts a server on 127.0.0.1 (port 0) with `threads` loops; stop it with `shutdown()`.
public func startServer(threads: Int = 2, tls: TLSConfiguration? = nil, maxBody: Int = 1 << 20, maxConnections: Int = 0,
                 handler: @escaping HTTPHandler) throws -> (HTTPServer, Int) {
    let server = try HTTPServer(
        configuration: HTTPServerConfiguration(threads: threads, listeners: [HTTPListener(host: "127.0.0.1", port: 0, tls: tls)],
                                               maxRequestBodyBytes: maxBody, maxConnections: maxConnections,
                                               gracefulTimeoutMilliseconds: 500),
        handler: handler)
    try server.start()
    return (server, server.boundPorts[0])
}

public struct ProcessResult {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

public func run(_ executable: String, _ args: [String], environment: [String: String]? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

public func curl(_ args: [String]) throws -> ProcessResult {
    try run("/usr/bin/curl", ["-sS", "--max-time", "20"] + args)
}

/// The package root (found from this file's path).
public let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fresh test PKI made by the project's own script.
public func makePKI() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pki-\(UUID().uuidString)")
    let r = try run("/bin/bash", [packageRoot.appendingPathComponent("scripts/gen_test_pki.sh").path, dir.path])
    precondition(r.status == 0, "gen_test_pki.sh failed: \(r.stderr)")
    return dir
}

/// Polls `condition` until it holds or `seconds` pass; returns whether it held.
public func eventually(within seconds: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// A port free for a server to take now (bound, then closed; the kernel may give it to another binder later).
public func freePort() -> Int {
    let (fd, port) = boundSocket()
    close(fd)
    return port
}

/// A port with nothing listening on it: bound and never listened on, and kept bound for the rest of the process
/// (one descriptor per call), so a connection is refused and no other test's server can be given the port meanwhile
/// (a closed port could be handed to the next server that binds port 0).
public func deadPort() -> Int { boundSocket().port }

private func boundSocket() -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A raw TCP connection for tests that need to misbehave as a client.
public final class RawConnection {
    public let fd: Int32

    public init(port: Int) throws {
        fd = try loopbackConnect(port: port)
    }

    public func send(_ s: String) { _ = s.withCString { Glibc.send(fd, $0, strlen($0), 0) } }

    public func close() { Glibc.close(fd) }
}

public final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    public init(_ v: T) { value = v }
    public func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    public func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    public func update(_ f: (inout T) -> Void) { lock.lock(); f(&value); lock.unlock() }
}

/// A one-shot raw TCP upstream: accepts connections, reads a request head, writes `response` verbatim and closes
/// (for upstreams that die in ways a real server library would not).
public final class RawUpstream: @unchecked Sendable {
    public let port: Int
    private let fd: Int32

    public init(response: String) {
        (fd, port) = loopbackListener(backlog: 16)
        let lfd = fd
        Thread {
            while true {
                let c = accept(lfd, nil, nil)
                if c < 0 { return }
                var buf = [UInt8](repeating: 0, count: 65536)
                var got: [UInt8] = []
                while !String(decoding: got, as: UTF8.self).contains("\r\n\r\n") {
                    let n = recv(c, &buf, buf.count, 0)
                    if n <= 0 { break }
                    got += buf[0..<n]
                }
                _ = response.withCString { Glibc.send(c, $0, strlen($0), 0) }
                Glibc.close(c)
            }
        }.start()
    }

    public func stop() { shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }
}

/// A TCP socket listening on 127.0.0.1 at a free port.
public func loopbackListener(backlog: Int32) -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var on: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    listen(fd, backlog)
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A TCP connection to 127.0.0.1:`port`; `receiveBuffer` shrinks the kernel's receive buffer first (a slow reader).
public func loopbackConnect(port: Int, receiveBuffer: Int32? = nil) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    if var size = receiveBuffer {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    if rc != 0 {
        close(fd)
        throw POSIXError(.ECONNREFUSED)
    }
    return fd
}
