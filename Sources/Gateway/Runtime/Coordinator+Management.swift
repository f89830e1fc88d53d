import Foundation
import Logging
import MSCore
import Synchronization

extension Coordinator {
    private func json(_ res: HTTPResponder, _ status: Int, _ body: String) {
        res.respond(status: status, headers: [("content-type", "application/json")], body: Array(body.utf8))
    }

    private func managementError(_ res: HTTPResponder, _ status: Int, _ message: String) {
        json(res, status, "{\"message\":\(JSON.quoted(message)),\"status\":\(status)}")
    }

    // MARK: - management port (the Controller's API, docs/wire/coordinator.md §3.1–3.2)

    func handleManagement(_ req: HTTPRequest, _ res: HTTPResponder) {
        let routes: [String: String] = [
            "/v1/instances/refresh": "POST", "/v1/instances/offline": "POST", "/v1/instances/online": "POST",
            "/v1/instances/tasks": "GET", "/v1/instances/query_tasks": "POST", "/v1/coordinator_info": "GET",
            "/recvs_info": "GET", "/backup_info": "POST",
        ]
        guard let method = routes[req.path] else {
            managementError(res, 404, "unknown management path \(req.path)")
            return
        }
        guard req.method == method else {
            res.respond(status: 405, headers: [("content-type", "application/json"), ("allow", method)],
                        body: Array("{\"message\":\"\(req.path) takes \(method)\",\"status\":405}".utf8))
            return
        }
        if ["/v1/instances/refresh", "/v1/instances/offline", "/v1/instances/online"].contains(req.path),
            let current = controllerTerm.admit(req.headers["x-ms-term"])
        {
            logger.warning("call from a deposed Controller refused", metadata: ["path": "\(req.path)", "term": "\(req.headers["x-ms-term"] ?? "")", "current": "\(current)"])
            return managementError(res, 409, "stale controller term \(req.headers["x-ms-term"] ?? ""): a leader of term \(current) took over")
        }
        switch req.path {
        case "/v1/instances/refresh": refresh(req, res)
        case "/v1/instances/offline": setOffline(req, res, offline: true)
        case "/v1/instances/online": setOffline(req, res, offline: false)
        case "/v1/instances/tasks": tasks(req, res)
        case "/v1/instances/query_tasks": queryTasks(req, res)
        case "/v1/coordinator_info": coordinatorInfo(res)
        case "/recvs_info":
            json(res, 200, "{\"is_master\":\(isMaster),\"recv_flow\":\(takeArrivalsSinceLastRecvsInfo())}")
        default: backupInfo(req, res)
        }
    }

    func refresh(_ req: HTTPRequest, _ res: HTTPResponder) {
        let mode = config.scheduler.deployMode
        let plan: RefreshPlan
        do {
            plan = try RefreshParser.parse(req.body, pd: mode.isPD, singleContainer: mode == .pdDisaggregationSingleContainer)
        } catch {
            managementError(res, error.status, error.message)
            return
        }
        for reason in plan.rejected { logger.warning("refresh: instance skipped", metadata: ["reason": "\(reason)"]) }
        // applied on the link loop, one refresh at a time: new D's get their /dresult link first
        let box = res.bound
        linkLoop.execute { [self] in
            self.refreshQueue.append((plan, box))
            if !self.refreshing { self.nextRefresh() }
        }
    }

    /// Link loop only.
    func nextRefresh() {
        guard !refreshQueue.isEmpty else { return }
        refreshing = true
        let (plan, box) = refreshQueue.removeFirst()
        applyRefresh(plan) { [self] in
            box.execute { $0.respond(status: 200, body: []) }
            self.refreshing = false
            // not inside the link callback that may have completed this refresh
            self.linkLoop.execute { [self] in if !self.refreshing { self.nextRefresh() } }
        }
    }

    /// Builds the new view; D's without a link get one opened before they are added (docs/wire/coordinator.md §4.2, case 25).
    func applyRefresh(_ plan: RefreshPlan, done: @escaping () -> Void) {
        let mode = config.scheduler.deployMode
        let old = cluster.view
        let wanted = Set(plan.ids)
        var entries: [InstanceEntry] = []
        var offline = Set(old.snapshot.instances.filter(\.offline).map(\.id))
        offline.formIntersection(wanted)
        for (src, var info) in RefreshParser.infos(plan) where wanted.contains(src.id) {
            if isFaulty(id: info.id, virtualID: src.virtualID) {
                logger.warning("refresh: faulty instance kept out", metadata: ["instance": "\(info.id)"])
                continue
            }
            info.offline = offline.contains(info.id)
            if let existing = old.entries[info.id], existing.ip == src.ip, existing.port == src.port, existing.info.role == info.role {
                entries.append(existing.updated(info))
                continue
            }
            do {
                let up = try Upstream(host: src.ip, port: src.port, tls: instanceTLS)
                let key = InstanceKey(id: info.id, ip: src.ip, port: src.port)
                entries.append(InstanceEntry(info: info, ip: src.ip, port: src.port, metricPort: src.metricPort,
                                             interCommPort: src.interCommPort, virtualID: src.virtualID, upstream: up,
                                             load: cluster.load(for: key)))
            } catch {
                logger.warning("refresh: instance skipped", metadata: ["instance": "\(info.id)", "reason": "\(error)"])
            }
        }
        if mode.isPD, let first = plan.accepted.first {
            digs.withLock { d in
                if d == nil { d = DIGSScheduler(configuration: .init(config, blockSize: first.blockSize)) }
            }
        }
        // D's that need a (new) link
        var failed = Set<InstanceID>()
        var pending = 0
        var opening = false
        let commit = { [self] in
            let final = entries.filter { !failed.contains($0.info.id) }
            let decodeIDs = Set(final.filter { $0.info.role == .decode }.map(\.info.id))
            for (id, link) in self.links where !decodeIDs.contains(id) {
                link.close()
                self.links[id] = nil
                _ = self.unlinked.withLock { $0.remove(id) }
            }
            let kept = Set(final.map { ObjectIdentifier($0.upstream) })
            let removed = Set(old.entries.values.filter { !kept.contains(ObjectIdentifier($0.upstream)) }.map(\.info.id))
            let view = ClusterView(entries: final, initialized: old.initialized || !final.isEmpty, deployPD: mode.isPD)
            self.cluster.replace(view)
            self.noteRemoved(old: old, new: view, reason: "removed by a refresh from the Controller")
            if !removed.isEmpty || final.count != old.entries.count {
                self.logger.info("instances refreshed", metadata: ["instances": "\(final.map(\.info.id))", "removed": "\(removed.sorted())"])
            }
            // DECISIONS 11 and docs/decisions.md "Scale-in drains": requests on removed instances end with a reply,
            // never with silence, after a bounded drain
            for handle in self.registry.handles(on: removed) {
                handle.loop.execute { [self] in self.removedUnder(handle.request) }
            }
            done()
        }
        // a backup-mode standby keeps its instance set but holds no links (the master does; takeover opens them)
        if mode.isPD && isMaster {
            for e in entries where e.info.role == .decode {
                if let l = links[e.info.id], l.ip == e.ip, l.port == e.port, !l.closed { continue }
                links.removeValue(forKey: e.info.id)?.close()
                let link = DResultLink(instance: e.info.id, ip: e.ip, port: e.port, virtualID: e.virtualID)
                links[e.info.id] = link
                pending += 1
                opening = true
                openLink(link) { [self] ok in
                    if !ok {
                        self.logger.warning("refresh: D skipped, its /dresult link cannot be opened", metadata: ["instance": "\(e.info.id)"])
                        failed.insert(e.info.id)
                        link.close()
                        if self.links[e.info.id] === link { self.links[e.info.id] = nil }
                    }
                    pending -= 1
                    if pending == 0 { commit() }
                }
            }
        }
        if !opening { commit() }
    }

    /// A refresh removed the instance serving `t` (its loop). The refresh cannot say whether the instance was
    /// scaled in or died, so a proxied request may finish for up to `drain_timeout`: a scaled-in instance completes
    /// it, a dead one breaks its connection (an in-stream error at once). It fails at once when nothing can arrive
    /// any more: PD (the D's result link closes with the refresh), an instance whose circuit is open (it is not
    /// answering), or `drain_timeout` 0.
    func removedUnder(_ t: TrackedRequest) {
        guard !t.finished else { return }
        let drain = config.exceptions.drainTimeout
        guard t.pd == nil, drain > 0, let entry = t.instance, entry.load.routable else {
            return fail(t, .instanceRemoved, result: .upstreamError)
        }
        t.timers.append(t.responder.loop.schedule(afterMilliseconds: UInt64(drain) * 1000) { [unowned self] in
            guard !t.finished else { return }
            // registered again meanwhile (same id and address): nothing to end
            if let back = self.cluster.view.entries[entry.info.id], back.load === entry.load { return }
            self.fail(t, .instanceRemoved, result: .upstreamError)
        })
    }

    private func ids(_ body: [UInt8]) -> [InstanceID]? {
        guard let v = try? JSON.parse(body, maxDepth: 8), let arr = v["ids"]?.arrayValue, arr.count <= 4096 else { return nil }
        var out: [InstanceID] = []
        for x in arr {
            guard let n = x.intValue, n >= 0 else { return nil }
            out.append(InstanceID(n))
        }
        return out
    }

    func setOffline(_ req: HTTPRequest, _ res: HTTPResponder, offline: Bool) {
        let old = cluster.view
        guard old.initialized else { return managementError(res, 503, "MindIE-MS Coordinator is not ready") }
        guard let ids = ids(req.body) else { return managementError(res, 400, "body must be {\"ids\":[...]} with at most 4096 ids") }
        let set = Set(ids)
        let entries = old.snapshot.instances.compactMap { info -> InstanceEntry? in
            guard let e = old.entries[info.id] else { return nil }
            guard set.contains(info.id) else { return e }
            var i = e.info
            i.offline = offline
            return e.updated(i)
        }
        cluster.replace(ClusterView(entries: entries, initialized: true, deployPD: old.deployPD))
        res.respond(status: 200, body: [])
    }

    func tasks(_ req: HTTPRequest, _ res: HTTPResponder) {
        let view = cluster.view
        let counts = registry.counts()
        var out: [Int] = []
        for pair in (req.query ?? "").split(separator: "&").prefix(100) {
            let kv = pair.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0] == "id" else { continue }
            if let id = InstanceID(kv[1]), view.entries[id] != nil { out.append(counts[id] ?? 0) } else { out.append(-1) }
        }
        json(res, 200, TasksReply(tasks: out).body)
    }

    func queryTasks(_ req: HTTPRequest, _ res: HTTPResponder) {
        guard let v = try? JSON.parse(req.body, maxDepth: 8), let p = v["p_id"]?.intValue,
              let d = v["d_id"]?.intValue, let type = v["role_change_type"]?.intValue, type == 0 || type == 1 else {
            return json(res, 400, "{\"is_end\":true}")
        }
        let view = cluster.view
        let switching = InstanceID(type == 0 ? p : d)
        guard view.available, view.entries[switching] != nil else { return json(res, 200, "{\"is_end\":true}") }
        let busy = (registry.counts()[switching] ?? 0) > 0
        json(res, 200, "{\"is_end\":\(!busy)}")
    }

    func coordinatorInfo(_ res: HTTPResponder) {
        let view = cluster.view
        guard view.initialized else { return managementError(res, 503, "MindIE-MS Coordinator is not ready") }
        let booked = usesDIGS ? digs.withLock { $0?.allocated(view.snapshot) } : nil
        let now = DispatchTime.now().uptimeNanoseconds
        // beyond the reference: an instance whose passive-health circuit is not closed says so (the Controller ignores
        // unknown keys); a healthy instance's entry stays byte-identical to the reference's
        func circuit(_ id: InstanceID) -> String? {
            let c = view.entries[id]?.load.circuit(now: now) ?? .closed
            return c == .closed ? nil : c.rawValue
        }
        let schedule: [CoordinatorInfo.Schedule]
        if let booked {
            schedule = booked.map { .init(id: Int($0.id), allocatedSlots: $0.slots, allocatedBlocks: $0.blocks, circuit: circuit($0.id)) }
        } else {
            schedule = view.snapshot.instances.map { i in
                .init(id: Int(i.id), allocatedSlots: view.entries[i.id]?.inFlightCount ?? 0, allocatedBlocks: 0, circuit: circuit(i.id))
            }
        }
        let (input, output) = lengthInfo()
        let info = CoordinatorInfo(
            scheduleInfo: schedule, requestNum: view.entries.isEmpty ? nil : arrivalCount,
            inputLength: Int(input), outputLength: Int(output))
        json(res, 200, info.body)
    }

    func backupInfo(_ req: HTTPRequest, _ res: HTTPResponder) {
        guard cluster.view.initialized else { return json(res, 503, "{\"update_successfully\":false}") }
        guard let v = try? JSON.parse(req.body, maxDepth: 8), v["is_master"]?.boolValue != nil,
              let abnormal = v["is_abnormal"]?.boolValue else {
            return json(res, 400, "{\"update_successfully\":false}")
        }
        setBackupAbnormal(abnormal)
        json(res, 200, "{\"update_successfully\":true}")
    }

    // MARK: - status port (probes, docs/wire/coordinator.md §3.3)

    func handleStatus(_ req: HTTPRequest, _ res: HTTPResponder) {
        if serveStatusPage(req, res) { return }
        guard req.method == "GET" else {
            return res.respond(status: 405, headers: [("allow", "GET")], body: Array("probes take GET\n".utf8))
        }
        let view = cluster.view
        let ready = view.available
        switch req.path {
        case "/v1/startup", "/v1/health", "/v2/health/live":
            res.respond(status: 200, body: [])
        case "/v2/health/ready":
            res.respond(status: ready ? 200 : 503, body: [])
        case "/v1/readiness":
            // spec §3.3: with backup mode on, also this node is master
            res.respond(status: ready && isServing ? 200 : 503, body: [])
        default:
            let parts = req.path.split(separator: "/")
            if parts.count == 4, parts[0] == "v2", parts[1] == "models", parts[3] == "ready" {
                // DECISIONS 12: any registered instance's model name
                let model = String(parts[2])
                let known = view.snapshot.instances.contains { $0.modelName == model }
                res.respond(status: ready && known ? 200 : 503, body: [])
            } else {
                res.respond(status: 404, headers: [("content-type", "application/json")],
                            body: Array("{\"message\":\"unknown probe path \(req.path)\",\"status\":404}".utf8))
            }
        }
    }

    // MARK: - external port (/metrics, docs/wire/coordinator.md §7 and DECISIONS 15)

    func handleExternal(_ req: HTTPRequest, _ res: HTTPResponder) {
        if serveStatusPage(req, res) { return }
        guard req.path == "/metrics" else {
            return res.respond(status: 404, headers: [("content-type", "application/json")],
                               body: Array("{\"message\":\"only /metrics is served here\",\"status\":404}".utf8))
        }
        guard req.method == "GET" else { return res.respond(status: 405, headers: [("allow", "GET")], body: []) }
        serveMetrics(res)
    }

    /// `/metrics` text (external port, and the data port unless `api_config.metrics_on_data_port` is false).
    func serveMetrics(_ res: HTTPResponder) {
        let view = cluster.view
        let counters = metrics.requestCounters(inFlight: inFlightCount)
        aggregator.render(view: view, client: sideClient, loop: res.loop, timeoutMilliseconds: UInt64(max(config.http.httpTimeoutSeconds, 1)) * 1000,
                          overrides: counters) { [metricsSink] instances, up in
            var body = instances
            let upName = CoordinatorMetrics.prefix + "instance_up"
            body += Array("# HELP \(upName) \(CoordinatorMetrics.help[upName]!)\n# TYPE \(upName) gauge\n".utf8)
            for (id, ok) in up.sorted(by: { $0.key < $1.key }) {
                body += Array("\(upName){instance=\"\(id)\"} \(ok ? 1 : 0)\n".utf8)
            }
            body += CoordinatorMetrics.instanceSeries(view)
            body += CoordinatorMetrics.withHelp(metricsSink.render())
            res.respond(status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")], body: body)
        }
    }
}
