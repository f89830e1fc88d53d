/// How a sequence uses the engine.
public enum SequenceKind: Sendable, Equatable {
    /// Standard mode: prefill, then decode to the end.
    case mixed
    /// A P: prefill, emit one token, then park holding the KV until `release`.
    case prefillOnly
    /// A D: wait for a slot and blocks, pull the KV, then decode.
    case decodeOnly
}

/// Why a sequence finished.
public enum FinishReason: String, Sendable, Equatable {
    case length
    case eos
}

/// One inference request as the engine sees it.
public struct EngineRequest: Sendable, Equatable {
    public var id: UInt64
    /// Prompt token ids (for a recompute: the original prompt followed by the tokens generated so far).
    public var prompt: [UInt32]
    /// Output tokens wanted in total, counting `preGenerated` (clamped by the engine's limits).
    public var maxNewTokens: Int
    public var seed: UInt64
    /// Stop with `eos` once this many output tokens exist (`X-Sim-Output-Tokens`).
    public var eosAfter: Int?
    /// Output tokens that already exist (recompute, or the first token a D receives).
    public var preGenerated: Int
    public var kind: SequenceKind

    public init(
        id: UInt64, prompt: [UInt32], maxNewTokens: Int, seed: UInt64? = nil, eosAfter: Int? = nil,
        preGenerated: Int = 0, kind: SequenceKind = .mixed
    ) {
        self.id = id; self.prompt = prompt; self.maxNewTokens = maxNewTokens
        self.seed = seed ?? OutputGenerator.seed(forPrompt: prompt)
        self.eosAfter = eosAfter; self.preGenerated = preGenerated; self.kind = kind
    }
}

/// Something the engine did; `time` is engine time in milliseconds.
public enum EngineEvent: Sendable, Equatable {
    /// Output token `index` (0-based over the whole output) exists; `finish` is set on the last.
    case token(id: UInt64, index: Int, finish: FinishReason?, time: Double)
    /// A running sequence lost its blocks. A mixed sequence is requeued at the head; a D sequence is
    /// dropped (the host sends `retry:`). `generated` output tokens existed.
    case preempted(id: UInt64, generated: Int, requeued: Bool, time: Double)
    /// A D sequence finished pulling its KV and joins the decode batch.
    case kvPulled(id: UInt64, time: Double)
}

/// Why a request was not accepted.
public enum EngineRejection: Error, Sendable, Equatable {
    /// The prompt exceeds maxInputTokenLen or reaches maxSeqLen.
    case promptTooLong(length: Int, limit: Int)
    case duplicateId
}

/// Engine-level configuration beyond the profile.
public struct EngineConfiguration: Sendable, Equatable {
    public var profile: ModelProfile
    /// Engine times are divided by this factor.
    public var speedup: Double
    /// Per-token EOS probability (`--eos p`); 0 = never.
    public var eosProbability: Double
    /// Seed of the jitter / EOS generator.
    public var seed: UInt64

    public init(profile: ModelProfile = .llama8b, speedup: Double = 1, eosProbability: Double = 0, seed: UInt64 = 1) {
        self.profile = profile; self.speedup = speedup; self.eosProbability = eosProbability; self.seed = seed
    }
}

/// The accelerator model of one instance (docs/wire/simulator.md §6.3): continuous batching with a slot limit and a KV
/// budget, separate prefill iterations first, decode otherwise, queueing when full.
///
/// Pure and single-threaded: time is injected. Call `submit` and `advance(to:)` with a monotonic time
/// in milliseconds; `nextEventTime` says when something will happen next.
public final class Engine {
    public private(set) var configuration: EngineConfiguration
    public var profile: ModelProfile { configuration.profile }
    public private(set) var now: Double = 0
    public private(set) var pool: BlockPool
    /// Engine stalls: no new step starts while set (the `hang engine` fault).
    public var paused = false { didSet { if !paused { startStepIfIdle() } } }

    public private(set) var preemptions = 0
    /// Durations of the last steps, for tests and diagnostics.
    public private(set) var lastStep: (kind: StepKind, start: Double, duration: Double, batch: Int)?

    public enum StepKind: Sendable, Equatable { case prefill, decode }

    enum Phase: Equatable { case waiting, transferring(readyAt: Double), running, parked }

    struct Sequence {
        var request: EngineRequest
        var keys: [UInt64]
        var generated: Int
        var target: Int
        var alloc: BlockAllocation?
        var phase: Phase
        var admitOrder: Int
        var cachedTokens: Int
        var length: Int { request.prompt.count + generated - request.preGenerated }
    }

    private var seqs: [UInt64: Sequence] = [:]
    private var queue: [UInt64] = []
    private var running: [UInt64] = []  // admission order: running, transferring
    private var step: (kind: StepKind, end: Double, members: [UInt64])?
    private var admitCounter = 0
    private var rng: SplitMix64
    private var pending: [EngineEvent] = []
    private var admittedCached: [UInt64: Int] = [:]

    /// The cached-token count found when `id` was admitted to prefill (read once).
    public func takeCachedTokens(_ id: UInt64) -> Int? { admittedCached.removeValue(forKey: id) }

    public init(configuration: EngineConfiguration) {
        self.configuration = configuration
        self.pool = BlockPool(blockSize: configuration.profile.blockSize, totalBlocks: configuration.profile.totalBlocks)
        self.rng = SplitMix64(seed: configuration.seed)
    }

    // MARK: observation

    public var waitingCount: Int { queue.count }
    /// Sequences holding a batch slot (running or pulling KV).
    public var runningCount: Int { running.count }
    public var parkedCount: Int { seqs.values.filter { $0.phase == .parked }.count }
    public var availableSlots: Int { max(0, profile.maxBatchSize - running.count) }
    public var isIdle: Bool { (step?.members.isEmpty ?? true) && queue.isEmpty && running.isEmpty }
    public func contains(_ id: UInt64) -> Bool { seqs[id] != nil }
    /// Tokens found in the prefix cache when `id` was admitted.
    public func cachedTokens(of id: UInt64) -> Int? { seqs[id]?.cachedTokens }
    /// Output tokens `id` has produced so far.
    public func generated(of id: UInt64) -> Int? { seqs[id]?.generated }

    /// When the host should call `advance(to:)` next (a step ends or a KV pull completes).
    public var nextEventTime: Double? {
        var t = step?.end
        for id in running {
            if case .transferring(let r) = seqs[id]?.phase { t = min(t ?? r, r) }
        }
        return t
    }

    /// The output-token limit for a prompt of `promptLength` tokens asking for `requested`:
    /// min(requested, maxIterTimes, maxSeqLen − prompt length).
    public func outputLimit(requested: Int, promptLength: Int) -> Int {
        max(0, min(requested, profile.maxIterTimes, profile.maxSeqLen - promptLength))
    }

    // MARK: input

    /// Queues `request`. The limits are checked on the original prompt length.
    /// - Throws: `EngineRejection` when the prompt is too long.
    public func submit(_ request: EngineRequest, now t: Double) throws(EngineRejection) {
        runUntil(t)
        let n = request.prompt.count - request.preGenerated
        if n > profile.maxInputTokenLen { throw .promptTooLong(length: n, limit: profile.maxInputTokenLen) }
        if n >= profile.maxSeqLen { throw .promptTooLong(length: n, limit: profile.maxSeqLen) }
        guard seqs[request.id] == nil else { throw .duplicateId }
        let target = max(
            request.preGenerated + (request.kind == .decodeOnly ? 0 : 1),
            min(request.maxNewTokens, profile.maxIterTimes, profile.maxSeqLen - n))
        let keys = request.kind == .decodeOnly ? [] : pool.keys(for: Array(request.prompt.prefix(n)))
        seqs[request.id] = Sequence(
            request: request, keys: keys, generated: request.preGenerated, target: target, alloc: nil,
            phase: .waiting, admitOrder: 0, cachedTokens: 0)
        queue.append(request.id)
        if request.kind == .decodeOnly, request.preGenerated >= target {
            // nothing left to decode: finish at once
            finish(request.id)
            return
        }
        startStepIfIdle()
    }

    /// Runs the model up to time `t` and returns everything that happened since the last call.
    public func advance(to t: Double) -> [EngineEvent] {
        runUntil(t)
        let out = pending
        pending.removeAll()
        return out
    }

    /// Removes `id` wherever it is (stopInfer, client gone, role change) and frees its blocks.
    @discardableResult
    public func cancel(_ id: UInt64) -> Bool {
        admittedCached[id] = nil
        guard seqs[id] != nil else { return false }
        finish(id)
        startStepIfIdle()
        return true
    }

    /// Frees the KV a parked P sequence holds (D released it, or the hold timed out).
    @discardableResult
    public func release(_ id: UInt64) -> Bool {
        guard let s = seqs[id], s.phase == .parked else { return false }
        finish(id)
        startStepIfIdle()
        return true
    }

    /// Changes the KV pool size at run time (`kv_shrink`).
    public func resizePool(totalBlocks: Int) {
        pool.resize(totalBlocks: totalBlocks)
        configuration.profile.totalBlocks = pool.totalBlocks
    }

    /// Changes the speed-up factor at run time; the current step keeps its end time.
    public func setSpeedup(_ s: Double) { configuration.speedup = max(1e-9, s) }
    public func setEOSProbability(_ p: Double) { configuration.eosProbability = p }

    // MARK: scheduling

    private func runUntil(_ t: Double) {
        while let next = nextEventTime, next <= t {
            now = max(now, next)
            for id in running {
                if case .transferring(let r) = seqs[id]?.phase, r <= now {
                    seqs[id]?.phase = .running
                    pending.append(.kvPulled(id: id, time: r))
                }
            }
            if let s = step, s.end <= now { complete(s) }
            startStepIfIdle()
        }
        now = max(now, t)
        startStepIfIdle()
    }

    private func jittered(_ base: Double) -> Double {
        var d = base
        if profile.sigma > 0 { d *= max(0.3, 1 + profile.sigma * rng.gaussian()) }
        if profile.stallProbability > 0, rng.unit() < profile.stallProbability { d *= profile.stallFactor }
        return d / max(configuration.speedup, 1e-9)
    }

    private func admitDecodeOnly() {
        while let head = queue.first, let s = seqs[head], s.request.kind == .decodeOnly {
            guard running.count < profile.maxBatchSize else { return }
            let blocks = pool.blocksFor(tokens: s.length)
            guard let alloc = pool.allocate(keys: [], blocks: blocks) else { return }
            queue.removeFirst()
            admitCounter += 1
            let t = now + profile.kvTransferTime(tokens: s.request.prompt.count) / max(configuration.speedup, 1e-9)
            seqs[head]?.alloc = alloc
            seqs[head]?.admitOrder = admitCounter
            seqs[head]?.phase = .transferring(readyAt: t)
            running.append(head)
        }
    }

    private func startStepIfIdle() {
        guard step == nil, !paused else { return }
        admitDecodeOnly()
        // 1. prefill
        var batch: [UInt64] = []
        var sumU = 0
        var cost: [(uncached: Int, length: Int)] = []
        for id in queue {
            guard let s = seqs[id], s.request.kind != .decodeOnly else { break }
            if batch.count >= profile.maxPrefillBatchSize { break }
            if running.count + batch.count >= profile.maxBatchSize { break }
            let n = s.length
            let cached = pool.cachedTokens(keys: s.keys, length: n)
            let u = n - cached
            if !batch.isEmpty, sumU + u > profile.maxPrefillTokens { break }
            let blocks = pool.blocksFor(tokens: n)
            guard let alloc = pool.allocate(keys: s.keys, blocks: blocks, countLookup: n) else { break }
            admitCounter += 1
            seqs[id]?.alloc = alloc
            seqs[id]?.cachedTokens = cached
            admittedCached[id] = cached
            seqs[id]?.admitOrder = admitCounter
            batch.append(id)
            sumU += u
            cost.append((u, n))
            if sumU >= profile.maxPrefillTokens { break }
        }
        if !batch.isEmpty {
            queue.removeFirst(batch.count)
            let d = jittered(profile.prefillTime(cost))
            for id in batch { seqs[id]?.phase = .running }
            running.append(contentsOf: batch)
            step = (.prefill, now + d, batch)
            lastStep = (.prefill, now, d, batch.count)
            return
        }
        // 2. decode
        var members = running.filter { seqs[$0]?.phase == .running }
        guard !members.isEmpty else { return }
        // blocks for the token each sequence is about to write; preempt the newest when short
        var i = 0
        while i < members.count {
            let id = members[i]
            guard var s = seqs[id], var alloc = s.alloc else { i += 1; continue }
            let need = pool.blocksFor(tokens: s.length + 1)
            var ok = true
            while alloc.count < need {
                if !pool.grow(&alloc) { ok = false; break }
            }
            s.alloc = alloc
            seqs[id] = s
            if ok { i += 1; continue }
            // preempt the newest running sequence (possibly this one) and retry
            guard let victim = members.max(by: { (seqs[$0]?.admitOrder ?? 0) < (seqs[$1]?.admitOrder ?? 0) }) else { break }
            preempt(victim)
            members.removeAll { $0 == victim }
            if victim == id { continue }
        }
        guard !members.isEmpty else { return }
        var total = 0
        for id in members { total += seqs[id]?.length ?? 0 }
        let d = jittered(profile.decodeTime(batch: members.count, totalLength: total))
        step = (.decode, now + d, members)
        lastStep = (.decode, now, d, members.count)
    }

    private func preempt(_ id: UInt64) {
        guard var s = seqs[id] else { return }
        preemptions += 1
        if let a = s.alloc { pool.release(a) }
        s.alloc = nil
        running.removeAll { $0 == id }
        if s.request.kind == .decodeOnly {
            seqs[id] = nil
            pending.append(.preempted(id: id, generated: s.generated, requeued: false, time: now))
            return
        }
        // recompute later: the prompt becomes prompt + generated
        let gen = OutputGenerator(seed: s.request.seed)
        let extra = (s.request.preGenerated..<s.generated).map { gen.id(at: $0) }
        s.request.prompt += extra
        s.request.preGenerated = s.generated
        s.phase = .waiting
        seqs[id] = s
        queue.insert(id, at: 0)
        pending.append(.preempted(id: id, generated: s.generated, requeued: true, time: now))
    }

    private func complete(_ s: (kind: StepKind, end: Double, members: [UInt64])) {
        step = nil
        for id in s.members {
            guard var q = seqs[id], q.phase == .running, q.alloc != nil else { continue }
            let index = q.generated
            q.generated += 1
            var reason: FinishReason?
            if let k = q.request.eosAfter, q.generated >= k, k < q.target { reason = .eos }
            else if q.generated >= q.target { reason = .length }
            else if configuration.eosProbability > 0, rng.unit() < configuration.eosProbability { reason = .eos }
            seqs[id] = q
            pending.append(.token(id: id, index: index, finish: reason, time: s.end))
            if reason != nil {
                finish(id)
            } else if q.request.kind == .prefillOnly {
                seqs[id]?.phase = .parked
                running.removeAll { $0 == id }
            }
        }
    }

    private func finish(_ id: UInt64) {
        guard let s = seqs.removeValue(forKey: id) else { return }
        if let a = s.alloc { pool.release(a) }
        running.removeAll { $0 == id }
        queue.removeAll { $0 == id }
        if let st = step, st.members.contains(id) {
            step = (st.kind, st.end, st.members.filter { $0 != id })
        }
    }
}
