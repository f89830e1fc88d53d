import Testing
@testable import Simulator

@Suite struct TokenizerTests {
    @Test func asciiIsFourBytesPerToken() {
        #expect(Tokenizer.encode("abcdefghij").count == 3)
        #expect(Tokenizer.encode("").isEmpty)
        #expect(Tokenizer.encode("abcd") == [fnv1a32(Array("abcd".utf8)) % 151_936])
    }

    @Test func cjkIsOneTokenPerCharacter() {
        // each CJK scalar is 3 bytes, so two never share a 4-byte chunk
        #expect(Tokenizer.encode("你好世界").count == 4)
        // 'a' (1) + '你' (3) fit one chunk
        #expect(Tokenizer.encode("a你b").count == 2)
    }

    @Test func sharedBytePrefixSharesTokens() {
        let a = Tokenizer.encode("hello world, how are you")
        let b = Tokenizer.encode("hello world, how is it")
        #expect(Array(a.prefix(3)) == Array(b.prefix(3)))
    }

    @Test func chatTemplateExtendsHistory() {
        let one = Tokenizer.chatPrompt([("user", "hi")])
        #expect(one == "<|user|>\nhi\n<|assistant|>\n")
        let two = Tokenizer.chatPrompt([("user", "hi"), ("assistant", "yo"), ("user", "more")])
        #expect(two.hasPrefix("<|user|>\nhi\n"))
    }

    @Test func outputIsDeterministic() {
        let g = OutputGenerator(seed: 42)
        #expect(g.text(at: 0) == OutputGenerator(seed: 42).text(at: 0))
        #expect(!g.text(at: 0).hasPrefix(" "))
        #expect(g.text(at: 1).hasPrefix(" "))
        #expect(g.id(at: 3) < 151_936)
    }
}

@Suite struct BlockPoolTests {
    func prompt(_ seed: UInt32, _ n: Int) -> [UInt32] { (0..<UInt32(n)).map { $0 &* 7 &+ seed &* 1000 } }

    @Test func prefixHitsAreCountedAndCapped() {
        var pool = BlockPool(blockSize: 16, totalBlocks: 64)
        let p = prompt(1, 40)  // 2 full blocks + 8
        let k = pool.keys(for: p)
        #expect(k.count == 2)
        let a = pool.allocate(keys: k, blocks: 3, countLookup: 40)!
        #expect(a.keys.count == 2 && a.privateBlocks == 1)
        #expect(pool.hitTokens == 0 && pool.lookedUpTokens == 40)
        pool.release(a)
        #expect(pool.evictableBlocks == 2 && pool.freeBlocks == 62 && pool.availableBlocks == 64)
        #expect(pool.cachedTokens(keys: k, length: 40) == 32)
        // a prompt of exactly 32 tokens hitting both blocks is capped at n − 1
        #expect(pool.cachedTokens(keys: k, length: 32) == 31)
        _ = pool.allocate(keys: k, blocks: 3, countLookup: 40)!
        #expect(pool.hitTokens == 32 && pool.lookedUpTokens == 80)
        #expect(pool.evictableBlocks == 0)
    }

    @Test func evictionTakesTheLeastRecentlyUsedAtCapacity() {
        var pool = BlockPool(blockSize: 16, totalBlocks: 4)
        let a = pool.keys(for: prompt(1, 32)), b = pool.keys(for: prompt(2, 32)), c = pool.keys(for: prompt(3, 32))
        let x = pool.allocate(keys: a, blocks: 2)!
        let y = pool.allocate(keys: b, blocks: 2)!
        #expect(pool.availableBlocks == 0)
        #expect(pool.allocate(keys: c, blocks: 2) == nil)  // everything held: no room
        pool.release(x)  // a becomes LRU-older
        pool.release(y)
        #expect(pool.availableBlocks == 4 && pool.freeBlocks == 0)
        _ = pool.allocate(keys: c, blocks: 2)!
        #expect(pool.evictions == 2)
        #expect(!pool.contains(a[0]) && !pool.contains(a[1]))
        #expect(pool.contains(b[0]) && pool.contains(b[1]))
    }

    @Test func touchingABlockMakesItRecent() {
        var pool = BlockPool(blockSize: 16, totalBlocks: 2)
        let a = pool.keys(for: prompt(1, 16)), b = pool.keys(for: prompt(2, 16)), c = pool.keys(for: prompt(3, 16))
        pool.release(pool.allocate(keys: a, blocks: 1)!)
        pool.release(pool.allocate(keys: b, blocks: 1)!)
        pool.release(pool.allocate(keys: a, blocks: 1)!)  // a is now the most recent
        _ = pool.allocate(keys: c, blocks: 1)!
        #expect(pool.contains(a[0]) && !pool.contains(b[0]))
    }

    @Test func shrinkEvictsAndGrowFails() {
        var pool = BlockPool(blockSize: 16, totalBlocks: 4)
        var x = pool.allocate(keys: [], blocks: 3)!
        pool.resize(totalBlocks: 3)
        #expect(pool.totalBlocks == 3 && pool.availableBlocks == 0)
        let grew = pool.grow(&x)
        #expect(!grew)
    }
}

@Suite struct EngineTests {
    func engine(_ p: ModelProfile = .tiny, speedup: Double = 1) -> Engine {
        var prof = p
        prof.sigma = 0; prof.stallProbability = 0
        return Engine(configuration: EngineConfiguration(profile: prof, speedup: speedup))
    }

    func text(_ n: Int, salt: String = "") -> [UInt32] {
        // n distinct tokens
        (0..<n).map { UInt32(($0 &* 2654435761 &+ salt.utf8.count &* 97) % 151_936) }
    }

    /// Runs until `id` has its first token; returns that token's time.
    func firstTokenTime(_ e: Engine, _ id: UInt64) -> Double? {
        var t = e.now
        for _ in 0..<10_000 {
            guard let n = e.nextEventTime else { return nil }
            t = n
            for ev in e.advance(to: t) {
                if case .token(let i, 0, _, let at) = ev, i == id { return at }
            }
        }
        return nil
    }

    func drain(_ e: Engine, until limit: Double = 1e9) -> [EngineEvent] {
        var all: [EngineEvent] = []
        while let n = e.nextEventTime, n <= limit { all += e.advance(to: n) }
        return all
    }

    @Test func prefillTimeFallsWhenThePrefixIsCached() throws {
        let e = engine(.llama8b)
        let system = text(1000)
        let p1 = system + text(10, salt: "a").map { $0 ^ 1 }
        let p2 = system + text(10, salt: "bb").map { $0 ^ 2 }
        try e.submit(EngineRequest(id: 1, prompt: p1, maxNewTokens: 1), now: 0)
        let t1 = try #require(firstTokenTime(e, 1))
        #expect(abs(t1 - ModelProfile.llama8b.prefillTime([(1010, 1010)])) < 1e-9)
        let start = e.now
        try e.submit(EngineRequest(id: 2, prompt: p2, maxNewTokens: 1), now: start)
        #expect(e.cachedTokens(of: 2) == 896)
        let t2 = try #require(firstTokenTime(e, 2)) - start
        #expect(abs((t1 - t2) - 58.28) < 0.1)
        #expect(e.pool.hitTokens == 896)
        #expect(e.pool.lookedUpTokens == 2020)
    }

    @Test func interTokenLatencyGrowsWithBatchSize() throws {
        func itl(batch: Int) throws -> Double {
            let e = engine()
            for i in 0..<batch {
                try e.submit(EngineRequest(id: UInt64(i + 1), prompt: text(20, salt: String(repeating: "x", count: i)), maxNewTokens: 4), now: 0)
            }
            let events = drain(e)
            let times = events.compactMap { ev -> Double? in
                if case .token(1, let idx, _, let t) = ev, idx <= 2 { return t }
                return nil
            }
            #expect(times.count == 3)
            return times[2] - times[1]
        }
        let one = try itl(batch: 1), four = try itl(batch: 4)
        // tiny: δ₀ 5 + δ₁ 1·|R| + δ₂ 0.5·ΣL/1000, L = 22 at the third token
        #expect(abs(one - (5 + 1 + 0.5 * 22 / 1000)) < 1e-9)
        #expect(abs(four - (5 + 4 + 0.5 * 88 / 1000)) < 1e-9)
        #expect(four > one)
    }

    @Test func theNinthRequestWaitsWhenSlotsRunOut() throws {
        let e = engine()
        for i in 0..<9 {
            try e.submit(EngineRequest(id: UInt64(i + 1), prompt: text(10, salt: String(i)), maxNewTokens: 50), now: 0)
        }
        // the first request started alone on an idle engine; the others queue behind its prefill
        #expect(e.runningCount == 1 && e.waitingCount == 8)
        _ = drain(e, until: 20)
        #expect(e.runningCount == 8)
        #expect(e.waitingCount == 1)
        #expect(e.availableSlots == 0)
        // every decode step now covers 8 sequences: δ₀ + 8δ₁ + δ₂·ΣL/1000
        _ = e.advance(to: e.nextEventTime!)
        let s = try #require(e.lastStep)
        #expect(s.kind == .decode && s.batch == 8)
        let lengths = (1...8).map { 10 + (e.generated(of: UInt64($0)) ?? 0) }
        #expect(abs(s.duration - (5 + 8 + 0.5 * Double(lengths.reduce(0, +)) / 1000)) < 1e-9)
    }

    @Test func queuedRequestRunsWhenASlotFrees() throws {
        let e = engine()
        for i in 0..<9 {
            try e.submit(EngineRequest(id: UInt64(i + 1), prompt: text(10, salt: String(i)), maxNewTokens: i == 0 ? 2 : 50), now: 0)
        }
        var sawNinth = false
        for _ in 0..<50 where !sawNinth {
            for ev in e.advance(to: e.nextEventTime!) { if case .token(9, 0, _, _) = ev { sawNinth = true } }
        }
        #expect(sawNinth)
    }

    @Test func outputLengthAndFinishReasons() throws {
        let e = engine()
        try e.submit(EngineRequest(id: 1, prompt: text(10), maxNewTokens: 5), now: 0)
        try e.submit(EngineRequest(id: 2, prompt: text(12), maxNewTokens: 5, eosAfter: 3), now: 0)
        let ev = drain(e)
        let one = ev.filter { if case .token(1, _, _, _) = $0 { return true }; return false }
        #expect(one.count == 5)
        #expect(one.last == .token(id: 1, index: 4, finish: .length, time: { if case .token(_, _, _, let t) = one.last! { return t }; return 0 }()))
        let two = ev.compactMap { e -> FinishReason? in if case .token(2, 2, let f, _) = e { return f }; return nil }
        #expect(two == [.eos])
        #expect(e.isIdle && e.pool.usedBlocks == 0)
        #expect(e.outputLimit(requested: 1000, promptLength: 10) == 128)
        #expect(e.outputLimit(requested: 1000, promptLength: 500) == 12)
    }

    @Test func promptLimitsAreEnforced() {
        let e = engine()
        #expect(throws: EngineRejection.promptTooLong(length: 385, limit: 384)) {
            try e.submit(EngineRequest(id: 1, prompt: text(385), maxNewTokens: 1), now: 0)
        }
    }

    @Test func timeScaleShortensEveryDelay() throws {
        func timeline(_ s: Double) throws -> [Double] {
            let e = engine(speedup: s)
            try e.submit(EngineRequest(id: 1, prompt: text(40), maxNewTokens: 3), now: 0)
            try e.submit(EngineRequest(id: 2, prompt: text(40, salt: "z"), maxNewTokens: 2, preGenerated: 1, kind: .decodeOnly), now: 0)
            return drain(e).map {
                switch $0 {
                case .token(_, _, _, let t), .kvPulled(_, let t), .preempted(_, _, _, let t): return t
                }
            }
        }
        let slow = try timeline(1), fast = try timeline(10)
        #expect(slow.count == fast.count && slow.count == 5)
        for (a, b) in zip(slow, fast) { #expect(abs(a / 10 - b) < 1e-9) }
    }

    @Test func prefillOnlyParksUntilReleased() throws {
        let e = engine()
        try e.submit(EngineRequest(id: 7, prompt: text(40), maxNewTokens: 10, kind: .prefillOnly), now: 0)
        let ev = drain(e)
        #expect(ev == [.token(id: 7, index: 0, finish: nil, time: 2 + 0.02 * 40)])
        #expect(e.parkedCount == 1 && e.pool.usedBlocks == 3 && e.runningCount == 0)
        #expect(e.release(7))
        #expect(e.pool.usedBlocks == 0 && e.pool.evictableBlocks == 2)
    }

    @Test func decodeOnlyPullsKVThenDecodes() throws {
        let e = engine()
        try e.submit(EngineRequest(id: 3, prompt: text(100), maxNewTokens: 3, preGenerated: 1, kind: .decodeOnly), now: 0)
        let kv = ModelProfile.tiny.kvTransferTime(tokens: 100)
        #expect(e.nextEventTime == kv)
        let ev = drain(e)
        #expect(ev.first == .kvPulled(id: 3, time: kv))
        let idx = ev.compactMap { if case .token(3, let i, _, _) = $0 { return i }; return nil }
        #expect(idx == [1, 2])
    }

    @Test func decodeRunsOutOfBlocksPreemptsTheNewest() throws {
        var p = ModelProfile.tiny
        p.totalBlocks = 8
        let e = engine(p)
        // two sequences of 48 tokens: 3 blocks each (6 of 8); growth past 64 needs a 5th block each
        try e.submit(EngineRequest(id: 1, prompt: text(48), maxNewTokens: 40), now: 0)
        try e.submit(EngineRequest(id: 2, prompt: text(48, salt: "q"), maxNewTokens: 40, preGenerated: 1, kind: .decodeOnly), now: 0)
        let ev = drain(e, until: 2000)
        let pre = ev.compactMap { if case .preempted(let id, let g, let rq, _) = $0 { return (id, g, rq) }; return nil }
        #expect(pre.count >= 1)
        #expect(pre.first?.0 == 2 && pre.first?.2 == false)
        #expect(e.preemptions >= 1)
    }
}

@Suite struct JitterTests {
    func durations(seed: UInt64, sigma: Double) throws -> [Double] {
        var p = ModelProfile.tiny
        p.sigma = sigma
        let e = Engine(configuration: EngineConfiguration(profile: p, seed: seed))
        try e.submit(EngineRequest(id: 1, prompt: Array(0..<40), maxNewTokens: 30), now: 0)
        var out: [Double] = []
        while let n = e.nextEventTime {
            _ = e.advance(to: n)
            if let s = e.lastStep, out.last != s.duration { out.append(s.duration) }
        }
        return out
    }

    @Test func jitterIsSeededAndBounded() throws {
        let a = try durations(seed: 7, sigma: 0.3), b = try durations(seed: 7, sigma: 0.3), c = try durations(seed: 8, sigma: 0.3)
        #expect(a == b)
        #expect(a != c)
        let flat = try durations(seed: 7, sigma: 0)
        // every step stays ≥ 0.3 × its jitter-free time
        for (x, y) in zip(a, flat) { #expect(x >= 0.3 * y - 1e-9) }
    }

    @Test func stallsMultiplyTheStep() throws {
        var p = ModelProfile.tiny
        p.stallProbability = 1; p.stallFactor = 4
        let e = Engine(configuration: EngineConfiguration(profile: p))
        try e.submit(EngineRequest(id: 1, prompt: Array(0..<10), maxNewTokens: 1), now: 0)
        #expect(e.nextEventTime == 4 * (2 + 0.02 * 10))
    }
}

@Suite struct EngineInvariantTests {
    /// Random traffic (seeded): blocks are conserved, nothing leaks once everything ends.
    @Test(arguments: [1, 2, 3, 4]) func blocksAreConserved(_ seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var p = ModelProfile.tiny
        p.totalBlocks = 24
        let e = Engine(configuration: EngineConfiguration(profile: p, seed: seed))
        var live: [UInt64] = []
        var t = 0.0
        for id in UInt64(1)...300 {
            t += Double(rng.next() % 20)
            let events = e.advance(to: t)
            for ev in events {
                if case .token(let i, _, let f?, _) = ev { live.removeAll { $0 == i }; _ = f }
                if case .preempted(let i, _, false, _) = ev { live.removeAll { $0 == i } }
            }
            let pool = e.pool
            #expect(pool.usedBlocks + pool.freeBlocks + pool.evictableBlocks == pool.totalBlocks)
            #expect(pool.usedBlocks >= 0 && pool.freeBlocks >= 0)
            #expect(e.runningCount <= p.maxBatchSize)
            let r = rng.next() % 10
            if r < 6 {
                let n = 5 + Int(rng.next() % 60)
                let shared = rng.next() % 2 == 0
                let prompt = (0..<UInt32(n)).map { shared ? $0 : ($0 &+ UInt32(id) &* 1000) }
                let kind: SequenceKind = [.mixed, .prefillOnly, .decodeOnly][Int(rng.next() % 3)]
                try e.submit(EngineRequest(id: id, prompt: prompt, maxNewTokens: 1 + Int(rng.next() % 40), preGenerated: kind == .decodeOnly ? 1 : 0, kind: kind), now: t)
                live.append(id)
            } else if r < 8, let victim = live.randomElement(using: &rng) {
                e.cancel(victim)
                live.removeAll { $0 == victim }
            } else if let victim = live.randomElement(using: &rng) {
                e.release(victim)
            }
        }
        for id in live { e.cancel(id) }
        _ = e.advance(to: t + 100_000)
        #expect(e.isIdle && e.waitingCount == 0 && e.parkedCount == 0)
        #expect(e.pool.usedBlocks == 0 && e.pool.privateBlocks == 0)
        #expect(e.pool.freeBlocks + e.pool.evictableBlocks == 24)
    }
}
