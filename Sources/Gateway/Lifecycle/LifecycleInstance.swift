import MSCore

/// What a request lifecycle needs to know of an instance: who it is and where it listens. The Coordinator's
/// ``InstanceEntry`` in production; a plain value in the lifecycle tests, which open no sockets.
protocol LifecycleInstance: Equatable, Sendable {
    var id: InstanceID { get }
    /// Same ip and port (a PD flex self-pair is served as a single node).
    func sharesAddress(with other: Self) -> Bool
}

extension InstanceEntry: LifecycleInstance {
    var id: InstanceID { info.id }

    func sharesAddress(with other: InstanceEntry) -> Bool { ip == other.ip && port == other.port }

    /// An entry is one registration: a re-registered instance is a new entry, and a reply for the old one is stale.
    public static func == (a: InstanceEntry, b: InstanceEntry) -> Bool { a === b }
}

/// The timers a lifecycle arms; the Coordinator owns the clock and the durations (from the config), the lifecycle
/// decides when each is armed, cancelled, and what its firing means.
enum LifecycleTimer: Int, Hashable, Sendable, CaseIterable {
    /// `schedule_timeout`: not placed yet.
    case schedule
    /// default_scheduler: no place now, try again in 10 ms.
    case scheduleRetry
    /// P's reply head must arrive within `first_byte_timeout_ms`.
    case pHead
    /// A failed recompute POST goes to the same P again after 1 s.
    case resend
    case firstToken
    case infer
    /// `tokenizer_timeout` (a tokenizer request, single node).
    case tokenizer
    /// After a chat stream's finish chunk: waiting for D's separate `[DONE]` message.
    case end
    /// The client's unsent bytes stayed over the bound.
    case slowClient
}

/// The counters a lifecycle moves (the Coordinator maps them to its metrics and the access log).
enum LifecycleCounter: Hashable, Sendable {
    /// A retry of any kind (another P or D, a recompute, a resend).
    case retry
    case upstreamError
    case timeout
    case cancellation
}

/// Log lines a lifecycle asks for (the Coordinator adds the request id).
struct LifecycleLog: Equatable, Sendable {
    enum Level: Sendable { case debug, warning }
    var level: Level
    var message: String
    var metadata: [String: String]
}
