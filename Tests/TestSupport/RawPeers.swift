import Foundation

/// Sends every byte (MSG_NOSIGNAL: a peer that left must fail the send, not kill the test process).
/// Returns false when the peer is gone.
@discardableResult
public func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return false }
        off += n
    }
    return true
}

@discardableResult
public func sendAll(_ fd: Int32, _ text: String) -> Bool { sendAll(fd, Array(text.utf8)) }

/// A TCP upstream that misbehaves on purpose: every connection's request head is read, then `script` runs on its
/// own thread with the socket and the head; the connection closes when `script` returns.
public final class ScriptedUpstream: @unchecked Sendable {
    public let port: Int
    private let fd: Int32
    /// Connections accepted so far.
    public var accepted: Int { count.get() }
    private let count = Box(0)

    public init(_ script: @escaping @Sendable (_ fd: Int32, _ head: String) -> Void) {
        (fd, port) = loopbackListener(backlog: 64)
        let lfd = fd
        let count = self.count
        Thread {
            while true {
                let c = accept(lfd, nil, nil)
                if c < 0 { return }
                count.update { $0 += 1 }
                Thread {
                    var buf = [UInt8](repeating: 0, count: 65536)
                    var got: [UInt8] = []
                    while !String(decoding: got, as: UTF8.self).contains("\r\n\r\n") {
                        let n = recv(c, &buf, buf.count, 0)
                        if n <= 0 { break }
                        got += buf[0..<n]
                    }
                    script(c, String(decoding: got, as: UTF8.self))
                    Glibc.close(c)
                }.start()
            }
        }.start()
    }

    public func stop() { shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }
}

/// A raw client connection that reads only when told to (a slow client, pipelining, exact bytes on the wire).
public final class RawClient: @unchecked Sendable {
    public let fd: Int32

    public init(port: Int) throws {
        fd = try loopbackConnect(port: port)
    }

    /// Shrinks the kernel's receive buffer (call before the peer sends) so a client that does not read stalls soon.
    public func setReceiveBuffer(_ bytes: Int32) {
        var v = bytes
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    public func send(_ s: String) { sendAll(fd, s) }

    /// Reads until `done(received)` holds, the peer closes, or `seconds` pass. Returns the bytes and whether the
    /// peer closed.
    public func read(within seconds: Double, until done: ([UInt8]) -> Bool = { _ in false }) -> (bytes: [UInt8], closed: Bool) {
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        let deadline = Date().addingTimeInterval(seconds)
        while !done(got) {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return (got, false) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, Int32(min(left * 1000, 100))) <= 0 { continue }
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return (got, true) }
            got += buf[0..<n]
        }
        return (got, false)
    }

    public func close() { Glibc.close(fd) }
}
