/// DIGS `load_balance` (docs/wire/coordinator.md §5.1): a queue-based P/D pair scheduler with resource bookings.
///
/// Pure and clock-free: the caller feeds arrivals with ``enqueue(_:features:)``, runs
/// ``schedule(snapshot:)`` on a new request, on a release and at least every 100 ms, and reports
/// ``releasePrefill(_:)`` (P's first frame), ``finish(_:)`` (the request ended, any outcome),
/// ``requeue(_:)`` (the allocation callback failed) and ``cancel(_:)`` (timed out while queued).
///
/// - Demand `[slots, blocks]`: slots = `load_cost_values[0]`; blocks = `load_cost_values[1]` if
///   non-zero, else `ceil(inputLen / block_size)`, with `inputLen = ceil(size·w[1])` (token tensors
///   unscaled).
/// - An instance's max is `floor(total·res_limit_rate)` per dimension; P-stage and D-stage bookings
///   are kept apart.
/// - Eligible: not offline; booked P+D slots < `single_node_max_requests`; with `select_type` 2 every
///   booked dimension of the stage is ≤ max *before* the new demand is added.
/// - P: candidates sorted by booked P demand (slots+blocks) ascending, first eligible wins.
/// - D: same `group_id` as P and lists P in `peers` (or is P); sorted by
///   `a·tokenSum + m·maxSlots' + r·usedBlocks + Σ (booked_j + demand_j)·w[7+j]`, first eligible wins.
/// - Loop: pull ≤ `max_schedule_count` arrivals into the backlog, reorder (1 FCFS, 2 SJF, 3 LJF),
///   assign P in order and stop at the first request that fits nowhere (head-of-line), then assign D;
///   a request with no D gets its P booking undone and goes to the back.
/// - A retry (DECISIONS 10) is never placed on the instances it failed on; one that fits nowhere else waits
///   without holding up the queue.
public struct DIGSScheduler: Sendable {
    /// Request identity (the Coordinator's 64-bit request id).
    public typealias RequestID = UInt64

    /// The knobs of `digs_scheduler_config` DIGS uses.
    public struct Configuration: Sendable, Equatable {
        /// 1: no max check; 2: booked ≤ max check.
        public var selectType = 2
        public var resLimitRate = 1.1
        /// `load_cost_values`: [slots, blocks]; blocks 0 = from the prompt.
        public var loadCostValues = [1, 0]
        /// w = (a, i, o, n, k, m, r, b, c).
        public var loadCostCoefficient: [Double] = [0, 0.22, 1024, 24, 6, 0, 1, 0, 1]
        /// 1 FCFS, 2 SJF, 3 LJF.
        public var reorderingType = 1
        public var maxScheduleCount = 10000
        public var singleNodeMaxRequests = 1000
        /// The global KV block size (from the first refresh with instances).
        public var blockSize = 128

        public init() {}

        /// The DIGS knobs of a parsed config.
        public init(_ c: CoordinatorConfig, blockSize: Int) {
            selectType = c.scheduler.selectType
            resLimitRate = c.scheduler.resLimitRate
            loadCostValues = c.scheduler.loadCostValues
            loadCostCoefficient = c.scheduler.loadCostCoefficient
            reorderingType = c.scheduler.reorderingType
            maxScheduleCount = c.scheduler.maxScheduleCount
            singleNodeMaxRequests = c.requestLimit.singleNodeMaxRequests
            self.blockSize = blockSize
        }
    }

    /// Resources booked on one instance.
    public struct Booking: Sendable, Equatable {
        public var prefillSlots = 0
        public var prefillBlocks = 0
        public var decodeSlots = 0
        public var decodeBlocks = 0
        /// Input lengths of the requests booked in the D stage (for tokenSum).
        public var decodeLengths: [Int] = []
        public init() {}
    }

    struct Pending: Sendable {
        var id: RequestID
        var inputLen: Int
        var demand: (slots: Int, blocks: Int)
        /// Instances this request must not be placed on (it failed there before its first byte).
        var excluded: Set<InstanceID> = []
    }

    struct Active: Sendable {
        var prefill: InstanceID
        var decode: InstanceID
        var demand: (slots: Int, blocks: Int)
        var inputLen: Int
        var prefillHeld: Bool
        var excluded: Set<InstanceID>
    }

    public let configuration: Configuration
    private var incoming: [Pending] = []
    private var incomingHead = 0
    private var backlog: [Pending] = []
    private var active: [RequestID: Active] = [:]
    private var bookings: [InstanceID: Booking] = [:]

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    // MARK: Inputs

    /// Queues a new request; `excluding` names instances it must not be placed on (a retry elsewhere).
    /// What the parser must extract: the prompt's size sets each request's demand and the D score.
    public static let needs = RequestNeeds.prompt

    public mutating func enqueue(_ id: RequestID, features: RequestFeatures, excluding: Set<InstanceID> = []) {
        let w1 = configuration.loadCostCoefficient.count > 1 ? configuration.loadCostCoefficient[1] : 0.22
        let inputLen = features.prompt.size.inputLength(w1: w1)
        let slots = configuration.loadCostValues.first ?? 1
        let cfgBlocks = configuration.loadCostValues.count > 1 ? configuration.loadCostValues[1] : 0
        let bs = max(1, configuration.blockSize)
        let blocks = cfgBlocks != 0 ? cfgBlocks : (inputLen + bs - 1) / bs
        incoming.append(Pending(id: id, inputLen: inputLen, demand: (slots, blocks), excluded: excluding))
    }

    /// P sent its first frame: release the P-stage booking.
    public mutating func releasePrefill(_ id: RequestID) {
        guard var a = active[id], a.prefillHeld else { return }
        bookings[a.prefill, default: Booking()].prefillSlots -= a.demand.slots
        bookings[a.prefill, default: Booking()].prefillBlocks -= a.demand.blocks
        a.prefillHeld = false
        active[id] = a
    }

    /// The request ended (success, failure or timeout): release everything it holds, or drop it from
    /// the queue if it was never placed.
    public mutating func finish(_ id: RequestID) {
        if let a = active.removeValue(forKey: id) {
            release(a)
        } else {
            cancel(id)
        }
    }

    /// The allocation callback failed for a placed request: release it and queue it at the back.
    public mutating func requeue(_ id: RequestID) {
        guard let a = active.removeValue(forKey: id) else { return }
        release(a)
        backlog.append(Pending(id: id, inputLen: a.inputLen, demand: a.demand, excluded: a.excluded))
    }

    /// Removes a request that is still queued (e.g. schedule timeout).
    public mutating func cancel(_ id: RequestID) {
        if let i = backlog.firstIndex(where: { $0.id == id }) {
            backlog.remove(at: i)
        } else if let i = incoming[incomingHead...].firstIndex(where: { $0.id == id }) {
            incoming.remove(at: i)
        }
    }

    private mutating func release(_ a: Active) {
        if a.prefillHeld {
            bookings[a.prefill, default: Booking()].prefillSlots -= a.demand.slots
            bookings[a.prefill, default: Booking()].prefillBlocks -= a.demand.blocks
        }
        var b = bookings[a.decode, default: Booking()]
        b.decodeSlots -= a.demand.slots
        b.decodeBlocks -= a.demand.blocks
        if let i = b.decodeLengths.firstIndex(of: a.inputLen) { b.decodeLengths.remove(at: i) }
        bookings[a.decode] = b
    }

    // MARK: State

    /// Requests waiting (backlog plus not yet pulled).
    public var queuedCount: Int { backlog.count + incoming.count - incomingHead }
    /// Requests placed and not finished.
    public var activeCount: Int { active.count }
    /// The ids waiting, in backlog order, then arrivals not yet pulled.
    public var queuedIDs: [RequestID] { backlog.map(\.id) + incoming[incomingHead...].map(\.id) }
    /// The booking on `id` (zeros if none).
    public func booking(_ id: InstanceID) -> Booking { bookings[id] ?? Booking() }
    /// The pair a placed request holds.
    public func placement(_ id: RequestID) -> SchedulingDecision? {
        active[id].map { .pair(prefill: $0.prefill, decode: $0.decode) }
    }

    /// `/v1/coordinator_info` `schedule_info`: P + D demand booked on each instance.
    public func allocated(_ snapshot: InstanceSnapshot) -> [(id: InstanceID, slots: Int, blocks: Int)] {
        snapshot.instances.map { i in
            let b = booking(i.id)
            return (i.id, b.prefillSlots + b.decodeSlots, b.prefillBlocks + b.decodeBlocks)
        }
    }

    // MARK: The loop

    /// Runs one scheduling pass and returns the placements made, in order.
    public mutating func schedule(snapshot: InstanceSnapshot) -> [(RequestID, SchedulingDecision)] {
        // 1. Pull arrivals.
        let pull = min(configuration.maxScheduleCount, incoming.count - incomingHead)
        if pull > 0 {
            backlog += incoming[incomingHead..<(incomingHead + pull)]
            incomingHead += pull
            if incomingHead == incoming.count || incomingHead > 4096 {
                incoming.removeFirst(incomingHead)
                incomingHead = 0
            }
        }
        guard !backlog.isEmpty else { return [] }

        // 2. Reorder.
        switch configuration.reorderingType {
        case 2: backlog = stableSorted(backlog) { $0.inputLen < $1.inputLen }
        case 3: backlog = stableSorted(backlog) { $0.inputLen > $1.inputLen }
        default: break
        }

        // 3. P for each in order, stopping at the first that fits nowhere.
        let ps = snapshot.instances(role: .prefill)
        var withP: [(Pending, InstanceID)] = []
        var stop = backlog.count
        var skipped: [Pending] = []
        for (n, r) in backlog.enumerated() {
            guard let p = choosePrefill(ps, demand: r.demand, excluded: r.excluded) else {
                // a retry kept off the P's that failed it must not hold up the queue behind it
                if !r.excluded.isEmpty { skipped.append(r); continue }
                stop = n
                break
            }
            bookings[p, default: Booking()].prefillSlots += r.demand.slots
            bookings[p, default: Booking()].prefillBlocks += r.demand.blocks
            withP.append((r, p))
        }
        let rest = skipped + Array(backlog[stop...])

        // 4. D for each that got a P; none → undo P and send to the back.
        var placed: [(RequestID, SchedulingDecision)] = []
        var toBack: [Pending] = []
        for (r, p) in withP {
            guard let pInfo = snapshot[p], let d = chooseDecode(snapshot, prefill: pInfo, request: r) else {
                bookings[p, default: Booking()].prefillSlots -= r.demand.slots
                bookings[p, default: Booking()].prefillBlocks -= r.demand.blocks
                toBack.append(r)
                continue
            }
            var b = bookings[d, default: Booking()]
            b.decodeSlots += r.demand.slots
            b.decodeBlocks += r.demand.blocks
            b.decodeLengths.append(r.inputLen)
            bookings[d] = b
            active[r.id] = Active(prefill: p, decode: d, demand: r.demand, inputLen: r.inputLen, prefillHeld: true, excluded: r.excluded)
            placed.append((r.id, .pair(prefill: p, decode: d)))
        }
        backlog = rest + toBack
        return placed
    }

    /// `floor(total·res_limit_rate)`.
    func maxOf(_ total: Int) -> Int { Int((Double(total) * configuration.resLimitRate).rounded(.down)) }

    func eligible(_ i: InstanceInfo, stage: InstanceRole) -> Bool {
        guard CandidateFilter.online(i) else { return false }
        let b = booking(i.id)
        guard b.prefillSlots + b.decodeSlots < configuration.singleNodeMaxRequests else { return false }
        guard configuration.selectType == 2 else { return true }
        let (s, k) = stage == .prefill ? (b.prefillSlots, b.prefillBlocks) : (b.decodeSlots, b.decodeBlocks)
        return s <= maxOf(i.totalSlots) && k <= maxOf(i.totalBlocks)
    }

    func choosePrefill(_ ps: [InstanceInfo], demand: (slots: Int, blocks: Int), excluded: Set<InstanceID> = []) -> InstanceID? {
        let ranked = ps.enumerated().sorted { x, y in
            let bx = booking(x.element.id), by = booking(y.element.id)
            let dx = bx.prefillSlots + bx.prefillBlocks, dy = by.prefillSlots + by.prefillBlocks
            return dx != dy ? dx < dy : x.offset < y.offset
        }
        let allowed = CandidateFilter.notExcluded(excluded)
        return ranked.first { allowed($0.element) && eligible($0.element, stage: .prefill) }?.element.id
    }

    func chooseDecode(_ snapshot: InstanceSnapshot, prefill p: InstanceInfo, request r: Pending) -> InstanceID? {
        let allowed = CandidateFilter.notExcluded(r.excluded)
        let ds = snapshot.decodes(for: p.id).filter { $0.groupID == p.groupID && allowed($0) }
        guard !ds.isEmpty else { return nil }
        let groupMax = snapshot.instances.filter { $0.role == .decode && $0.groupID == p.groupID }
            .map { booking($0.id).decodeSlots }.max() ?? 0
        let scored = ds.enumerated().map { (n, d) in (n, d, decodeScore(d, request: r, groupMaxSlots: groupMax)) }
        let ranked = scored.sorted { $0.2 != $1.2 ? $0.2 < $1.2 : $0.0 < $1.0 }
        return ranked.first { eligible($0.1, stage: .decode) }?.1.id
    }

    /// The D score of §5.1 for placing `request` on `d`.
    func decodeScore(_ d: InstanceInfo, request r: Pending, groupMaxSlots: Int) -> Double {
        let w = configuration.loadCostCoefficient
        guard w.count == 9 else { return 0 }
        let b = booking(d.id)
        let maxSlots = max(groupMaxSlots, b.decodeSlots + 1)
        let tokenSum = w[0] == 0 ? 1 : Self.tokenSum(b.decodeLengths, new: r.inputLen, o: w[2], n: Int(w[3]),
                                                     k: Int(w[4]), maxSlots: maxSlots)
        let used = Double(d.totalBlocks - d.availBlocks)
        return w[0] * tokenSum + w[5] * Double(maxSlots) + w[6] * used
            + Double(b.decodeSlots + r.demand.slots) * w[7] + Double(b.decodeBlocks + r.demand.blocks) * w[8]
    }

    /// tokenSum of §5.1: the booked lengths (each + o) with the new one, sorted, in groups of n; each
    /// full group adds last·n; a tail (counted only when there is no full group) adds last·count/2 if
    /// count ≤ k, else last·count. If maxSlots < n/2 it is simply Σ(len+o) + (new+o).
    static func tokenSum(_ booked: [Int], new: Int, o: Double, n: Int, k: Int, maxSlots: Int) -> Double {
        let lens = (booked + [new]).map { Double($0) + o }.sorted()
        if n <= 0 || Double(maxSlots) < Double(n) / 2 { return lens.reduce(0, +) }
        let full = lens.count / n
        var sum = 0.0
        for g in 0..<full { sum += lens[(g + 1) * n - 1] * Double(n) }
        let tail = lens.count % n
        if tail > 0 && full == 0 {
            let last = lens[lens.count - 1]
            sum += tail <= k ? last * Double(tail) / 2 : last * Double(tail)
        }
        return sum
    }

    private func stableSorted(_ a: [Pending], by less: (Pending, Pending) -> Bool) -> [Pending] {
        a.enumerated().sorted { x, y in
            if less(x.element, y.element) { return true }
            if less(y.element, x.element) { return false }
            return x.offset < y.offset
        }.map(\.element)
    }
}
