import Foundation
import MSCore
import Synchronization

// The live status page: `GET /v1/cluster` (JSON, README "Status page") and `GET /` for a browser, on the status and
// external ports. The data port's `/` belongs to TGI and is never served here.

extension Coordinator {
    /// Serves the status page's routes; false when `req` is not one of them (the port's own routes follow).
    func serveStatusPage(_ req: HTTPRequest, _ res: HTTPResponder) -> Bool {
        switch req.path {
        case "/v1/cluster":
            guard req.method == "GET" || req.method == "HEAD" else {
                res.respond(status: 405, headers: [("content-type", "application/json"), ("allow", "GET")],
                            body: Array("{\"message\":\"/v1/cluster takes GET\",\"status\":405}".utf8))
                return true
            }
            serveCluster(res)
            return true
        case "/", "/index.html":
            // a browser asks for HTML; a probe or script asking for / keeps the port's own answer
            let accept = req.headers["accept"] ?? ""
            guard req.method == "GET" || req.method == "HEAD", req.path == "/index.html" || accept.contains("text/html") else { return false }
            res.respond(status: 200, headers: [("content-type", "text/html; charset=utf-8"), ("cache-control", "no-cache"),
                                               ("x-content-type-options", "nosniff")],
                        body: StatusPage.html)
            return true
        default:
            return false
        }
    }

    /// Built on the link loop, which owns the `/dresult` links and the table of gone instances; answered on the
    /// request's own loop.
    private func serveCluster(_ res: HTTPResponder) {
        let box = res.bound
        linkLoop.execute { [self] in
            let now = DispatchTime.now().uptimeNanoseconds
            let body: [UInt8]
            if let c = self.live.cachedDocument, now &- c.builtAt < 250_000_000 {
                body = c.body
            } else {
                body = Array(self.clusterJSON().utf8)
                self.live.cachedDocument = (now, body)
            }
            // instance metrics are scraped only while someone watches
            self.scrapeInstancesIfDue()
            box.execute { $0.respond(status: 200, headers: [("content-type", "application/json"), ("cache-control", "no-store")], body: body) }
        }
    }

    // MARK: - hooks on the data path (loop threads: atomics only)

    /// The first byte of `t`'s answer reached its client; `instance` produced it (P in PD).
    func noteFirstToken(_ t: TrackedRequest, from instance: InstanceEntry?) {
        let now = DispatchTime.now().uptimeNanoseconds
        let elapsed = now &- t.arrivalNanos
        live.ttft.record(nanos: elapsed, now: now)
        instance?.load.stats.ttft.record(nanos: elapsed, now: now)
    }

    /// A live result frame of a PD request, relayed from D `d`.
    func noteFrame(_ pd: PDState, from d: InstanceEntry) {
        let now = DispatchTime.now().uptimeNanoseconds
        if pd.lastFrameNanos != 0, now > pd.lastFrameNanos {
            let gap = now - pd.lastFrameNanos
            live.itl.record(nanos: gap, now: now)
            d.load.stats.itl.record(nanos: gap, now: now)
        }
        pd.lastFrameNanos = now
    }

    /// A new view replaced `old`: instances of `old` that are not in `new` are shown as gone for a while. Link loop only.
    func noteRemoved(old: ClusterView, new: ClusterView, reason: String) {
        // a new instance set is shown at once, not after the cached document ages
        live.cachedDocument = nil
        let now = Date()
        for info in old.snapshot.instances where new.entries[info.id] == nil {
            guard let e = old.entries[info.id] else { continue }
            live.gone[info.id] = GoneInstance(info: info, ip: e.ip, port: e.port, since: now, reason: reason)
        }
        for id in new.entries.keys { live.gone[id] = nil }
        live.gone = live.gone.filter { now.timeIntervalSince($0.value.since) < 600 }
    }

    // MARK: - the JSON (link loop)

    /// `/dresult` link state of D `id`: up, connecting, relinking, down; nil outside PD or for a P.
    private func linkState(_ id: InstanceID, unlinkedIDs: Set<InstanceID>) -> String {
        guard let l = links[id], !l.closed else { return "down" }
        if l.relinkTimer != nil { return "relinking" }
        if unlinkedIDs.contains(id) { return l.call != nil ? "relinking" : "down" }
        if l.call != nil { return l.open ? "up" : "connecting" }
        return "down"
    }

    func clusterJSON() -> String {
        let view = cluster.view
        let now = DispatchTime.now().uptimeNanoseconds
        let unlinkedIDs = unlinked.withLock { $0 }
        let mode = config.scheduler.deployMode
        let j = JSONWriter()
        j.object {
            j.field("time_ms", UInt64(Date().timeIntervalSince1970 * 1000))
            j.field("uptime_seconds", Int(Date().timeIntervalSince(live.startedAt)))
            j.field("deploy_mode", mode.rawValue)
            j.field("algorithm", config.scheduler.algorithm.rawValue)
            j.field("ready", view.available)
            j.key("coordinator")
            j.object {
                // HA (Coordinator master/standby) is not built yet: the field is there for the page, "n/a" for now
                j.field("master", "n/a")
                j.field("in_flight", inFlightCount)
                j.field("requests_per_second", live.arrivals.perSecond(now: now))
                j.key("ttft_ms")
                j.latency(live.ttft.summary(now: now))
                j.key("itl_ms")
                j.latency(live.itl.summary(now: now))
            }
            j.key("controller")
            j.object { j.field("leader", "n/a") }
            j.key("instances")
            j.array {
                for info in view.snapshot.instances {
                    guard let e = view.entries[info.id] else { continue }
                    let circuit = e.load.circuit(now: now)
                    let link: String? = mode.isPD && info.role == .decode ? linkState(info.id, unlinkedIDs: unlinkedIDs) : nil
                    let state: String
                    var reason = ""
                    if info.offline {
                        state = "offline"
                        reason = "set offline by the Controller"
                    } else if circuit != .closed {
                        state = "down"
                        reason = "circuit \(circuit.rawValue) after \(e.load.failures.load(ordering: .relaxed)) failed attempts"
                    } else if let link, link != "up", link != "connecting" {
                        state = "down"
                        reason = "/dresult link \(link)"
                    } else {
                        state = "up"
                    }
                    j.element()
                    j.object {
                        instanceFields(j, info, ip: e.ip, port: e.port, state: state, reason: reason)
                        j.field("controller", info.offline ? "offline" : "published")
                        j.field("circuit", circuit.rawValue)
                        j.field("consecutive_failures", e.load.failures.load(ordering: .relaxed))
                        j.field("in_flight", e.inFlightCount)
                        j.key("slots")
                        j.object {
                            j.field("total", info.totalSlots)
                            j.field("free", info.availSlots)
                        }
                        j.key("kv")
                        j.object {
                            j.field("total_blocks", info.totalBlocks)
                            j.field("free_blocks", info.availBlocks)
                            j.field("used_ratio", info.totalBlocks > 0 ? max(0, min(1, 1 - Double(info.availBlocks) / Double(info.totalBlocks))) : nil)
                        }
                        let s = e.load.stats
                        j.field("requests_per_second", s.dispatched.perSecond(now: now))
                        j.key("ttft_ms")
                        j.latency(s.ttft.summary(now: now))
                        j.key("itl_ms")
                        j.latency(s.itl.summary(now: now))
                        j.field("prefix_cache_hit_rate", s.prefixHitRate)
                        j.field("link", link)
                    }
                }
                for (id, g) in live.gone.sorted(by: { $0.key < $1.key }) where view.entries[id] == nil {
                    j.element()
                    j.object {
                        instanceFields(j, g.info, ip: g.ip, port: g.port, state: "gone", reason: g.reason)
                        j.field("controller", "removed")
                        j.field("gone_since_ms", UInt64(g.since.timeIntervalSince1970 * 1000))
                    }
                }
            }
            // P→D: a D serves the P's it lists as peers (spec §3.1), within its group
            j.key("pd_links")
            j.array {
                for d in view.snapshot.instances(role: .decode) {
                    let state = linkState(d.id, unlinkedIDs: unlinkedIDs)
                    for p in d.peers where view.snapshot[p]?.role == .prefill {
                        j.element()
                        j.object {
                            j.field("prefill", p)
                            j.field("decode", d.id)
                            j.field("link", state)
                        }
                    }
                }
            }
            j.key("recent_errors")
            j.array {
                for r in live.errors.recent() {
                    j.element()
                    j.object {
                        j.field("time_ms", r.unixMilliseconds)
                        j.field("status", r.status)
                        j.field("instance", r.instance)
                        j.field("message", r.message)
                    }
                }
            }
        }
        return j.out
    }

    private func instanceFields(_ j: JSONWriter, _ info: InstanceInfo, ip: String, port: Int, state: String, reason: String) {
        j.field("id", info.id)
        let role = switch info.role {
        case .prefill: "prefill"
        case .decode: "decode"
        case .mixed: "mixed"
        }
        j.field("role", role)
        j.field("address", ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)")
        j.field("model", info.modelName)
        j.field("group", info.groupID)
        j.key("peers")
        j.array {
            for p in info.peers {
                j.element()
                j.raw(String(p))
            }
        }
        j.field("state", state)
        j.field("reason", reason)
    }

    // MARK: - prefix-cache hit rate (instances' own metrics)

    /// While someone watches the page, every 5 s: each instance's `npu_prefix_cache_hit_rate` from its metrics
    /// port. Link loop only; the scrape is off the data path and bounded by the HTTP timeout.
    private func scrapeInstancesIfDue() {
        let now = DispatchTime.now().uptimeNanoseconds
        guard !live.scraping, now &- live.lastScrape >= 5_000_000_000 else { return }
        let view = cluster.view
        let targets = view.snapshot.instances.compactMap { view.entries[$0.id] }.filter { $0.metricPort > 0 }
        guard !targets.isEmpty else { return }
        live.scraping = true
        live.lastScrape = now
        var pending = targets.count
        for e in targets {
            let req = HTTPClientRequest(method: "GET", host: e.ip, port: e.metricPort, path: "/metrics",
                                        timeoutMilliseconds: 2000)
            var body: [UInt8] = []
            var status = 0
            sideClient.stream(req, on: linkLoop, onHead: { s, _ in status = s }, onBody: { bytes in
                if body.count < 1 << 20 { body += bytes }
            }, onEnd: { [weak self] err in
                guard let self else { return }
                if err == nil, status == 200, let v = Self.prefixHitRate(inMetrics: body) {
                    e.load.stats.prefixHitRateBits.store(v.bitPattern, ordering: .relaxed)
                }
                pending -= 1
                if pending == 0 { self.live.scraping = false }
            })
        }
    }

    /// The value of `npu_prefix_cache_hit_rate` in a Prometheus text body (the mean if it has several series).
    static func prefixHitRate(inMetrics body: [UInt8]) -> Double? {
        var values: [Double] = []
        for line in String(decoding: body, as: UTF8.self).split(separator: "\n") where line.hasPrefix("npu_prefix_cache_hit_rate") {
            let rest = line.dropFirst("npu_prefix_cache_hit_rate".count)
            guard rest.first == " " || rest.first == "{" else { continue }
            if let v = rest.split(separator: " ").last.flatMap({ Double($0) }), v.isFinite { values.append(v) }
        }
        return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
    }
}

/// A small streaming JSON writer for the status document (no intermediate tree); a class so nested closures can write.
final class JSONWriter {
    var out = ""
    private var needComma = false

    func key(_ k: String) {
        if needComma { out += "," }
        out += JSON.quoted(k) + ":"
        needComma = false
    }

    /// Starts an array element.
    func element() {
        if needComma { out += "," }
        needComma = false
    }

    func raw(_ s: String) {
        out += s
        needComma = true
    }

    func object(_ body: () -> Void) {
        out += "{"
        needComma = false
        body()
        out += "}"
        needComma = true
    }

    func array(_ body: () -> Void) {
        out += "["
        needComma = false
        body()
        out += "]"
        needComma = true
    }

    func field(_ k: String, _ v: String?) {
        key(k)
        raw(v.map(JSON.quoted) ?? "null")
    }

    func field(_ k: String, _ v: Bool) {
        key(k)
        raw(v ? "true" : "false")
    }

    func field<I: BinaryInteger>(_ k: String, _ v: I?) {
        key(k)
        raw(v.map { String($0) } ?? "null")
    }

    func field(_ k: String, _ v: Double?) {
        key(k)
        guard let v, v.isFinite else { return raw("null") }
        raw(String((v * 1000).rounded() / 1000))
    }

    func latency(_ s: LatencySummary) {
        object {
            field("count", s.count)
            field("p50", s.p50)
            field("p90", s.p90)
            field("p99", s.p99)
        }
    }
}
