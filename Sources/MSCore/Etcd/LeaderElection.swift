import Foundation
public import Logging
import Synchronization

/// The right to act of an elected leader, checked before every action that changes instances.
///
/// It holds the leader's term (the revision that created its lock key, so a later leader always has a greater
/// one) and a deadline on this process's monotonic clock: the lease's TTL counted from the moment the last
/// successful keep-alive was *sent*, minus a margin. etcd cannot expire the lease before that instant, so a
/// leader that stops acting at its deadline (frozen and resumed, or cut off from etcd) has stopped before
/// anyone else can be elected — without waiting for etcd to say so.
public final class LeaseFence: Sendable {
    private let state = Mutex<(term: Int64, until: ContinuousClock.Instant)?>(nil)

    public init() {}

    /// The term while this process may act, else nil.
    public var term: Int64? {
        state.withLock { s in
            guard let s, ContinuousClock.now < s.until else { return nil }
            return s.term
        }
    }

    /// The instant acting stops unless the lease is confirmed again.
    public var deadline: ContinuousClock.Instant? { state.withLock { $0?.until } }

    func grant(term: Int64, until: ContinuousClock.Instant) { state.withLock { $0 = (term, until) } }
    func revoke() { state.withLock { $0 = nil } }

    /// A fence that is always open with `term` (tests, and HA off: the only controller acts in term 0).
    public static func always(term: Int64) -> LeaseFence {
        let f = LeaseFence()
        f.grant(term: term, until: .now + .seconds(100 * 365 * 86400))
        return f
    }
}

/// What a campaign is doing now (for probes, logs and tests).
public struct ElectionStatus: Sendable, Equatable {
    public enum Role: String, Sendable { case starting, standby, leader }
    public var role: Role = .starting
    public var term: Int64 = 0
    /// The last etcd failure while it lasts (nil once etcd answers again).
    public var etcdError: String?
    /// Who holds the lock (its value), when known.
    public var holder: String?
}

/// Leader election on etcd: a lease plus a transaction lock (architecture.md, "HA"; controller.md §9).
///
/// Acquire: grant a lease of `ttl`, then `Txn(if create_revision(lock) == 0 then put(lock, value, lease) else
/// get(lock))`. A leader keeps its lease alive every `keepAliveInterval`, checks that the lock is still its own, and
/// stops acting at its fence deadline whatever etcd says. A standby reads the lock every `pollInterval` and
/// campaigns when it is gone. Errors are retried forever with a capped back-off (DECISIONS 20), each distinct one
/// logged at error level naming the etcd address.
public final class LeaderElection: Sendable {
    public struct Configuration: Sendable {
        /// The lock key (namespace prefix included).
        public var lockKey: String
        /// Written under the lock: who holds it (the reference writes the pod IP).
        public var value: String
        /// The lease TTL (reference 20 s).
        public var ttlSeconds: Int64 = 20
        /// Between keep-alives (reference clamp(ttl/2, 1, 10); ttl/3 here leaves room for one failed round
        /// before the margin).
        public var keepAliveInterval: Duration
        /// A leader stops acting this long before its lease could expire.
        public var margin: Duration
        /// How often a standby reads the lock.
        public var pollInterval: Duration = .seconds(1)
        /// The back-off after an etcd failure doubles up to this.
        public var maxBackoff: Duration = .seconds(5)

        public init(lockKey: String, value: String, ttlSeconds: Int64 = 20) {
            self.lockKey = lockKey
            self.value = value
            self.ttlSeconds = ttlSeconds
            let ttl = Double(ttlSeconds)
            keepAliveInterval = .milliseconds(Int64(min(max(ttl / 3, 1), 10) * 1000))
            margin = .milliseconds(Int64(max(ttl / 4, 1) * 1000))
        }
    }

    /// Called when this process becomes leader (`elected`) and when it stops being one (`demoted`, after the
    /// fence closed). Both should return promptly: keep-alives wait for them.
    public struct Handlers: Sendable {
        public var elected: @Sendable (Int64) async -> Void
        public var demoted: @Sendable (String) async -> Void
        /// etcd answered and someone else holds the lock (its value): called on every standby poll.
        public var otherHolds: @Sendable (String) async -> Void
        public init(elected: @escaping @Sendable (Int64) async -> Void, demoted: @escaping @Sendable (String) async -> Void,
                    otherHolds: @escaping @Sendable (String) async -> Void = { _ in }) {
            self.elected = elected
            self.demoted = demoted
            self.otherHolds = otherHolds
        }
    }

    public let client: EtcdClient
    public let configuration: Configuration
    public let fence: LeaseFence
    let logger: Logger
    private let statusBox = Mutex(ElectionStatus())

    public init(client: EtcdClient, configuration: Configuration, fence: LeaseFence = LeaseFence(), logger: Logger) {
        self.client = client
        self.configuration = configuration
        self.fence = fence
        self.logger = logger
    }

    public var status: ElectionStatus { statusBox.withLock { $0 } }

    /// Campaigns, leads and campaigns again until the task is cancelled; then gives the lease back.
    public func run(_ handlers: Handlers) async {
        var backoff = Duration.milliseconds(500)
        var failures = 0
        var lease: EtcdLease?
        // a lease we lost while etcd was away: etcd restores leases when it restarts, so it is revoked once etcd
        // answers again (else the old lock would block every campaign for a whole TTL)
        var unrevoked: Int64?
        while !Task.isCancelled {
            do {
                if let old = unrevoked {
                    try await client.revoke(old)
                    unrevoked = nil
                }
                let (kv, _) = try await client.get(configuration.lockKey)
                etcdAnswered(&failures)
                backoff = .milliseconds(500)
                if let kv {
                    let holder = String(decoding: kv.value, as: UTF8.self)
                    setStatus(.standby, holder: holder)
                    if holder != configuration.value || kv.lease != lease?.id { await handlers.otherHolds(holder) }
                    try await Task.sleep(for: configuration.pollInterval)
                    continue
                }
                let sentAt = ContinuousClock.now
                let granted = try await client.grantLease(ttlSeconds: configuration.ttlSeconds)
                lease = granted
                let lock = configuration.lockKey
                let t = try await client.txn(
                    [EtcdCompare(key: lock, .createRevision(0))],
                    success: [.put(key: lock, value: Array(configuration.value.utf8), lease: granted.id)],
                    failure: [.get(key: lock)])
                guard t.succeeded else {
                    try? await client.revoke(granted.id)
                    lease = nil
                    continue
                }
                let term = t.revision
                fence.grant(term: term, until: sentAt + .seconds(granted.ttl) - configuration.margin)
                setStatus(.leader, holder: configuration.value, term: term)
                logger.notice(
                    "elected leader", metadata: ["etcd.lock": "\(lock)", "term": "\(term)", "lease.ttl": "\(granted.ttl)"])
                await handlers.elected(term)
                let why = await hold(granted, term: term)
                fence.revoke()
                setStatus(.standby, holder: nil, term: 0)
                logger.warning("leadership lost: stopped acting", metadata: ["term": "\(term)", "why": "\(why)"])
                await handlers.demoted(why)
                // the lease may still live (etcd cut off): give it back so the lock frees now, not at its TTL
                do { try await giveBack(granted.id) } catch { unrevoked = granted.id }
                lease = nil
            } catch is CancellationError {
                break
            } catch let error as EtcdError {
                failures += 1
                etcdFailed(error, failures: failures, retryIn: backoff)
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, configuration.maxBackoff)
            } catch {
                break
            }
        }
        if fence.term != nil {
            fence.revoke()
            await handlers.demoted("stopping")
        }
        if let id = lease?.id ?? unrevoked { try? await giveBack(id) }
    }

    /// Revokes a lease even when the campaign is being cancelled: stopping is exactly when the lock must be freed
    /// (so the standby takes over at once, not after the TTL), and the client's calls honour task cancellation.
    private func giveBack(_ id: Int64) async throws {
        let client = self.client
        try await Task.detached { try await client.revoke(id) }.value
    }

    /// Keeps the lease until it is lost. - Returns: why it was lost.
    func hold(_ lease: EtcdLease, term: Int64) async -> String {
        var nextKeepAlive = ContinuousClock.now + configuration.keepAliveInterval
        var failures = 0
        while !Task.isCancelled {
            guard let deadline = fence.deadline else { return "fence revoked" }
            let wake = min(nextKeepAlive, deadline)
            do { try await Task.sleep(until: wake, clock: .continuous) } catch { return "stopping" }
            // after a freeze the deadline may be long past: never act on a lease we cannot vouch for
            if ContinuousClock.now >= deadline {
                return "lease not confirmed before its deadline (etcd unreachable or this process was frozen)"
            }
            let sentAt = ContinuousClock.now
            do {
                let ttl = try await client.keepAlive(lease.id)
                guard ttl > 0 else { return "lease expired in etcd" }
                let (kv, _) = try await client.get(configuration.lockKey)
                guard let kv, kv.createRevision == term, kv.lease == lease.id else {
                    return "the lock is no longer ours"
                }
                fence.grant(term: term, until: sentAt + .seconds(ttl) - configuration.margin)
                etcdAnswered(&failures)
                nextKeepAlive = sentAt + configuration.keepAliveInterval
            } catch {
                failures += 1
                etcdFailed(error, failures: failures, retryIn: .seconds(1))
                nextKeepAlive = ContinuousClock.now + .seconds(1)
            }
        }
        return "stopping"
    }

    private func setStatus(_ role: ElectionStatus.Role, holder: String?, term: Int64? = nil) {
        statusBox.withLock { s in
            s.role = role
            s.holder = holder
            if let term { s.term = term }
        }
    }

    private func etcdAnswered(_ failures: inout Int) {
        if failures > 0 {
            logger.notice("etcd answers again", metadata: ["etcd": "\(client.endpointDescription)", "failures": "\(failures)"])
        }
        failures = 0
        statusBox.withLock { $0.etcdError = nil }
    }

    private func etcdFailed(_ error: any Error, failures: Int, retryIn: Duration) {
        let text = "\(error)"
        let changed = statusBox.withLock { s in
            defer { s.etcdError = text }
            return s.etcdError != text
        }
        // the first failure, every change, and then every 30th so a long outage stays visible without flooding
        if changed || failures % 30 == 0 {
            logger.error(
                "etcd call failed; retrying (not leader until etcd answers)",
                metadata: [
                    "etcd": "\(client.endpointDescription)", "error": "\(text)", "failures": "\(failures)",
                    "retry.in": "\(retryIn)",
                ])
        }
    }
}
