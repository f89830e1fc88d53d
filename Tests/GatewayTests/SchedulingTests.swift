import MSCore
import Testing

@testable import Gateway

private func mixed(_ ids: [InstanceID], slots: Int = 10, blocks: Int = 100) -> InstanceSnapshot {
    InstanceSnapshot(ids.map { InstanceInfo(id: $0, role: .mixed, totalSlots: slots, totalBlocks: blocks) })
}

private func chat(_ messages: [String]) -> RequestFeatures {
    let dumps = messages.map { "{\"role\":\"user\",\"content\":\(JSON.quoted($0))}" }
    return RequestFeatures(dialect: .openAI, prompt: PromptFeatures(renderedPrompt: [], size: .bytes(0), messageDumps: dumps))
}

private func text(_ s: String, dialect: Dialect = .tgi) -> RequestFeatures {
    RequestFeatures(dialect: dialect, prompt: PromptFeatures(renderedPrompt: Array(s.utf8), size: .bytes(s.utf8.count)))
}

private func single(_ d: SchedulingDecision?) -> InstanceID? {
    if case .single(let id)? = d { return id }
    return nil
}

@Suite("xxh64")
struct HashingTests {
    @Test("matches libxxhash XXH3_64bits_withSeed")
    func vectors() {
        #expect(xxh64("", seed: 0) == 0x2D06_8005_38D3_94C2)
        #expect(xxh64("abc", seed: 0) == 0x78AF_5F94_892F_3950)
        #expect(xxh64("abc", seed: 42) == 0xD843_8DEF_21BB_DCC3)
        #expect(xxh64(Array("abc".utf8), seed: 42) == 0xD843_8DEF_21BB_DCC3)
        #expect(Array("abc".utf8).withUnsafeBytes { xxh64($0, seed: 42) } == 0xD843_8DEF_21BB_DCC3)
    }
}

@Suite("round_robin")
struct RoundRobinTests {
    @Test("single_node, 3 nodes, requests 1–6: 1,2,3 distinct; 4,5,6 repeat them (case 31)")
    func case31() {
        var p = RoundRobinPolicy()
        let snap = mixed([7, 8, 9])
        let picks = (0..<6).map { _ in single(p.selectSingle(snap)) }
        #expect(Set(picks[0..<3].compactMap { $0 }).count == 3)
        #expect(picks[3] == picks[0] && picks[4] == picks[1] && picks[5] == picks[2])
        // The cursor advances before use: the first pick is index 1.
        #expect(picks == [8, 9, 7, 8, 9, 7])
    }

    @Test("unavailable instances are skipped; a full circle with none available fails")
    func skipsUnavailable() {
        var p = RoundRobinPolicy()
        var infos = mixed([1, 2, 3]).instances
        infos[1].availSlots = 0
        infos[2].availBlocks = 0
        let snap = InstanceSnapshot(infos)
        #expect(single(p.selectSingle(snap)) == 1)
        #expect(single(p.selectSingle(snap)) == 1)
        infos[0].availSlots = 0
        #expect(p.selectSingle(InstanceSnapshot(infos)) == nil)
        #expect(p.selectSingle(InstanceSnapshot([])) == nil)
    }

    @Test("PD with 3 Ps: P rotates with period 3, D comes from the chosen P's peers (case 34)")
    func case34() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill), InstanceInfo(id: 1, role: .prefill), InstanceInfo(id: 2, role: .prefill),
            InstanceInfo(id: 10, role: .decode, peers: [0, 1]),
            InstanceInfo(id: 11, role: .decode, peers: [2]),
            InstanceInfo(id: 12, role: .decode, peers: [0]),
        ])
        var p = RoundRobinPolicy()
        let picks = (0..<6).map { _ in p.selectPair(snap) }
        #expect(picks == [
            .pair(prefill: 1, decode: 10), .pair(prefill: 2, decode: 11), .pair(prefill: 0, decode: 10),
            .pair(prefill: 1, decode: 10), .pair(prefill: 2, decode: 11), .pair(prefill: 0, decode: 12),
        ])
        for case .pair(let pid, let did)? in picks {
            #expect(snap[did]!.peers.contains(pid))
        }
    }

    @Test("PD: if the chosen P's next D is unavailable, the next P is tried")
    func pdUnavailableD() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill), InstanceInfo(id: 1, role: .prefill),
            InstanceInfo(id: 10, role: .decode, availSlots: 0, peers: [1]),
            InstanceInfo(id: 11, role: .decode, peers: [0]),
        ])
        var p = RoundRobinPolicy()
        #expect(p.selectPair(snap) == .pair(prefill: 0, decode: 11))
        let noD = InstanceSnapshot([InstanceInfo(id: 0, role: .prefill)])
        #expect(p.selectPair(noD) == nil)
    }
}

@Suite("cache_affinity")
struct CacheAffinityTests {
    @Test("B=[m1,m2,m3] follows A=[m1]; with 0 free slots there it goes elsewhere (case 32)")
    func case32() {
        var p = CacheAffinityPolicy(cacheSize: 100, slotsThresh: 0.05, blockThresh: 0.05)
        let snap = mixed([1, 2, 3])
        let a = single(p.select(chat(["m1"]), snapshot: snap))
        #expect(a == 2)  // round-robin's first pick
        let other = single(p.select(chat(["zzz"]), snapshot: snap))
        #expect(other == 3)
        let b = single(p.select(chat(["m1", "m2", "m3"]), snapshot: snap))
        #expect(b == a)

        var q = CacheAffinityPolicy(cacheSize: 100, slotsThresh: 0.05, blockThresh: 0.05)
        let a2 = single(q.select(chat(["m1"]), snapshot: snap))!
        var infos = snap.instances
        infos[snap.position(of: a2)!].availSlots = 0
        let b2 = single(q.select(chat(["m1", "m2", "m3"]), snapshot: InstanceSnapshot(infos)))
        #expect(b2 != nil && b2 != a2)
    }

    @Test("the renamed key carries the conversation on: [m1..m5] follows [m1..m3]")
    func renameChain() {
        var p = CacheAffinityPolicy(cacheSize: 100, slotsThresh: 0.05, blockThresh: 0.05)
        let snap = mixed([1, 2, 3])
        let a = single(p.select(chat(["m1"]), snapshot: snap))
        _ = p.select(chat(["x"]), snapshot: snap)
        #expect(single(p.select(chat(["m1", "m2", "m3"]), snapshot: snap)) == a)
        _ = p.select(chat(["y"]), snapshot: snap)
        #expect(single(p.select(chat(["m1", "m2", "m3", "m4", "m5"]), snapshot: snap)) == a)
        #expect(p.cachedKeys == 3)  // [x], [y], and the renamed conversation key
    }

    @Test("cache_size=1: [a], [b], then [a,b,c] has no affinity because [a] was evicted (case 33)")
    func case33() {
        let snap = mixed([1, 2, 3])
        var small = CacheAffinityPolicy(cacheSize: 1, slotsThresh: 0.05, blockThresh: 0.05)
        let a = single(small.select(chat(["a"]), snapshot: snap))
        let b = single(small.select(chat(["b"]), snapshot: snap))
        let abc = single(small.select(chat(["a", "b", "c"]), snapshot: snap))
        #expect([a, b, abc] == [2, 3, 1])  // plain round-robin: abc is not sent to a's node
        // Control: with room for both keys, [a,b,c] follows [a].
        var big = CacheAffinityPolicy(cacheSize: 2, slotsThresh: 0.05, blockThresh: 0.05)
        let a2 = single(big.select(chat(["a"]), snapshot: snap))
        _ = big.select(chat(["b"]), snapshot: snap)
        #expect(single(big.select(chat(["a", "b", "c"]), snapshot: snap)) == a2)
    }

    @Test("non-OpenAI dialects use round-robin with the thresholds")
    func otherDialects() {
        var p = CacheAffinityPolicy(cacheSize: 100, slotsThresh: 0.5, blockThresh: 0.05)
        var infos = mixed([1, 2, 3]).instances
        infos[1].availSlots = 5  // 5/10 is not > 0.5
        let snap = InstanceSnapshot(infos)
        let picks = (0..<4).map { _ in single(p.select(text("hello"), snapshot: snap)) }
        #expect(picks == [3, 1, 3, 1])
    }
}

@Suite("least_load")
struct LeastLoadTests {
    @Test("fewest in flight wins; ties go to more free slots, then registration order")
    func ranking() {
        var infos = mixed([1, 2, 3]).instances
        infos[2].availSlots = 8
        let snap = InstanceSnapshot(infos)
        var p = LeastLoadPolicy()
        #expect(p.select(snap, load: LoadCounters([1: 3, 2: 1, 3: 2]), pd: false) == .single(2))
        #expect(p.select(snap, load: LoadCounters([1: 1, 2: 1, 3: 1]), pd: false) == .single(1))
        infos[0].availSlots = 4
        #expect(p.select(InstanceSnapshot(infos), load: LoadCounters([1: 1, 2: 1, 3: 1]), pd: false) == .single(2))
    }

    @Test("equally loaded instances take turns (no pile-up on the first at idle)")
    func tiesRotate() {
        var p = LeastLoadPolicy()
        let snap = mixed([1, 2, 3])
        var picks: [SchedulingDecision?] = []
        for _ in 0..<3 { picks.append(p.select(snap, load: LoadCounters(), pd: false)) }
        #expect(Set(picks.compactMap { $0 }) == [.single(1), .single(2), .single(3)])
    }

    @Test("offline and resource-less instances are skipped")
    func eligibility() {
        var infos = mixed([1, 2, 3]).instances
        infos[0].offline = true
        infos[1].availBlocks = 0
        var p = LeastLoadPolicy()
        #expect(p.select(InstanceSnapshot(infos), load: LoadCounters([3: 50]), pd: false) == .single(3))
        infos[2].offline = true
        #expect(p.select(InstanceSnapshot(infos), load: LoadCounters(), pd: false) == nil)
    }

    @Test("PD: least-loaded P that has a D, then its least-loaded D")
    func pd() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill), InstanceInfo(id: 1, role: .prefill),
            InstanceInfo(id: 10, role: .decode, peers: [0]), InstanceInfo(id: 11, role: .decode, peers: [0]),
            InstanceInfo(id: 12, role: .decode, peers: [1], offline: true),
        ])
        var p = LeastLoadPolicy()
        #expect(p.select(snap, load: LoadCounters([0: 5, 1: 0, 10: 2, 11: 1]), pd: true) == .pair(prefill: 0, decode: 11))
    }

    @Test("tokenizer target: fewest tasks, ties to the first")
    func tokenizer() {
        let snap = mixed([4, 5, 6])
        #expect(Scheduler.tokenizerTarget(snap, load: LoadCounters([4: 2, 5: 1, 6: 1])) == 5)
        #expect(Scheduler.tokenizerTarget(snap, load: LoadCounters()) == 4)
        #expect(Scheduler.tokenizerTarget(InstanceSnapshot([]), load: LoadCounters()) == nil)
    }
}

@Suite("prefix_affinity")
struct PrefixAffinityTests {
    let shared = String(repeating: "S", count: 64)

    @Test("block hashes are chained over full blocks only")
    func blockHashes() {
        let a = PrefixAffinityPolicy.blockHashes(Array("aaaabbbbcc".utf8), blockSize: 4, seed: 1)
        #expect(a.count == 2)
        #expect(a[0] == xxh64("aaaa", seed: 1) && a[1] == xxh64("bbbb", seed: a[0]))
        let b = PrefixAffinityPolicy.blockHashes(Array("xxxxbbbb".utf8), blockSize: 4, seed: 1)
        #expect(b[1] != a[1])  // same block text, different prefix
        #expect(PrefixAffinityPolicy.blockHashes(Array("abc".utf8), blockSize: 4, seed: 1).isEmpty)
    }

    @Test("a request sharing a prefix goes where that prefix went, the longest match wins")
    func longestMatch() throws {
        var p = PrefixAffinityPolicy(blockSize: 16, blocksPerInstance: 100, loadMargin: 2)
        let snap = mixed([1, 2, 3])
        let firstChoice = p.select(text(shared + "tail-one-xxxxxxx"), snapshot: snap, load: LoadCounters(), pd: false)
        let first = try #require(firstChoice)
        #expect(first.decision == .single(1) && first.matchedBlocks == 0 && first.promptBlocks == 5)
        // Another prompt, different prefix, while 1 is busier: goes to the least loaded (2).
        let otherChoice = p.select(text(String(repeating: "O", count: 64)), snapshot: snap,
                                          load: LoadCounters([1: 1]), pd: false)
        let other = try #require(otherChoice)
        #expect(other.decision == .single(2))
        // Shares 4 blocks with the first: back to 1 despite its load (within the margin).
        let againChoice = p.select(text(shared + "tail-two-yyyyyyy"), snapshot: snap,
                                          load: LoadCounters([1: 2, 2: 1]), pd: false)
        let again = try #require(againChoice)
        #expect(again.decision == .single(1) && again.matchedBlocks == 4)
        // Longer match on 2 beats a shorter one on 1.
        _ = p.select(text(shared + "tail-two-yyyyyyy" + "more-more-more-m"), snapshot: snap,
                     load: LoadCounters([1: 9]), pd: false)  // over the margin: goes to 2
        let longestChoice = p.select(text(shared + "tail-two-yyyyyyy" + "more-more-more-m"), snapshot: snap,
                                            load: LoadCounters([1: 0, 2: 1]), pd: false)
        let longest = try #require(longestChoice)
        #expect(longest.decision == .single(2) && longest.matchedBlocks == 6)
    }

    @Test("load margin: an affine instance loaded beyond the margin loses to the least loaded")
    func margin() throws {
        var p = PrefixAffinityPolicy(blockSize: 16, blocksPerInstance: 100, loadMargin: 2)
        let snap = mixed([1, 2])
        _ = p.select(text(shared), snapshot: snap, load: LoadCounters(), pd: false)
        let withinChoice = p.select(text(shared), snapshot: snap, load: LoadCounters([1: 2]), pd: false)
        let within = try #require(withinChoice)
        #expect(within.decision == .single(1))
        let beyondChoice = p.select(text(shared), snapshot: snap, load: LoadCounters([1: 3]), pd: false)
        let beyond = try #require(beyondChoice)
        #expect(beyond.decision == .single(2) && beyond.matchedBlocks == 0)
    }

    @Test("memory is bounded per instance (LRU) and forgotten when an instance leaves")
    func boundedMemory() throws {
        var p = PrefixAffinityPolicy(blockSize: 16, blocksPerInstance: 3, loadMargin: 0)
        let snap = mixed([1])
        _ = p.select(text(shared), snapshot: snap, load: LoadCounters(), pd: false)
        #expect(p.rememberedBlocks(1) == 3)
        let hashes = PrefixAffinityPolicy.blockHashes(Array(shared.utf8), blockSize: 16, seed: p.seed)
        // The oldest block (the first) was evicted, so the leading match is 0.
        #expect(p.matchedBlocks(1, hashes) == 0)
        _ = p.select(text("short"), snapshot: mixed([2]), load: LoadCounters(), pd: false)
        #expect(p.rememberedBlocks(1) == 0)
    }

    @Test("PD: P by prefix, D least-loaded among its peers; nothing eligible gives nil")
    func pd() throws {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill), InstanceInfo(id: 1, role: .prefill),
            InstanceInfo(id: 10, role: .decode, peers: [0]), InstanceInfo(id: 11, role: .decode, peers: [1]),
            InstanceInfo(id: 12, role: .decode, peers: [1]),
        ])
        var p = PrefixAffinityPolicy(blockSize: 16, blocksPerInstance: 100, loadMargin: 4)
        let aChoice = p.select(text(shared), snapshot: snap, load: LoadCounters([0: 1]), pd: true)
        let a = try #require(aChoice)
        #expect(a.decision == .pair(prefill: 1, decode: 11))
        let bChoice = p.select(text(shared), snapshot: snap, load: LoadCounters([0: 0, 1: 3, 11: 1]), pd: true)
        let b = try #require(bChoice)
        #expect(b.decision == .pair(prefill: 1, decode: 12) && b.matchedBlocks == 4)
        let none = p.select(text(shared), snapshot: InstanceSnapshot([]), load: LoadCounters(), pd: true)
        #expect(none == nil)
    }
}

@Suite("Scheduler facade")
struct SchedulerFacadeTests {
    @Test("builds the configured policy")
    func fromConfig() {
        var c = CoordinatorConfig.Scheduler()
        c.deployMode = .singleNode
        c.schedulerType = .default
        c.algorithm = .roundRobin
        var s = Scheduler(config: c)
        let snap = mixed([1, 2])
        let picks = (0..<3).map { _ in s.select(text("x"), snapshot: snap, load: LoadCounters()) }
        #expect(picks == [.single(2), .single(1), .single(2)])
        c.algorithm = .leastLoad
        var l = Scheduler(config: c)
        #expect(l.select(text("x"), snapshot: snap, load: LoadCounters([1: 4])) == .single(2))
    }
}

@Suite("LRUCache")
struct LRUCacheTests {
    @Test("evicts the oldest; peek does not refresh, put and touch do")
    func order() {
        var c = LRUCache<Int, String>(capacity: 2)
        c.put(1, "a")
        c.put(2, "b")
        #expect(c.peek(1) == "a")
        let evicted1 = c.put(3, "c")
        #expect(evicted1 == 1)  // peek did not refresh 1
        let touched = c.touch(2)
        #expect(touched)
        let evicted3 = c.put(4, "d")
        #expect(evicted3 == 3)
        #expect(c.keys == [2, 4])
        let removed = c.remove(2)
        #expect(removed == "b" && c.count == 1)
        c.put(5, "e")
        c.put(4, "d2")
        #expect(c.keys == [5, 4] && c.peek(4) == "d2")
    }
}

@Suite("SchedulingHost")
struct SchedulingHostTests {
    @Test("a cluster-scoped policy: concurrent callers on any loop still get a perfect round-robin split")
    func concurrentRoundRobin() async {
        var c = CoordinatorConfig.Scheduler()
        c.deployMode = .singleNode
        c.schedulerType = .default
        c.algorithm = .roundRobin
        let host = SchedulingHost(config: c)
        let loop = EventLoop()
        defer { loop.stop() }
        let snap = mixed([1, 2, 3])
        let picks = await withTaskGroup(of: SchedulingDecision?.self) { group in
            for _ in 0..<300 {
                group.addTask { host.select(text("x"), snapshot: snap, load: LoadCounters(), on: loop) }
            }
            var all: [SchedulingDecision?] = []
            for await p in group { all.append(p) }
            return all
        }
        var counts: [InstanceID: Int] = [:]
        for case .single(let id)? in picks { counts[id, default: 0] += 1 }
        #expect(counts == [1: 100, 2: 100, 3: 100])
        #expect(host.loopCopies == 0)
    }

    @Test("a loop-scoped policy: each loop owns its copy, so one loop's picks do not move another's rotation")
    func perLoopState() async {
        var c = CoordinatorConfig.Scheduler()
        c.deployMode = .singleNode
        c.schedulerType = .default
        c.algorithm = .leastLoad
        let host = SchedulingHost(config: c)
        let loops = [EventLoop(), EventLoop()]
        defer { for l in loops { l.stop() } }
        let snap = mixed([1, 2])
        func picks(on loop: EventLoop, _ n: Int) async -> [SchedulingDecision?] {
            await withCheckedContinuation { k in
                loop.execute { k.resume(returning: (0..<n).map { _ in host.select(text("x"), snapshot: snap, load: LoadCounters(), on: loop) }) }
            }
        }
        let a = await picks(on: loops[0], 3)
        let b = await picks(on: loops[1], 3)
        // equal idle instances take turns on each loop, starting from the same place
        #expect(a == [.single(2), .single(1), .single(2)])
        #expect(b == a)
        #expect(host.loopCopies == 2)
    }
}
