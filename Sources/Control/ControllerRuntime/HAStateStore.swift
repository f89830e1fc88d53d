public import Foundation
import Logging
public import MSCore

/// Where an HA leader keeps the §10.1 process state so that a standby can take over from it.
public protocol ControllerStateStore: Sendable {
    /// The stored state, if any (and remembers the revision read, for the next save).
    func load() async throws -> Data?
    /// Replaces the state if nobody wrote it since this store last read or wrote it and this leader still holds
    /// the lock; throws otherwise.
    func save(_ data: Data) async throws
}

/// The state under `/controller/node-data` (namespace-prefixed) in etcd, written with compare-and-swap on the
/// mod_revision last read or written and on the lock's create_revision (the writer's term), so a deposed leader's
/// late write can never land.
public actor EtcdControllerStateStore: ControllerStateStore {
    public struct Conflict: Error, CustomStringConvertible {
        public var description: String
    }

    let client: EtcdClient
    let key: String
    let lockKey: String
    let term: Int64
    var revision: Int64 = 0

    public init(client: EtcdClient, key: String, lockKey: String, term: Int64) {
        self.client = client
        self.key = key
        self.lockKey = lockKey
        self.term = term
    }

    public func load() async throws -> Data? {
        let (kv, _) = try await client.get(key)
        revision = kv?.modRevision ?? 0
        return kv.map { Data($0.value) }
    }

    public func save(_ data: Data) async throws {
        let t = try await client.txn(
            [EtcdCompare(key: key, .modRevision(revision)), EtcdCompare(key: lockKey, .createRevision(term))],
            success: [.put(key: key, value: Array(data), lease: 0)], failure: [.get(key: key), .get(key: lockKey)])
        if t.succeeded {
            revision = t.revision
            return
        }
        let current = t.gets.first ?? nil
        let lock = t.gets.count > 1 ? t.gets[1] : nil
        revision = current?.modRevision ?? 0
        if lock?.createRevision != term {
            throw Conflict(description: "the lock is no longer held in term \(term); state not written")
        }
        throw Conflict(description: "the state was written by someone else since revision read; re-read, next period retries")
    }
}

extension ControllerRuntime {
    /// Writes the state to the HA store once per sync period (one write at a time; a slow etcd skips periods).
    func persistState() {
        guard let store = stateStore, state.initialAssignmentDone, !persistInFlight else { return }
        persistInFlight = true
        let data = ProcessStateFile.encode(state)
        spawnTask { runtime, _ in
            var failure: String?
            do { try await store.save(data) } catch { failure = "\(error)" }
            await runtime.persistDone(failure)
        }
    }

    func persistDone(_ failure: String?) {
        persistInFlight = false
        if let failure, failure != lastPersistError {
            logger.error("cluster state not persisted to etcd", metadata: ["error": "\(failure)"])
        } else if failure == nil, lastPersistError != nil {
            logger.notice("cluster state persisted to etcd again")
        }
        lastPersistError = failure
    }
}
