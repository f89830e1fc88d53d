/// The scheduling policies the Coordinator knows, by `algorithm_type`. A new policy is one file conforming to
/// ``SchedulingPolicy`` and one line in ``builtIn``.
///
/// `load_balance` (DIGS) is not here: it is a queue with bookings, not a per-request choice (``DIGSScheduler``).
public struct PolicyRegistry: Sendable {
    public let policies: [any SchedulingPolicy.Type]

    public init(_ policies: [any SchedulingPolicy.Type]) {
        self.policies = policies
    }

    public static let builtIn = PolicyRegistry([
        RoundRobinPolicy.self,
        CacheAffinityPolicy.self,
        LeastLoadPolicy.self,
        PrefixAffinityPolicy.self,
    ])

    /// The policy named `name`, if registered.
    public func policy(named name: String) -> (any SchedulingPolicy.Type)? {
        policies.first { $0.name == name }
    }

    /// Every registered name (for messages naming what is allowed).
    public var names: [String] { policies.map { $0.name } }

    /// The policy `config` names, or nil when it names none of these (`load_balance`).
    public func policy(for config: CoordinatorConfig.Scheduler) -> (any SchedulingPolicy.Type)? {
        policy(named: config.algorithm.rawValue)
    }
}
