public import Foundation

/// Which of the core's effects start now, which wait for one in flight, and which are dropped — a value with no
/// I/O, so the rules are table-tested without sockets; `ControllerRuntime` executes what it returns.
///
/// - Probes (`getConfig`, `getStatus`): one per instance and kind. A new one while the old runs is dropped: the
///   next sync tick sends another, and a pile of probes behind a slow server would only answer stale questions.
/// - Role posts: one per instance. A newer post waits, replacing any older waiting one; when the running post
///   completes the waiting one starts and the running one's outcome is not delivered (it is superseded).
/// - Refresh: one at a time; the newest waiting one goes next, so an old list never lands last.
/// - `offline`, `online`, `pollTasks`, `queryTasks`: always start (the role switch sends them one at a time);
///   `pollTasks` and `queryTasks` start after their `after` delay, which the runtime waits on its clock.
/// - `persistIdentity`, `unhealthyEvent`: local work the runtime does at once.
public struct EffectAdmission: Sendable, Equatable {
    /// What one job holds while it runs: at most one job per keyed lane, any number on `.free`.
    public enum Lane: Hashable, Sendable {
        case config(Int)
        case status(Int)
        case post(Int)
        case refresh
        case free
    }

    /// An effect admitted to run.
    public struct Job: Sendable, Equatable {
        public var effect: ControllerCore.Effect
        public var lane: Lane
        /// Seconds to wait (on the runtime's clock) before running.
        public var delay: TimeInterval
    }

    /// One decision of `submit`.
    public enum Step: Sendable, Equatable {
        /// Start the job now.
        case start(Job)
        /// Local work (`persistIdentity`, `unhealthyEvent`).
        case local(ControllerCore.Effect)
    }

    /// What to do when a job completed.
    public struct Completion: Sendable, Equatable {
        /// Feed the job's events to the core (false when a newer job of its lane superseded it).
        public var deliver: Bool
        /// Jobs that may start now, after the events were fed.
        public var start: [Job]
    }

    var busy: Set<Lane> = []
    var waiting: [Lane: ControllerCore.Effect] = [:]
    var freeRunning = 0

    public init() {}

    /// Jobs running now.
    public var running: Int { busy.count + freeRunning }
    /// Effects waiting for their lane.
    public var queued: Int { waiting.count }

    /// Admits the core's effects, in order.
    public mutating func submit(_ effects: [ControllerCore.Effect]) -> [Step] {
        var out: [Step] = []
        for e in effects {
            switch e {
            case .persistIdentity, .unhealthyEvent:
                out.append(.local(e))
            case .getConfig(let id, _), .getStatus(let id, _):
                let lane: Lane = e.isConfig ? .config(id) : .status(id)
                if busy.insert(lane).inserted { out.append(.start(Job(effect: e, lane: lane, delay: 0))) }
            case .postRole(let id, _, _, _):
                out += admitQueued(e, lane: .post(id))
            case .refresh:
                out += admitQueued(e, lane: .refresh)
            case .offline, .online:
                freeRunning += 1
                out.append(.start(Job(effect: e, lane: .free, delay: 0)))
            case .pollTasks(_, let after), .queryTasks(_, _, _, let after):
                freeRunning += 1
                out.append(.start(Job(effect: e, lane: .free, delay: max(0, after))))
            }
        }
        return out
    }

    /// Frees `job`'s lane or hands it to the effect waiting for it.
    public mutating func completed(_ job: Job) -> Completion {
        if job.lane == .free {
            freeRunning = max(0, freeRunning - 1)
            return Completion(deliver: true, start: [])
        }
        guard busy.contains(job.lane) else { return Completion(deliver: false, start: []) }
        guard let next = waiting.removeValue(forKey: job.lane) else {
            busy.remove(job.lane)
            return Completion(deliver: true, start: [])
        }
        // a newer post for the same instance makes the older answer moot; a refresh's answer still counts
        let deliver = job.lane == .refresh
        return Completion(deliver: deliver, start: [Job(effect: next, lane: job.lane, delay: 0)])
    }

    mutating func admitQueued(_ e: ControllerCore.Effect, lane: Lane) -> [Step] {
        if busy.insert(lane).inserted { return [.start(Job(effect: e, lane: lane, delay: 0))] }
        waiting[lane] = e
        return []
    }
}

extension ControllerCore.Effect {
    var isConfig: Bool {
        if case .getConfig = self { return true }
        return false
    }
}
