import Foundation
import Metrics
import Synchronization

/// One finished data-port request as the loop thread hands it over: plain values and references only, so the
/// loop never formats or allocates text for the log (the writer thread does).
struct AccessRecord: Sendable {
    /// The Coordinator's request id (`req-id` upstream); nil for a request refused before it was tracked.
    var requestID: UInt64?
    var method: String
    /// The request's path, without its query (which may carry secrets).
    var route: String
    var dialect: Dialect?
    var stream = false
    var model: String?
    /// Single node (or a flex self-pair): the instance that served the last attempt.
    var instance: InstanceEntry?
    /// PD: the pair of the last incarnation.
    var prefill: InstanceEntry?
    var decode: InstanceEntry?
    /// The status the client saw; 0 when nothing reached it (it left first).
    var status = 0
    /// Uptime (ns) of the arrival, the first byte to the client (0: none) and the end.
    var arrivalNanos: UInt64 = 0
    var firstByteNanos: UInt64 = 0
    var endNanos: UInt64 = 0
    /// Wall clock of the end, ns since the epoch.
    var wallNanos: Int64 = 0
    /// Output messages relayed (PD streams: one per token); nil where the Coordinator does not look into the body.
    var tokensOut: Int?
    /// Response body bytes handed to the client.
    var bytesOut: UInt64 = 0
    var retries = 0
    var clientDisconnect = false
    /// The `traceparent` the instances got (the client's or ours); the log shows its trace id.
    var traceparent: String?
    /// What went wrong, for error replies the Coordinator made itself.
    var error: String?
}

/// The opt-in structured access log (`log_info.access_log`): JSON lines, one per data-port request.
///
/// Loop threads only ``submit(_:)`` a record into a bounded queue under a short lock (an append); a dedicated
/// writer thread formats and writes whole batches with one `write(2)`. When the queue is full the record is dropped
/// and `mindie_coordinator_access_log_dropped_total` counts it: the data path never waits for the disk.
///
/// A wake-up, a `write(2)` and a rotation check per line cost more than formatting the line (issue 16), so the writer
/// gathers: woken by the first record of a batch, it waits until `batchLines` are queued or `linger` has passed,
/// whichever comes first, then writes them all at once. Every line therefore reaches the file within about `linger`
/// (plus the write itself), and ``close()`` cuts the wait short and writes everything still queued.
/// The file is opened with `O_APPEND`; at most once a second, before a write, the writer compares the path's inode
/// with its descriptor's and reopens when the file was renamed or removed, so rotation by rename needs no signal
/// (lines written within that second after a rename still land in the renamed file, as logrotate expects of a
/// daemon it does not signal; copytruncate works too).
final class AccessLog: Sendable {
    struct Queue {
        var records: [AccessRecord] = []
        var stopping = false
    }

    /// How often, at most, the writer looks for a rename or removal of the file.
    static let rotationCheckNanos: UInt64 = 1_000_000_000

    let path: String
    let capacity: Int
    /// The queue length at which the writer stops lingering (below `capacity`, so a burst is not dropped meanwhile).
    let batchLines: Int
    let lingerNanos: UInt64
    private let queue = Mutex<Queue>(Queue())
    /// Signalled by the first record of a batch (the queue was empty) and by close().
    private let wake = DispatchSemaphore(value: 0)
    /// Signalled when the queue reaches `batchLines` and by close(): ends the writer's linger early.
    private let full = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private let dropped: Counter
    /// Records written, for tests and the shutdown flush.
    let written = Atomic<Int>(0)
    /// write(2) batches, for tests and the bench: how many lines each write carries is written / batches.
    let batches = Atomic<Int>(0)
    private let fd = Atomic<Int32>(-1)

    /// Opens (creates, mode 0640) `path` for appending and starts the writer thread.
    /// - Throws: a message naming the path when it cannot be opened.
    /// - Parameters:
    ///   - batchLines: queue length that ends the linger at once (capped at half the capacity).
    ///   - linger: the longest a line waits in the queue for others before it is written.
    init(path: String, capacity: Int, dropped: Counter, batchLines: Int = 512,
         linger: Duration = .milliseconds(2)) throws(CoordinatorStartError) {
        self.path = path
        self.capacity = capacity
        self.batchLines = max(1, min(batchLines, capacity / 2))
        let (s, atto) = linger.components
        self.lingerNanos = UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, atto) / 1_000_000_000)
        self.dropped = dropped
        let f = Self.open(path)
        guard f >= 0 else {
            throw CoordinatorStartError("log_info.access_log.path: cannot open \(path) for appending: \(String(cString: strerror(errno)))")
        }
        fd.store(f, ordering: .relaxed)
        let t = Thread { [self] in
            Self.nameThisThread("access-log")
            self.run()
        }
        t.name = "access-log"
        t.start()
    }

    /// Foundation keeps `Thread.name` to itself on Linux, and glibc's `pthread_setname_np` is not visible to Swift:
    /// the kernel's name (what `top -H` and bench/run.sh see) is set through procfs. Best effort.
    private static func nameThisThread(_ name: String) {
        let f = Glibc.open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard f >= 0 else { return }
        _ = Array(name.utf8.prefix(15)).withUnsafeBytes { Glibc.write(f, $0.baseAddress, $0.count) }
        Glibc.close(f)
    }

    private static func open(_ path: String) -> Int32 {
        Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
    }

    /// Hands a record to the writer; never blocks beyond one append. false when the queue was full (dropped).
    @discardableResult
    func submit(_ r: AccessRecord) -> Bool {
        let (accepted, count) = queue.withLock { q -> (Bool, Int) in
            guard !q.stopping, q.records.count < capacity else { return (false, 0) }
            q.records.append(r)
            return (true, q.records.count)
        }
        guard accepted else {
            dropped.increment()
            return false
        }
        // at most two signals per batch, each a syscall only when the writer is actually waiting on it
        if count == 1 { wake.signal() }
        if count == batchLines { full.signal() }
        return true
    }

    /// Writes what is queued, then stops the writer and closes the file.
    func close() {
        let already = queue.withLock { q in
            defer { q.stopping = true }
            return q.stopping
        }
        guard !already else { return }
        wake.signal()
        full.signal()
        stopped.wait()
    }

    private static func monotonicNanos() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private func run() {
        var batch: [AccessRecord] = []
        var out: [UInt8] = []
        var checked = Self.monotonicNanos()
        while true {
            wake.wait()
            // Gather. A signal of `full` left over from a batch taken just after its linger timed out only makes the
            // next batch an early one, never a late one.
            _ = full.wait(timeout: DispatchTime(uptimeNanoseconds: Self.monotonicNanos() + lingerNanos))
            let stopping = queue.withLock { q in
                swap(&batch, &q.records)
                return q.stopping
            }
            if !batch.isEmpty {
                let now = Self.monotonicNanos()
                if now &- checked >= Self.rotationCheckNanos {
                    reopenIfMoved()
                    checked = now
                }
                out.removeAll(keepingCapacity: true)
                for r in batch { Self.format(r, into: &out) }
                writeAll(out)
                written.add(batch.count, ordering: .relaxed)
                batches.add(1, ordering: .relaxed)
                batch.removeAll(keepingCapacity: true)
            }
            // once stopping is seen under the lock nothing more is queued: what was taken above is the last
            if stopping {
                Glibc.close(fd.exchange(-1, ordering: .relaxed))
                stopped.signal()
                return
            }
        }
    }

    private func writeAll(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { b in
            var off = 0
            while off < b.count {
                let n = Glibc.write(fd.load(ordering: .relaxed), b.baseAddress! + off, b.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    return // a full or failing disk loses lines, it does not stop the writer
                }
                off += n
            }
        }
    }

    private func reopenIfMoved() {
        var onDisk = stat(), open = stat()
        let current = fd.load(ordering: .relaxed)
        guard fstat(current, &open) == 0 else { return }
        if stat(path, &onDisk) == 0, onDisk.st_ino == open.st_ino, onDisk.st_dev == open.st_dev { return }
        let f = Self.open(path)
        guard f >= 0 else { return }
        Glibc.close(fd.exchange(f, ordering: .relaxed))
    }

    // MARK: - formatting (writer thread)

    /// Appends `r` as one JSON line. Byte appends of literals and digits only: after batching, formatting is most
    /// of what the writer does per line, and temporary arrays and interpolated strings were most of formatting.
    static func format(_ r: AccessRecord, into out: inout [UInt8]) {
        out.append(contentsOf: "{\"time\":\"".utf8)
        appendTime(r.wallNanos, into: &out)
        out.append(contentsOf: "\",\"request_id\":".utf8)
        if let id = r.requestID {
            out.append(UInt8(ascii: "\""))
            decimal(id, into: &out)
            out.append(UInt8(ascii: "\""))
        } else {
            null(into: &out)
        }
        field("method", into: &out); string(r.method, into: &out)
        field("route", into: &out); string(r.route, into: &out)
        field("dialect", into: &out); optionalString(r.dialect?.rawValue, into: &out)
        field("stream", into: &out); bool(r.stream, into: &out)
        field("model", into: &out); optionalString(r.model, into: &out)
        field("instance", into: &out); instance(r.instance, into: &out)
        field("prefill", into: &out); instance(r.prefill, into: &out)
        field("decode", into: &out); instance(r.decode, into: &out)
        field("status", into: &out); integer(r.status, into: &out)
        field("ttft_ms", into: &out)
        if r.firstByteNanos >= r.arrivalNanos, r.firstByteNanos > 0 { millis(r.firstByteNanos - r.arrivalNanos, into: &out) } else { null(into: &out) }
        field("duration_ms", into: &out); millis(r.endNanos >= r.arrivalNanos ? r.endNanos - r.arrivalNanos : 0, into: &out)
        field("tokens_out", into: &out)
        if let t = r.tokensOut { integer(t, into: &out) } else { null(into: &out) }
        field("bytes_out", into: &out); decimal(r.bytesOut, into: &out)
        field("retries", into: &out); integer(r.retries, into: &out)
        field("client_disconnect", into: &out); bool(r.clientDisconnect, into: &out)
        field("trace_id", into: &out); optionalString(traceID(r.traceparent), into: &out)
        field("error", into: &out); optionalString(r.error, into: &out)
        out.append(contentsOf: "}\n".utf8)
    }

    /// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); nil when it is not one.
    static func traceID(_ traceparent: String?) -> String? {
        guard let t = traceparent else { return nil }
        let parts = t.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[1].utf8.count == 32, parts[1].utf8.allSatisfy({ isHex($0) }) else { return nil }
        return String(parts[1]).lowercased()
    }

    private static func isHex(_ c: UInt8) -> Bool {
        (0x30...0x39).contains(c) || (0x61...0x66).contains(c) || (0x41...0x46).contains(c)
    }

    private static func field(_ name: StaticString, into out: inout [UInt8]) {
        out.append(UInt8(ascii: ","))
        out.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { out.append(contentsOf: $0) }
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    private static func null(into out: inout [UInt8]) {
        out.append(contentsOf: "null".utf8)
    }

    private static func bool(_ b: Bool, into out: inout [UInt8]) {
        out.append(contentsOf: (b ? "true" : "false").utf8)
    }

    private static func integer(_ v: Int, into out: inout [UInt8]) {
        if v < 0 { out.append(UInt8(ascii: "-")) }
        decimal(v.magnitude, into: &out)
    }

    /// `v` in decimal, at least `width` digits (zero-padded).
    private static func decimal<T: UnsignedInteger>(_ v: T, width: Int = 1, into out: inout [UInt8]) {
        var v = UInt64(v)
        let start = out.count
        repeat {
            out.append(UInt8(ascii: "0") + UInt8(v % 10))
            v /= 10
        } while v > 0 || out.count - start < width
        out[start...].reverse()
    }

    private static func instance(_ e: InstanceEntry?, into out: inout [UInt8]) {
        guard let e else { return null(into: &out) }
        out.append(contentsOf: "{\"id\":".utf8)
        decimal(e.info.id, into: &out)
        out.append(contentsOf: ",\"address\":\"".utf8)
        escaped(e.ip, into: &out)
        out.append(UInt8(ascii: ":"))
        integer(e.port, into: &out)
        out.append(contentsOf: "\"}".utf8)
    }

    private static func optionalString(_ s: String?, into out: inout [UInt8]) {
        if let s { string(s, into: &out) } else { null(into: &out) }
    }

    /// A JSON string literal (RFC 8259 escapes; control characters as \u00XX).
    static func string(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        escaped(s, into: &out)
        out.append(UInt8(ascii: "\""))
    }

    private static func escaped(_ s: String, into out: inout [UInt8]) {
        let hex: StaticString = "0123456789abcdef"
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(c)
            case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                hex.withUTF8Buffer { h in
                    out.append(h[Int(c >> 4)])
                    out.append(h[Int(c & 0xF)])
                }
            default: out.append(c)
            }
        }
    }

    private static func millis(_ ns: UInt64, into out: inout [UInt8]) {
        // three decimals: microsecond resolution is plenty for a log and keeps lines short
        let us = (ns + 500) / 1000
        decimal(us / 1000, into: &out)
        out.append(UInt8(ascii: "."))
        decimal(us % 1000, width: 3, into: &out)
    }

    /// RFC 3339 UTC with milliseconds.
    private static func appendTime(_ wallNanos: Int64, into out: inout [UInt8]) {
        var secs = time_t(wallNanos / 1_000_000_000)
        var tm = tm()
        gmtime_r(&secs, &tm)
        let ms = UInt64((wallNanos / 1_000_000) % 1000)
        decimal(UInt64(tm.tm_year + 1900), width: 4, into: &out); out.append(UInt8(ascii: "-"))
        decimal(UInt64(tm.tm_mon + 1), width: 2, into: &out); out.append(UInt8(ascii: "-"))
        decimal(UInt64(tm.tm_mday), width: 2, into: &out); out.append(UInt8(ascii: "T"))
        decimal(UInt64(tm.tm_hour), width: 2, into: &out); out.append(UInt8(ascii: ":"))
        decimal(UInt64(tm.tm_min), width: 2, into: &out); out.append(UInt8(ascii: ":"))
        decimal(UInt64(tm.tm_sec), width: 2, into: &out); out.append(UInt8(ascii: "."))
        decimal(ms, width: 3, into: &out); out.append(UInt8(ascii: "Z"))
    }

    /// Wall clock now, ns since the epoch (a vDSO call: cheap enough for the loop).
    static func wallNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}
