/// Identity of an inference instance, as the Controller assigns it.
public typealias InstanceID = UInt64

/// What an instance does (refresh `role`: 80 'P', 68 'D', 85 'U').
public enum InstanceRole: Sendable, Equatable, Hashable {
    case prefill
    case decode
    /// 'U': serves whole requests (single_node).
    case mixed

    /// Maps the refresh's `role` code (80/68/85); nil for anything else (flex is split before this).
    public init?(code: Int) {
        switch code {
        case 80: self = .prefill
        case 68: self = .decode
        case 85: self = .mixed
        default: return nil
        }
    }
}

/// One instance as the scheduler sees it: registration facts plus the latest reported resources.
public struct InstanceInfo: Sendable, Equatable {
    public var id: InstanceID
    public var role: InstanceRole
    /// `static_info.group_id`.
    public var groupID: UInt64
    /// `static_info.label`: 0 PREFILL_PREFER, 1 DECODE_PREFER, 2 PREFILL_STATIC, 3 DECODE_STATIC, 4 FLEX_STATIC.
    public var label: Int
    public var totalSlots: Int
    public var totalBlocks: Int
    /// From the latest refresh.
    public var availSlots: Int
    /// From the latest refresh.
    public var availBlocks: Int
    /// On a D: the P ids it is connected to.
    public var peers: [InstanceID]
    /// Set by `/v1/instances/offline`, cleared by `/online`.
    public var offline: Bool
    public var modelName: String

    public init(id: InstanceID, role: InstanceRole, groupID: UInt64 = 0, label: Int = 0,
                totalSlots: Int = 200, totalBlocks: Int = 1024, availSlots: Int? = nil, availBlocks: Int? = nil,
                peers: [InstanceID] = [], offline: Bool = false, modelName: String = "") {
        self.id = id
        self.role = role
        self.groupID = groupID
        self.label = label
        self.totalSlots = totalSlots
        self.totalBlocks = totalBlocks
        self.availSlots = availSlots ?? totalSlots
        self.availBlocks = availBlocks ?? totalBlocks
        self.peers = peers
        self.offline = offline
        self.modelName = modelName
    }

    /// round_robin availability (§5.2): free slots and blocks, and both totals ≥ 1.
    public var hasFreeResources: Bool { CandidateFilter.hasResources(self) }
}

/// An immutable view of the cluster, in registration order. Swapped whole on each refresh.
public struct InstanceSnapshot: Sendable, Equatable {
    /// All instances, in registration order.
    public let instances: [InstanceInfo]
    private let index: [InstanceID: Int]

    /// Per-role lists as fields: the lookup runs for every request, and hashing an enum key costs more than the
    /// rest of the lookup.
    private let prefills: [InstanceInfo]
    private let decodes: [InstanceInfo]
    private let mixed: [InstanceInfo]
    private let decodesByPrefill: [InstanceID: [InstanceInfo]]

    /// Builds the snapshot and its per-role and P→D indexes (once per refresh, not per request).
    public init(_ instances: [InstanceInfo]) {
        self.instances = instances
        var idx: [InstanceID: Int] = [:]
        var roles: [InstanceRole: [InstanceInfo]] = [:]
        for (n, i) in instances.enumerated() {
            idx[i.id] = n
            roles[i.role, default: []].append(i)
        }
        self.index = idx
        self.prefills = roles[.prefill] ?? []
        self.decodes = roles[.decode] ?? []
        self.mixed = roles[.mixed] ?? []
        var dp: [InstanceID: [InstanceInfo]] = [:]
        for p in roles[.prefill] ?? [] {
            dp[p.id] = (roles[.decode] ?? []).filter(CandidateFilter.peer(of: p.id))
        }
        self.decodesByPrefill = dp
    }

    /// The instance with `id`, if registered.
    public subscript(id: InstanceID) -> InstanceInfo? { index[id].map { instances[$0] } }

    /// Registration position of `id`.
    public func position(of id: InstanceID) -> Int? { index[id] }

    /// Instances with `role`, in registration order.
    public func instances(role: InstanceRole) -> [InstanceInfo] {
        switch role {
        case .prefill: prefills
        case .decode: decodes
        case .mixed: mixed
        }
    }

    /// The D instances that serve P `p`: those listing it in `peers`, or `p` itself (flex self-pair).
    public func decodes(for p: InstanceID) -> [InstanceInfo] {
        decodesByPrefill[p] ?? instances.filter(CandidateFilter.peer(of: p))
    }

    public static func == (a: InstanceSnapshot, b: InstanceSnapshot) -> Bool { a.instances == b.instances }
}

/// Per-instance load the Coordinator tracks itself (requests in flight on each instance).
///
/// Either fixed numbers (pure tests) or the live counters of a cluster view, read in place at each lookup so a
/// scheduling decision costs no per-request dictionary.
public struct LoadCounters: Sendable {
    private let fixed: [InstanceID: Int]
    private let live: [InstanceID: InstanceLoad]

    public init(_ inFlight: [InstanceID: Int] = [:]) {
        fixed = inFlight
        live = [:]
    }

    init(live: [InstanceID: InstanceLoad]) {
        fixed = [:]
        self.live = live
    }

    /// In-flight requests on `id` (0 if unknown).
    public subscript(id: InstanceID) -> Int {
        if let l = live[id] { return l.inFlightCount }
        return fixed[id] ?? 0
    }
}

/// Where a request goes.
public enum SchedulingDecision: Sendable, Equatable, Hashable {
    /// single_node: one mixed instance.
    case single(InstanceID)
    /// PD: a prefill instance and a decode instance.
    case pair(prefill: InstanceID, decode: InstanceID)
}

/// What a policy may know about a request (transport-neutral).
public struct RequestFeatures: Sendable, Equatable {
    public var dialect: Dialect
    public var prompt: PromptFeatures
    public var maxTokens: Int?

    public init(dialect: Dialect, prompt: PromptFeatures = PromptFeatures(), maxTokens: Int? = nil) {
        self.dialect = dialect
        self.prompt = prompt
        self.maxTokens = maxTokens
    }

    /// The features of a parsed request.
    public init(_ r: InferenceRequest) {
        self.init(dialect: r.dialect, prompt: r.prompt, maxTokens: r.maxTokens)
    }
}
