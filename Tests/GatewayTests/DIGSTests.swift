import Testing

@testable import Gateway

private func features(_ size: InputSize) -> RequestFeatures {
    RequestFeatures(dialect: .openAI, prompt: PromptFeatures(renderedPrompt: [], size: size))
}

private func config(selectType: Int = 2, reordering: Int = 1, loadCost: [Int] = [1, 0],
                    singleNodeMax: Int = 1000) -> DIGSScheduler.Configuration {
    var c = DIGSScheduler.Configuration()
    c.selectType = selectType
    c.reorderingType = reordering
    c.loadCostValues = loadCost
    c.singleNodeMaxRequests = singleNodeMax
    c.blockSize = 128
    return c
}

/// 2 P + 2 D in group 0 (each D peers both Ps), plus a group-1 D that also lists P 0.
private let cluster = InstanceSnapshot([
    InstanceInfo(id: 0, role: .prefill, groupID: 0, label: 2, totalSlots: 10, totalBlocks: 1024),
    InstanceInfo(id: 1, role: .prefill, groupID: 0, label: 2, totalSlots: 10, totalBlocks: 1024),
    InstanceInfo(id: 10, role: .decode, groupID: 0, label: 3, totalSlots: 10, totalBlocks: 1024, peers: [0, 1]),
    InstanceInfo(id: 11, role: .decode, groupID: 0, label: 3, totalSlots: 10, totalBlocks: 1024, peers: [0, 1]),
    InstanceInfo(id: 20, role: .decode, groupID: 1, label: 3, totalSlots: 10, totalBlocks: 1024, peers: [0]),
])

@Suite("DIGS load_balance")
struct DIGSTests {
    @Test("60 never-finishing requests queue past max and drain on release; D shares P's group and peers (case 35)")
    func case35() {
        var s = DIGSScheduler(configuration: config())
        for id in 1...60 { s.enqueue(UInt64(id), features: features(.bytes(100))) }
        let placed = s.schedule(snapshot: cluster)
        // max = floor(10·1.1) = 11, checked before adding: each instance takes 12.
        #expect(placed.count == 24)
        #expect(s.queuedCount == 36 && s.activeCount == 24)
        #expect(placed.map(\.0) == (1...24).map { UInt64($0) })  // FCFS
        for (_, d) in placed {
            guard case .pair(let p, let dd) = d else { Issue.record("not a pair"); continue }
            #expect(cluster[dd]!.groupID == cluster[p]!.groupID && cluster[dd]!.peers.contains(p))
            #expect(dd != 20)
        }
        #expect(s.booking(0).prefillSlots == 12 && s.booking(1).prefillSlots == 12)
        #expect(s.booking(10).decodeSlots == 12 && s.booking(11).decodeSlots == 12)
        #expect(s.schedule(snapshot: cluster).isEmpty)

        // P's first frames free the P side, but every D is still full: P bookings are undone.
        for id in 1...24 { s.releasePrefill(UInt64(id)) }
        #expect(s.schedule(snapshot: cluster).isEmpty)
        #expect(s.booking(0).prefillSlots == 0 && s.queuedCount == 36)

        // The 24 that got a P but no D went to the back (§5.1 step 4): 49…60 now lead the queue.
        #expect(s.queuedIDs == (49...60).map { UInt64($0) } + (25...48).map { UInt64($0) })

        // Five requests end: exactly five queued ones are placed, in queue order.
        for id in 1...5 { s.finish(UInt64(id)) }
        let drained = s.schedule(snapshot: cluster)
        #expect(drained.map(\.0) == (49...53).map { UInt64($0) })
        #expect(s.queuedCount == 31 && s.activeCount == 24)
    }

    @Test("select_type 1 ignores the max; single_node_max_requests still caps each instance")
    func selectType1() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill, totalSlots: 10, totalBlocks: 1024),
            InstanceInfo(id: 10, role: .decode, totalSlots: 10, totalBlocks: 1024, peers: [0]),
        ])
        var s = DIGSScheduler(configuration: config(selectType: 1, singleNodeMax: 15))
        for id in 1...20 { s.enqueue(UInt64(id), features: features(.bytes(10))) }
        #expect(s.schedule(snapshot: snap).count == 15)
        #expect(s.queuedCount == 5)
    }

    @Test("P goes to the least booked P demand; D to the lowest score (used blocks + booked blocks)")
    func choices() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill), InstanceInfo(id: 1, role: .prefill),
            InstanceInfo(id: 10, role: .decode, totalBlocks: 1024, availBlocks: 1000, peers: [0, 1]),
            InstanceInfo(id: 11, role: .decode, totalBlocks: 1024, availBlocks: 1020, peers: [0, 1]),
        ])
        var s = DIGSScheduler(configuration: config())
        // 1000 bytes · 0.22 = 220 → 2 blocks.
        s.enqueue(1, features: features(.bytes(1000)))
        s.enqueue(2, features: features(.bytes(10)))
        let placed = s.schedule(snapshot: snap)
        // Request 1: P0 (tie → first), D11 (4 used vs 24). Request 2: P1 (0 booked vs 3), D11 (4+2+1=7 vs 24+1).
        #expect(placed.map(\.1) == [.pair(prefill: 0, decode: 11), .pair(prefill: 1, decode: 11)])
        #expect(s.booking(0).prefillBlocks == 2 && s.booking(11).decodeBlocks == 3)
        #expect(s.allocated(snap).map(\.slots) == [1, 1, 0, 2])
    }

    @Test("load_cost_values \"1, 1\" books one block whatever the prompt; token tensors are unscaled")
    func demand() {
        let snap = InstanceSnapshot([InstanceInfo(id: 0, role: .prefill), InstanceInfo(id: 10, role: .decode, peers: [0])])
        var a = DIGSScheduler(configuration: config(loadCost: [1, 1]))
        a.enqueue(1, features: features(.bytes(100_000)))
        _ = a.schedule(snapshot: snap)
        #expect(a.booking(0).prefillBlocks == 1)
        var b = DIGSScheduler(configuration: config())
        b.enqueue(1, features: features(.rawTokens(300)))
        b.enqueue(2, features: features(.scaledTokens(300)))
        _ = b.schedule(snapshot: snap)
        // 300 tokens → 3 blocks; 300 ids · 0.22 = 66 → 1 block.
        #expect(b.booking(0).prefillBlocks == 4)
    }

    @Test("reordering: FCFS, SJF and LJF", arguments: [
        (1, [UInt64(1), 2, 3]), (2, [2, 3, 1]), (3, [1, 3, 2]),
    ])
    func reordering(type: Int, expected: [UInt64]) {
        var s = DIGSScheduler(configuration: config(reordering: type))
        s.enqueue(1, features: features(.bytes(3000)))
        s.enqueue(2, features: features(.bytes(1000)))
        s.enqueue(3, features: features(.bytes(2000)))
        #expect(s.schedule(snapshot: cluster).map(\.0) == expected)
    }

    @Test("an offline instance gets no new requests; after online it is used again (case 36)")
    func offline() {
        var infos = cluster.instances
        infos[1].offline = true   // P 1
        infos[2].offline = true   // D 10
        var s = DIGSScheduler(configuration: config())
        for id in 1...4 { s.enqueue(UInt64(id), features: features(.bytes(10))) }
        let placed = s.schedule(snapshot: InstanceSnapshot(infos))
        #expect(placed.map(\.1) == Array(repeating: .pair(prefill: 0, decode: 11), count: 4))
        infos[1].offline = false
        infos[2].offline = false
        s.enqueue(5, features: features(.bytes(10)))
        #expect(s.schedule(snapshot: InstanceSnapshot(infos)).map(\.1) == [.pair(prefill: 1, decode: 10)])
    }

    @Test("a P with no eligible D in its group sends the request to the back")
    func noDecode() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill, groupID: 0),
            InstanceInfo(id: 10, role: .decode, groupID: 1, peers: [0]),
        ])
        var s = DIGSScheduler(configuration: config())
        s.enqueue(1, features: features(.bytes(10)))
        s.enqueue(2, features: features(.bytes(10)))
        #expect(s.schedule(snapshot: snap).isEmpty)
        #expect(s.booking(0) == DIGSScheduler.Booking() && s.queuedIDs == [1, 2])
    }

    @Test("requeue releases bookings and goes to the back; cancel drops a queued request")
    func requeueAndCancel() {
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill, totalSlots: 1), InstanceInfo(id: 10, role: .decode, totalSlots: 1, peers: [0]),
        ])
        var s = DIGSScheduler(configuration: config())
        for id in 1...4 { s.enqueue(UInt64(id), features: features(.bytes(10))) }
        // max = floor(1·1.1) = 1: two fit (booked 0, then 1 ≤ 1).
        #expect(s.schedule(snapshot: snap).map(\.0) == [1, 2])
        s.requeue(1)
        #expect(s.placement(1) == nil && s.booking(0).prefillSlots == 1)
        #expect(s.queuedIDs == [3, 4, 1])
        s.cancel(3)
        #expect(s.schedule(snapshot: snap).map(\.0) == [4])
        #expect(s.queuedIDs == [1])
        s.finish(1)  // timed out while queued
        #expect(s.queuedCount == 0)
    }

    @Test("tokenSum groups sorted lengths by n")
    func tokenSum() {
        #expect(DIGSScheduler.tokenSum([10, 20], new: 5, o: 0, n: 2, k: 1, maxSlots: 5) == 20)
        #expect(DIGSScheduler.tokenSum([10, 20], new: 5, o: 0, n: 2, k: 1, maxSlots: 0) == 35)
        #expect(DIGSScheduler.tokenSum([10, 20], new: 5, o: 0, n: 4, k: 2, maxSlots: 5) == 60)
        #expect(DIGSScheduler.tokenSum([10, 20], new: 5, o: 0, n: 4, k: 3, maxSlots: 5) == 30)
        #expect(DIGSScheduler.tokenSum([10], new: 5, o: 1, n: 1, k: 0, maxSlots: 5) == 11 + 6)
    }

    @Test("with w[0] ≠ 0, D prefers fewer booked tokens")
    func tokenAware() {
        var c = config()
        c.loadCostCoefficient = [1, 1, 0, 2, 6, 0, 0, 0, 0]
        let snap = InstanceSnapshot([
            InstanceInfo(id: 0, role: .prefill, totalSlots: 100), InstanceInfo(id: 1, role: .prefill, totalSlots: 100),
            InstanceInfo(id: 10, role: .decode, totalSlots: 100, peers: [0, 1]),
            InstanceInfo(id: 11, role: .decode, totalSlots: 100, peers: [0, 1]),
        ])
        var s = DIGSScheduler(configuration: c)
        s.enqueue(1, features: features(.bytes(1000)))
        s.enqueue(2, features: features(.bytes(10)))
        let placed = s.schedule(snapshot: snap).map(\.1)
        #expect(placed == [.pair(prefill: 0, decode: 10), .pair(prefill: 1, decode: 11)])
    }
}
