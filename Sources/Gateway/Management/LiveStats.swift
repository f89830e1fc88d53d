import Foundation
import Synchronization

// What the status page (`GET /v1/cluster`) shows of the last minute. Everything here is written on h2o loop
// threads with relaxed atomics only (no lock, no allocation): the figures are for people, so a sample lost to a
// race while a window rotates is acceptable, a lock on the data path is not.

/// Latencies of roughly the last minute in fixed log-spaced buckets (4 slots of 15 s, 80 buckets from 0.1 ms,
/// ×1.2 each, up to ~3 min): a percentile is exact to one bucket (±10 %).
final class LatencyWindow: Sendable {
    static let buckets = 80
    static let slots = 4
    static let slotNanos: UInt64 = 15_000_000_000
    static let firstBoundNanos = 100_000.0
    static let factor = 1.2

    /// `slots × buckets` counters.
    nonisolated(unsafe) private let counts: UnsafeMutablePointer<Atomic<UInt32>>
    /// Per slot: the 15 s period it counts (period number + 1; 0 never used).
    nonisolated(unsafe) private let periods: UnsafeMutablePointer<Atomic<UInt64>>

    init() {
        counts = .allocate(capacity: Self.slots * Self.buckets)
        for i in 0..<(Self.slots * Self.buckets) { (counts + i).initialize(to: Atomic(0)) }
        periods = .allocate(capacity: Self.slots)
        for i in 0..<Self.slots { (periods + i).initialize(to: Atomic(0)) }
    }

    deinit {
        counts.deinitialize(count: Self.slots * Self.buckets)
        counts.deallocate()
        periods.deinitialize(count: Self.slots)
        periods.deallocate()
    }

    static func bucket(nanos: UInt64) -> Int {
        let x = Double(nanos) / firstBoundNanos
        guard x > 1 else { return 0 }
        return min(buckets - 1, Int((log(x) / log(factor)).rounded(.up)))
    }

    /// The value a bucket stands for: the geometric middle of its bounds, in milliseconds.
    static func representativeMilliseconds(_ b: Int) -> Double {
        let upper = firstBoundNanos * pow(factor, Double(b))
        return (b == 0 ? upper : upper / factor.squareRoot()) / 1_000_000
    }

    func record(nanos: UInt64, now: UInt64) {
        let period = now / Self.slotNanos + 1
        let slot = Int(period % UInt64(Self.slots))
        let seen = periods[slot].load(ordering: .relaxed)
        if seen != period {
            guard seen < period else { return }
            // the first writer of a new period clears the slot it reuses
            if periods[slot].compareExchange(expected: seen, desired: period, ordering: .relaxed).exchanged {
                for b in 0..<Self.buckets { counts[slot * Self.buckets + b].store(0, ordering: .relaxed) }
            }
        }
        counts[slot * Self.buckets + Self.bucket(nanos: nanos)].add(1, ordering: .relaxed)
    }

    func summary(now: UInt64) -> LatencySummary {
        let period = now / Self.slotNanos + 1
        var merged = [Int](repeating: 0, count: Self.buckets)
        for s in 0..<Self.slots {
            let p = periods[s].load(ordering: .relaxed)
            guard p != 0, p <= period, period - p < UInt64(Self.slots) else { continue }
            for b in 0..<Self.buckets { merged[b] += Int(counts[s * Self.buckets + b].load(ordering: .relaxed)) }
        }
        return LatencySummary(histogram: merged)
    }
}

/// Percentiles (milliseconds) of a window; nil when it saw nothing.
struct LatencySummary: Equatable {
    var count: Int
    var p50: Double?
    var p90: Double?
    var p99: Double?

    init(histogram: [Int]) {
        count = histogram.reduce(0, +)
        func quantile(_ q: Double) -> Double? {
            guard count > 0 else { return nil }
            let rank = max(1, Int((q * Double(count)).rounded(.up)))
            var seen = 0
            for (b, n) in histogram.enumerated() {
                seen += n
                if seen >= rank { return LatencyWindow.representativeMilliseconds(b) }
            }
            return nil
        }
        p50 = quantile(0.5)
        p90 = quantile(0.9)
        p99 = quantile(0.99)
    }
}

/// Events per second over the last 10 whole seconds. Each of 16 one-second slots packs its second (high 40 bits)
/// and its count (low 24 bits) in one word, so an increment is one compare-and-swap and never loses a count.
final class RateWindow: Sendable {
    static let slots = 16
    static let span: UInt64 = 10
    nonisolated(unsafe) private let words: UnsafeMutablePointer<Atomic<UInt64>>
    private static let countMask: UInt64 = (1 << 24) - 1

    init() {
        words = .allocate(capacity: Self.slots)
        for i in 0..<Self.slots { (words + i).initialize(to: Atomic(0)) }
    }

    deinit {
        words.deinitialize(count: Self.slots)
        words.deallocate()
    }

    func add(now: UInt64) {
        let second = now / 1_000_000_000 + 1
        let slot = Int(second % UInt64(Self.slots))
        var old = words[slot].load(ordering: .relaxed)
        while true {
            let oldSecond = old >> 24
            let new: UInt64
            if oldSecond == second {
                guard old & Self.countMask < Self.countMask else { return }
                new = old + 1
            } else if oldSecond < second {
                new = second << 24 | 1
            } else {
                return
            }
            let (done, current) = words[slot].compareExchange(expected: old, desired: new, ordering: .relaxed)
            if done { return }
            old = current
        }
    }

    func perSecond(now: UInt64) -> Double {
        let second = now / 1_000_000_000 + 1
        var total: UInt64 = 0
        for s in 0..<Self.slots {
            let w = words[s].load(ordering: .relaxed)
            let at = w >> 24
            // the current second is still filling: the 10 before it
            if at < second, second - at <= Self.span { total += w & Self.countMask }
        }
        return Double(total) / Double(Self.span)
    }
}

/// What the Coordinator measured of one instance, kept with its load object (so it survives refreshes).
final class InstanceStats: Sendable {
    /// Requests dispatched to the instance.
    let dispatched = RateWindow()
    /// Arrival to first byte relayed, for requests whose first token this instance produced (a P in PD).
    let ttft = LatencyWindow()
    /// Gaps between the result frames relayed from this instance (D in PD).
    let itl = LatencyWindow()
    /// `npu_prefix_cache_hit_rate` from the instance's last metrics scrape, as Double bits; `.nan` bits when unknown.
    let prefixHitRateBits = Atomic<UInt64>(Double.nan.bitPattern)

    init() {}

    var prefixHitRate: Double? {
        let v = Double(bitPattern: prefixHitRateBits.load(ordering: .relaxed))
        return v.isNaN ? nil : v
    }
}

/// One error reply the Coordinator made.
struct ErrorRecord: Equatable {
    var unixMilliseconds: UInt64
    var status: Int
    var instance: InstanceID?
    var message: String
}

/// The last ``capacity`` error replies, lock-free: a seqlock per slot, all of it atomics. A writer that finds its
/// slot being written (only when `capacity` errors race) drops its record rather than wait.
final class ErrorRing: Sendable {
    static let messageWords = 20
    /// Words per slot: sequence, time, status, instance, message length, message.
    private static let stride = 5 + messageWords
    static var maxMessageBytes: Int { messageWords * 8 }
    let capacity: Int
    private let next = Atomic<UInt64>(0)
    nonisolated(unsafe) private let words: UnsafeMutablePointer<Atomic<UInt64>>

    init(capacity: Int = 50) {
        self.capacity = capacity
        words = .allocate(capacity: capacity * Self.stride)
        for i in 0..<(capacity * Self.stride) { (words + i).initialize(to: Atomic(0)) }
    }

    deinit {
        words.deinitialize(count: capacity * Self.stride)
        words.deallocate()
    }

    func record(status: Int, message: String, instance: InstanceID?, now: Date = Date()) {
        let n = next.add(1, ordering: .relaxed).oldValue
        let base = Int(n % UInt64(capacity)) * Self.stride
        let seq = words[base].load(ordering: .relaxed)
        guard seq & 1 == 0, words[base].compareExchange(expected: seq, desired: seq | 1, ordering: .relaxed).exchanged else { return }
        atomicMemoryFence(ordering: .releasing)
        var utf8 = Array(message.utf8.prefix(Self.maxMessageBytes))
        if utf8.count == Self.maxMessageBytes {
            // cut at a character boundary
            while let last = utf8.last, last & 0xC0 == 0x80 { utf8.removeLast() }
            if let last = utf8.last, last >= 0xC0 { utf8.removeLast() }
        }
        words[base + 1].store(UInt64(max(0, now.timeIntervalSince1970 * 1000)), ordering: .relaxed)
        words[base + 2].store(UInt64(clamping: status), ordering: .relaxed)
        words[base + 3].store(instance.map { $0 &+ 1 } ?? 0, ordering: .relaxed)
        words[base + 4].store(UInt64(utf8.count), ordering: .relaxed)
        for w in 0..<Self.messageWords {
            var v: UInt64 = 0
            for k in 0..<8 where w * 8 + k < utf8.count { v |= UInt64(utf8[w * 8 + k]) << (8 * k) }
            words[base + 5 + w].store(v, ordering: .relaxed)
        }
        // (n + 1) * 2: even, and names the record so a reader can tell it from an older one in the same slot
        words[base].store((n + 1) << 1, ordering: .releasing)
    }

    /// The records still held, newest first.
    func recent() -> [ErrorRecord] {
        let end = next.load(ordering: .relaxed)
        var out: [ErrorRecord] = []
        var n = end
        while n > 0, end - n < UInt64(capacity) {
            n -= 1
            let base = Int(n % UInt64(capacity)) * Self.stride
            let want = (n + 1) << 1
            guard words[base].load(ordering: .acquiring) == want else { continue }
            let time = words[base + 1].load(ordering: .relaxed)
            let status = Int(words[base + 2].load(ordering: .relaxed))
            let inst = words[base + 3].load(ordering: .relaxed)
            let length = min(Int(words[base + 4].load(ordering: .relaxed)), Self.maxMessageBytes)
            var bytes: [UInt8] = []
            bytes.reserveCapacity(length)
            for w in 0..<Self.messageWords where w * 8 < length {
                let v = words[base + 5 + w].load(ordering: .relaxed)
                for k in 0..<8 where w * 8 + k < length { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * k))) }
            }
            atomicMemoryFence(ordering: .acquiring)
            // rewritten while we read it: skip
            guard words[base].load(ordering: .relaxed) == want else { continue }
            out.append(ErrorRecord(unixMilliseconds: time, status: status, instance: inst == 0 ? nil : inst - 1,
                                   message: String(decoding: bytes, as: UTF8.self)))
        }
        return out
    }
}

/// The Coordinator-wide figures of the status page.
final class LiveStats: Sendable {
    /// Requests that reached the data path.
    let arrivals = RateWindow()
    let ttft = LatencyWindow()
    let itl = LatencyWindow()
    let errors = ErrorRing(capacity: 50)
    let startedAt = Date()
    /// Instances that left the published set, shown as gone for a while (link loop only).
    nonisolated(unsafe) var gone: [InstanceID: GoneInstance] = [:]
    /// The last `/v1/cluster` document and when it was built (link loop only): many open pages cost one build.
    nonisolated(unsafe) var cachedDocument: (builtAt: UInt64, body: [UInt8])?
    /// A prefix-cache scrape is under way (link loop only).
    nonisolated(unsafe) var scraping = false
    nonisolated(unsafe) var lastScrape: UInt64 = 0

    init() {}
}

/// An instance that left the published set: what the page keeps showing of it.
struct GoneInstance {
    var info: InstanceInfo
    var ip: String
    var port: Int
    var since: Date
    var reason: String
}
