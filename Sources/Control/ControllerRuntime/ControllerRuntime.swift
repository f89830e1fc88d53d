public import Foundation
public import Logging
public import MSCore
import Synchronization

/// What the HTTP handlers may read without going through the actor: updated after every transition.
public struct ControllerSnapshot: Sendable, Equatable {
    /// Published instance ids (the refresh the coordinators get now).
    public var published: [Int] = []
    /// Published P and D counts.
    public var prefill = 0
    public var decode = 0
    /// Live instances known (not deleted).
    public var instances = 0
    /// The initial assignment was made.
    public var initialAssignmentDone = false
    /// The first rank-table pass validated.
    public var rankTableLoaded = false
    /// Live instances by "<role>/<state>" (`ControllerMetrics.roles` × `ControllerMetrics.states`).
    public var instancesByRoleState: [String: Int] = [:]
    /// Effects running, and waiting for their lane (`EffectAdmission`).
    public var effectsRunning = 0
    public var effectsQueued = 0

    public init() {}
}

/// A lock-protected snapshot shared by the runtime (writer) and the HTTP loop threads (readers).
public final class ControllerStatusBoard: Sendable {
    private let value = Mutex(ControllerSnapshot())
    private let tasks = Mutex(0)
    public init() {}
    public var snapshot: ControllerSnapshot { value.withLock { $0 } }
    func set(_ s: ControllerSnapshot) { value.withLock { $0 = s } }

    /// Tasks of the running runtime that are alive: its loop, and every job from admission until its outcome was
    /// fed to the core (so work it started is counted before the job that started it ends). A test clock
    /// compares it with its sleepers: when all of them sleep, nothing moves until the clock does.
    public var aliveTasks: Int { tasks.withLock { $0 } }
    func taskStarted() { tasks.withLock { $0 += 1 } }
    func taskEnded() { tasks.withLock { $0 -= 1 } }
    func noTasks() { tasks.withLock { $0 = 0 } }
}

/// The Controller's runtime: one actor owns `ControllerCore.State` (docs/architecture.md, Controller).
///
/// It feeds events into `ControllerCore.transition` — a rank-table pass every `rank_table_detecting_seconds`,
/// a sync tick every `cluster_synchronization_seconds` (status polls and the refresh), the periodic role
/// decision, and the outcomes of effects. `EffectAdmission` decides which effects start; each runs on the
/// `ControllerEffectRunner` in a child task of `run()`, and its outcome comes back as events. Every wait (ticks,
/// a role switch's drain polls, retries of a failed pod list) is on the injected clock. After each sync tick it
/// writes the process-state and cluster-status files atomically. On start it recovers from the process-state
/// file when live servers already have roles (§9 "Takeover").
public actor ControllerRuntime {
    /// Periods, paths and file checks.
    public struct Options: Sendable {
        /// `cluster_synchronization_seconds`.
        public var syncInterval: TimeInterval = 1
        /// `rank_table_detecting_seconds`.
        public var rankTableInterval: TimeInterval = 5
        /// `digs_periodic_role_decision.role_decision_time_period` (used when auto switching is on).
        public var roleDecisionInterval: TimeInterval = 86400
        /// `global_rank_table_file_path`.
        public var rankTablePath: String
        public var rankTableOptions: RankTable.Options
        /// Checks on the rank table (≤0640 unless `MINDIE_CHECK_INPUTFILES_PERMISSION=0`).
        public var fileCheck: FileCheck
        /// `process_manager.file_path` when `to_file`.
        public var processStatePath: String?
        /// `cluster_status.file_path` when `to_file`.
        public var clusterStatusPath: String?
        /// Where the identity registry (ids, counter, remembered roles) is written; nil = not written.
        public var identityPath: String?
        /// `instance_discovery.source = kubernetes`: pods listed every `rankTableInterval` instead of the rank
        /// table file (nil = the rank table).
        public var podSource: KubernetesPodSource?

        public init(rankTablePath: String, rankTableOptions: RankTable.Options = .init(), environment: [String: String] = [:]) {
            self.rankTablePath = rankTablePath
            self.rankTableOptions = rankTableOptions
            self.fileCheck = FileCheck(maxMode: FileCheck.configMode, environment: environment)
        }

        /// The options a config implies.
        public init(config c: ControllerConfig, environment: [String: String]) {
            self.init(
                rankTablePath: c.globalRankTableFilePath, rankTableOptions: RankTable.Options(config: c),
                environment: environment)
            syncInterval = TimeInterval(c.clusterSynchronizationSeconds)
            rankTableInterval = TimeInterval(c.rankTableDetectingSeconds)
            roleDecisionInterval = TimeInterval(c.periodicRoleDecision.periodSeconds)
            if c.processManager.toFile {
                processStatePath = c.processManager.filePath
                identityPath = c.processManager.filePath + ".identity.json"
            }
            if c.clusterStatus.toFile { clusterStatusPath = c.clusterStatus.filePath }
        }
    }

    public let options: Options
    public let settings: ControllerCore.Settings
    public nonisolated let board: ControllerStatusBoard
    let runner: any ControllerEffectRunner
    let clock: any ControllerClock
    let logger: Logger
    let metrics: ControllerMetrics

    public private(set) var state = ControllerCore.State()
    /// Coordinator IPs in table order.
    public private(set) var coordinatorOrder: [String] = []
    /// The task `start()` made (HA's election handlers start and stop the runtime without awaiting `run()`).
    var startedTask: Task<Void, Never>?
    /// Where `spawnTask` hands work to `run()`'s task group; nil while not running.
    var work: AsyncStream<@Sendable () async -> Void>.Continuation?
    /// Whether `run()` writes the output files when it ends (not when a leader steps down).
    var writeFilesAtEnd = true
    /// Which effects run and which wait.
    var admission = EffectAdmission()
    var lastTableError: String?
    var tableLoaded = false
    /// A pod list in flight (the next pass waits for it instead of piling up behind a slow API server).
    var podPassInFlight = false
    var lastSkipped: [PodDiscovery.Skipped] = []
    var lastWriteError: String?
    /// HA: where the leader's state is persisted (with compare-and-swap) and a new leader recovers it from.
    var stateStore: (any ControllerStateStore)?
    var persistInFlight = false
    var lastPersistError: String?

    /// - Parameters:
    ///   - options: periods and paths.
    ///   - settings: the core's settings.
    ///   - runner: runs HTTP effects.
    ///   - clock: the time source.
    ///   - board: the snapshot the HTTP handlers read.
    ///   - logger: injected logger.
    public init(
        options: Options, settings: ControllerCore.Settings, runner: any ControllerEffectRunner,
        clock: any ControllerClock = SystemControllerClock(), board: ControllerStatusBoard = ControllerStatusBoard(),
        metrics: ControllerMetrics = ControllerMetrics(sink: .isolated()), logger: Logger
    ) {
        self.options = options
        self.settings = settings
        self.runner = runner
        self.clock = clock
        self.board = board
        self.metrics = metrics
        self.logger = logger
    }

    /// Runs the Controller until the calling task is cancelled: recovery, then the scheduler loop, with every
    /// effect in a child task. On cancellation the loop and the effects in flight are cancelled and awaited, then
    /// the output files are written a last time (unless `stop(writeFiles: false)` asked otherwise).
    public func run() async {
        guard work == nil else { return }  // one run at a time
        let (jobs, continuation) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
        work = continuation
        board.taskStarted()  // the loop
        await withDiscardingTaskGroup { group in
            group.addTask {
                await self.runLoop()
                self.board.taskEnded()
            }
            // ends when the task is cancelled; the group then cancels and awaits its children
            for await job in jobs { group.addTask { await job() } }
        }
        continuation.finish()
        work = nil
        board.noTasks()  // jobs handed over after the group stopped taking them never ran
        admission = EffectAdmission()
        if writeFilesAtEnd { writeOutputFiles() }
        writeFilesAtEnd = true
        publishSnapshot()
    }

    /// Runs `run()` in a task of its own and returns at once: HA's election handlers start and stop the runtime
    /// from inside the election loop, which must go on renewing the lease meanwhile.
    public func start() {
        guard startedTask == nil else { return }
        startedTask = Task { await self.run() }
    }

    /// Ends what `start()` began and waits for it; the output files are written a last time unless `writeFiles`
    /// is false (a leader stepping down: its state is no longer the cluster's).
    public func stop(writeFiles: Bool = true) async {
        guard let t = startedTask else { return }
        startedTask = nil
        writeFilesAtEnd = writeFiles
        t.cancel()
        await t.value
    }

    /// HA: forgets everything (a standby holds no cluster state; it recovers the leader's when it takes over).
    func resetForStandby() {
        state = ControllerCore.State()
        coordinatorOrder = []
        admission = EffectAdmission()
        tableLoaded = false
        persistInFlight = false
        publishSnapshot()
    }

    /// HA: the store the leader persists to and recovers from (nil = the process file only).
    func setStateStore(_ store: (any ControllerStateStore)?) { stateStore = store }

    func runLoop() async {
        await recoverAtStartup()
        var lastTable: Date?
        var lastDecision = clock.now()
        while !Task.isCancelled {
            let now = clock.now()
            if lastTable == nil || now.timeIntervalSince(lastTable!) >= options.rankTableInterval - 0.001 {
                lastTable = now
                if let source = options.podSource { podPass(source) } else { rankTablePass() }
            }
            apply(.syncTick)
            writeOutputFiles()
            persistState()
            if settings.autoSwitching && now.timeIntervalSince(lastDecision) >= options.roleDecisionInterval {
                lastDecision = now
                let ctx = context()
                spawnTask { runtime, runner in
                    if let info = await runner.coordinatorInfo(context: ctx) {
                        await runtime.apply(.roleDecisionTimer(info))
                    }
                }
            }
            do { try await clock.sleep(seconds: options.syncInterval) } catch { break }
        }
    }

    // MARK: - Events

    /// Feeds one event to the core and runs its effects.
    public func apply(_ event: ControllerCore.Event) {
        let (s, effects) = ControllerCore.transition(state, event, now: clock.now(), settings: settings)
        if !state.initialAssignmentDone && s.initialAssignmentDone { metrics.roleDecision(periodic: false) }
        if case .roleDecisionTimer = event { metrics.roleDecision(periodic: true) }
        state = s
        dispatch(effects)
        publishSnapshot()
    }

    /// Reads and validates the rank table; a valid pass becomes a `.rankTable` event.
    func rankTablePass() {
        let table = readRankTable()
        metrics.discoveryPass(kubernetes: false, succeeded: table != nil)
        guard let table else { return }
        coordinatorOrder = table.coordinatorIPs
        tableLoaded = true
        apply(.rankTable(instances: table.instances, coordinators: table.coordinatorIPs))
    }

    /// Lists the pods in a task of its own, so that a slow or absent API server never delays the sync tick; the
    /// result comes back as a `.rankTable` event like a table pass.
    func podPass(_ source: KubernetesPodSource) {
        guard !podPassInFlight else { return }
        podPassInFlight = true
        spawnTask { runtime, _ in
            let result = await source.discover()
            await runtime.podPassDone(result, source: source)
        }
    }

    func podPassDone(
        _ result: Result<(cluster: DiscoveredCluster, skipped: [PodDiscovery.Skipped]), DiscoveryError>,
        source: KubernetesPodSource
    ) {
        podPassInFlight = false
        let cluster = podResult(result, source: source)
        metrics.discoveryPass(kubernetes: true, succeeded: cluster != nil)
        guard let cluster else { return }
        coordinatorOrder = cluster.coordinators
        tableLoaded = true
        apply(.rankTable(instances: cluster.instances, coordinators: cluster.coordinators))
    }

    /// Logs a failure or skipped pods once per distinct text; the cluster on success.
    func podResult(
        _ result: Result<(cluster: DiscoveredCluster, skipped: [PodDiscovery.Skipped]), DiscoveryError>,
        source: KubernetesPodSource
    ) -> DiscoveredCluster? {
        switch result {
        case .failure(let e):
            if e.description != lastTableError {
                logger.warning("pod discovery pass skipped", metadata: ["source": "\(source.description)", "error": "\(e)"])
            }
            lastTableError = e.description
            return nil
        case .success(let (cluster, skipped)):
            if lastTableError != nil { logger.info("pod discovery works again", metadata: ["source": "\(source.description)"]) }
            lastTableError = nil
            if skipped != lastSkipped {
                for s in skipped { logger.warning("pod left out of the instance table", metadata: ["pod": "\(s.pod)", "reason": "\(s.reason)"]) }
            }
            lastSkipped = skipped
            return cluster
        }
    }

    /// The cluster to recover against. A pod list that fails is retried every `rankTableInterval` (until the
    /// runtime stops): deciding afresh because the API server was briefly away at a restart would re-post roles to
    /// servers that hold them. A missing or broken rank table is not waited for (the reference's behaviour).
    func readClusterForRecovery() async -> DiscoveredCluster? {
        while true {
            if let c = await readCluster() { return c }
            guard options.podSource != nil else { return nil }
            do { try await clock.sleep(seconds: options.rankTableInterval) } catch { return nil }
            if Task.isCancelled { return nil }
        }
    }

    /// The instances and coordinators as the configured source shows them now (start-up recovery).
    func readCluster() async -> DiscoveredCluster? {
        if let source = options.podSource { return podResult(await source.discover(), source: source) }
        return readRankTable().map { DiscoveredCluster(instances: $0.instances, coordinators: $0.coordinatorIPs) }
    }

    func readRankTable() -> RankTable? {
        do {
            let bytes = try options.fileCheck.read(options.rankTablePath)
            let t = try RankTable(data: Data(bytes), options: options.rankTableOptions)
            if lastTableError != nil { logger.info("rank table readable again", metadata: ["path": "\(options.rankTablePath)"]) }
            lastTableError = nil
            return t
        } catch {
            let text = "\(error)"
            if text != lastTableError {
                logger.warning("rank table pass skipped", metadata: ["path": "\(options.rankTablePath)", "error": "\(text)"])
            }
            lastTableError = text
            return nil
        }
    }

    /// Terminates the instance serving `ip:port` (data port) for `/v1/terminate-service`.
    /// - Returns: nil on success, else (HTTP status, message).
    public func terminate(ip: String, port: Int) async -> (status: Int, message: String)? {
        guard let node = state.nodes.values.first(where: { $0.instance.ip == ip && $0.instance.ports.predict == port }) else {
            return (404, "no instance with ip \(ip) and port \(port)")
        }
        if let failure = await runner.stopService(node.key) { return (502, failure) }
        let (s, effects) = ControllerCore.expire(state, id: node.id, settings: settings)
        state = s
        logger.notice("instance released", metadata: ["instance.id": "\(node.id)", "instance.key": "\(node.key)"])
        dispatch(effects)
        publishSnapshot()
        return nil
    }

    // MARK: - Effects

    func context() -> EffectContext {
        EffectContext(coordinators: coordinatorOrder, initPhase: !state.refreshEnabled)
    }

    func dispatch(_ effects: [ControllerCore.Effect]) {
        for step in admission.submit(effects) {
            switch step {
            case .local(.persistIdentity(let registry)):
                if let path = options.identityPath, let data = try? registry.jsonData() { write(data, path) }
            case .local(.unhealthyEvent(let id, let reason)):
                logger.warning(
                    "instance unhealthy (event 0xFC001003)",
                    metadata: ["instance.id": "\(id)", "reason": "\(reason == 1 ? "no reply" : "bad response")"])
            case .local:
                break
            case .start(let job):
                start(job)
            }
        }
    }

    /// Runs `job` after its delay (on the clock) with the context of now, and feeds the outcome back.
    func start(_ job: EffectAdmission.Job) {
        let ctx = context()
        let clock = self.clock
        spawnTask { runtime, runner in
            if job.delay > 0 {
                // cancelled: the runtime is stopping, and the lane dies with it
                do { try await clock.sleep(seconds: job.delay) } catch { return }
            }
            let events = await runner.run(job.effect, context: ctx)
            await runtime.finished(job, events)
        }
    }

    func finished(_ job: EffectAdmission.Job, _ events: [ControllerCore.Event]) {
        metrics.record(events)
        let completion = admission.completed(job)
        if completion.deliver {
            for ev in events {
                if case .rolePosted(let id, let ok) = ev {
                    let role = state.nodes[id]?.role.postPathComponent ?? "?"
                    if ok {
                        logger.info("role posted", metadata: ["instance.id": "\(id)", "instance.role": "\(role)"])
                    } else {
                        logger.warning("role post failed", metadata: ["instance.id": "\(id)", "instance.role": "\(role)"])
                    }
                }
                apply(ev)
            }
        }
        for next in completion.start { start(next) }
        publishSnapshot()
    }

    /// Hands `work` to `run()`'s task group (dropped when the runtime is not running).
    func spawnTask(_ work: @escaping @Sendable (ControllerRuntime, any ControllerEffectRunner) async -> Void) {
        guard let queue = self.work else { return }
        let runner = self.runner
        let board = self.board
        board.taskStarted()
        let result = queue.yield {
            await work(self, runner)
            board.taskEnded()
        }
        if case .terminated = result { board.taskEnded() }
    }

    // MARK: - Files and snapshot

    func publishSnapshot() {
        var snap = ControllerSnapshot()
        let pub = ControllerCore.published(state, settings: settings)
        snap.published = pub.keys.sorted()
        snap.prefill = pub.keys.filter { state.nodes[$0]?.role == .prefill }.count
        snap.decode = pub.keys.filter { state.nodes[$0]?.role == .decode }.count
        snap.instances = state.nodes.count
        snap.initialAssignmentDone = state.initialAssignmentDone
        snap.rankTableLoaded = tableLoaded
        for node in state.nodes.values {
            let role = node.role.postPathComponent ?? "none"
            let st = pub[node.id] != nil ? "published" : !node.isHealthy ? "unhealthy"
                : node.phase == .probing ? "probing" : node.phase == .faulty ? "faulty" : "candidate"
            snap.instancesByRoleState[role + "/" + st, default: 0] += 1
        }
        snap.effectsRunning = admission.running
        snap.effectsQueued = admission.queued
        let before = board.snapshot
        if before.published != snap.published {
            logger.info(
                "published set changed",
                metadata: [
                    "published": "\(snap.published)", "prefill": "\(snap.prefill)", "decode": "\(snap.decode)",
                    "instances": "\(snap.instances)",
                ])
        }
        board.set(snap)
    }

    func writeOutputFiles() {
        if let p = options.processStatePath, state.initialAssignmentDone { write(ProcessStateFile.encode(state), p) }
        if let p = options.clusterStatusPath { write(ClusterStatusFile.encode(state, coordinators: coordinatorOrder), p) }
    }

    func write(_ data: Data, _ path: String) {
        do {
            try AtomicFile.write(data, to: path)
            lastWriteError = nil
        } catch {
            if lastWriteError != error.description { logger.error("output file not written", metadata: ["error": "\(error)"]) }
            lastWriteError = error.description
        }
    }

    // MARK: - Recovery

    /// §9 "Takeover" on a plain restart: if a process-state file loads and some server of the table already has
    /// a role, the state is recovered (ids, counter, roles, groups, peers; live roles adopted) instead of decided.
    func recoverAtStartup() async {
        await recoverFromProcessState()
        adoptSavedIdentities()
    }

    /// Identities saved before the restart come back as departed: an instance still (or again) in the table
    /// keeps its id and remembered role instead of getting a new id.
    func adoptSavedIdentities() {
        guard let path = options.identityPath, FileManager.default.fileExists(atPath: path) else { return }
        do {
            let saved = try InstanceIdentityRegistry(jsonData: Data(try options.fileCheck.read(path)))
            state.registry.adoptDeparted(from: saved, now: clock.now())
        } catch {
            logger.warning("saved identities not loaded; new instances get new ids", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    func recoverFromProcessState() async {
        var stored: Data?
        if let store = stateStore {
            do { stored = try await store.load() } catch {
                logger.warning("state in etcd not read; trying the process file", metadata: ["error": "\(error)"])
            }
        }
        let path = stored != nil ? "etcd" : (options.processStatePath ?? "")
        guard stored != nil || (!path.isEmpty && FileManager.default.fileExists(atPath: path)) else { return }
        let file: ProcessStateFile
        do {
            file = try ProcessStateFile(data: try stored ?? Data(try options.fileCheck.read(path)))
        } catch {
            logger.warning("process state not loaded; deciding roles afresh", metadata: ["path": "\(path)", "error": "\(error)"])
            return
        }
        guard let table = await readClusterForRecovery() else { return }
        coordinatorOrder = table.coordinators
        let known = Set(file.servers.map(\.key))
        let keys = table.instances.map(\.key).filter(known.contains)
        let runner = self.runner
        let ctx = context()
        let statuses = await withTaskGroup(of: (InstanceKey, ServerStatus?).self) { group in
            for key in keys {
                group.addTask {
                    let events = await runner.run(.getStatus(id: -1, key: key), context: ctx)
                    if case .serverStatus(_, .success(let st))? = events.first { return (key, st) }
                    return (key, nil)
                }
            }
            var out: [InstanceKey: ServerStatus] = [:]
            for await (k, s) in group { if let s { out[k] = s } }
            return out
        }
        guard ControllerCore.serversHaveRoles(statuses) else {
            logger.info("no server reports a role; deciding roles afresh", metadata: ["path": "\(path)"])
            return
        }
        state = ControllerCore.recover(file: file, table: table.instances, statuses: statuses)
        logger.notice(
            "recovered from the process state",
            metadata: [
                "path": "\(path)", "instances": "\(state.nodes.count)",
                "roles": "\(state.nodes.keys.sorted().map { "\($0):\(state.nodes[$0]!.role.asciiCode)" })",
            ])
        publishSnapshot()
    }
}

