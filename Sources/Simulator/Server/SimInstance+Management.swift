public import MSCore

extension SimInstance {
    /// `SERVICE_INIT`, `SERVICE_NORMAL`, `SERVICE_BUSY`, `SERVICE_ABNORMAL` (without the prefix).
    public var serviceState: String {
        if let h = faults.active("health") { return (h.params["state"] ?? h.mode ?? "ABNORMAL").uppercased() }
        if !engineReady { return "INIT" }
        if configuration.dmi {
            if role.status != .ready || role.okLinks == 0 { return "INIT" }
        }
        return "NORMAL"
    }

    /// `/v1/status` (or `/v2/status` with `v2`).
    public func statusJSON(v2: Bool = false) -> JSON {
        let processing = engine.runningCount + engine.waitingCount
        let slots = max(0, profile.maxBatchSize - processing)
        let blocks = engine.pool.availableBlocks
        var resource = JSON.obj([
            "availSlotsNum": .int(slots), "availBlockNum": .int(blocks), "waitingRequestNum": .int(engine.waitingCount),
            "runningRequestNum": .int(engine.runningCount), "swappedRequestNum": 0, "freeNpuBlockNums": .int(blocks),
            "freeCpuBlockNums": 0, "totalNpuBlockNums": .int(engine.pool.totalBlocks), "totalCpuBlockNums": 0,
        ])
        if v2 {
            resource = resource.setting("totalAvailNpuSlotsNum", .int(slots)).setting("totalAvailNpuBlockNum", .int(blocks))
                .setting("dpInstMap", [[0, .int(blocks)]]).setting("maxAvailNpuBlockNum", .int(blocks))
        }
        var service = JSON.obj(["roleStatus": .string(role.status.rawValue), "currentRole": .string(role.role.rawValue)])
        if role.role == .flex, let p = role.pPercentage { service = service.setting("p_percentage", .int(p)) }
        return .obj(["service": service, "resource": resource, "linkStatus": role.linkStatusJSON])
    }

    public var configJSON: JSON {
        .obj([
            "modelName": .string(modelName), "maxSeqLen": .int(profile.maxSeqLen), "npuMemSize": -1, "cpuMemSize": 0,
            "worldSize": 4, "maxOutputLen": .int(profile.maxIterTimes), "cacheBlockSize": .int(profile.blockSize),
        ])
    }

    func badJSON(_ path: String) -> Fault? {
        faults.take("bad_json", FaultContext(path: path, reqId: nil, dialect: nil, role: role.role.rawValue))
    }

    func garbled(_ j: JSON, _ f: Fault) -> [UInt8] {
        switch f.mode ?? f.params["kind"] ?? "invalid" {
        case "missing_field":
            if case .object(var ms) = j, let first = ms.keys.first { ms.removeValue(forKey: first); return JSON.object(ms).bytes }
            return j.bytes
        case "out_of_range":
            if j["resource"] != nil { return j.setting("resource", (j["resource"] ?? .null).setting("availSlotsNum", -1)).bytes }
            return j.setting("cacheBlockSize", 0).setting("maxOutputLen", 0).bytes
        default:
            let b = j.bytes
            return Array(b.prefix(b.count / 2))
        }
    }

    func handleManagement(_ r: SimRequest, _ sink: any ResponseSink) -> Bool {
        let path = r.path
        switch (r.method, path) {
        case ("GET", "/v1/config"):
            if let f = badJSON(path) { sink.respond(status: 200, headers: jsonHeaders, body: garbled(configJSON, f)); return true }
            sendJSON(sink, 200, configJSON)
        case ("GET", "/v1/status"), ("GET", "/v2/status"):
            if stopped { sendError(sink, .unavailable("The service has been stopped.")); return true }
            settleRole()
            let j = statusJSON(v2: path == "/v2/status")
            if let f = badJSON(path) { sink.respond(status: 200, headers: jsonHeaders, body: garbled(j, f)); return true }
            sendJSON(sink, 200, j)
        case ("GET", "/stopService"):
            stopService(force: r.queryItems["mode"] == "Force", sink)
        case ("GET", "/health"):
            if stopped { sink.respond(status: 503, headers: closeHeaders, body: []); return true }
            let ok = engineReady && serviceState != "ABNORMAL" && !(configuration.dmi && role.allLinksFailed)
            sink.respond(status: ok ? 200 : 500, headers: closeHeaders, body: [])
        case ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"):
            if stopped { sendJSON(sink, 503, .obj(["message": "Service is abnormal"])); return true }
            let ready = path.hasSuffix("ready")
            if configuration.dmi && role.allLinksFailed {
                sendJSON(sink, 500, .obj(["message": "DMI connection is unhealthy"])); return true
            }
            switch serviceState {
            case "NORMAL": sink.respond(status: 200, headers: closeHeaders, body: [])
            case "BUSY":
                if ready { sendJSON(sink, 503, .obj(["message": "Service is alive but busy. Consider reducing request frequency"])) } else {
                    sendJSON(sink, 200, .obj(["message": "Service is alive but busy"]))
                }
            default: sendJSON(sink, 500, .obj(["message": "Service is abnormal"]))
            }
        case ("GET", "/info"):
            sendJSON(sink, 200, .obj([
                "model_id": .string(modelName), "model_dtype": "float16", "max_concurrent_requests": .int(profile.maxBatchSize),
                "max_input_length": .int(profile.maxInputTokenLen), "max_total_tokens": .int(profile.maxSeqLen),
                "max_batch_total_tokens": .int(profile.totalBlocks * profile.blockSize),
                "models": [.obj(["model_id": .string(modelName), "max_total_tokens": .int(profile.maxSeqLen)])],
                "version": "1.0.0",
            ]))
        case ("GET", "/metrics-json"):
            sendJSON(sink, 200, metricsJSON)
        default:
            if r.method == "GET", path.hasPrefix("/health/timed") {
                timedHealth(path, sink); return true
            }
            if r.method == "POST", path.hasPrefix("/v1/role/") || path.hasPrefix("/v2/role/") {
                let termHeader = r.headers.first { $0.name.lowercased() == "x-ms-term" }?.value
                if let t = termHeader.flatMap({ Int64($0) }) {
                    guard t >= controllerTerm else {
                        sendJSON(sink, 409, .obj(["message": .string("stale controller term \(t): a leader of term \(controllerTerm) took over")]))
                        return true
                    }
                    controllerTerm = t
                }
                let name = String(path.dropFirst("/v1/role/".count))
                rolePostLog.append("\(name)@\(termHeader ?? "0")")
                postRole(name, r.body, sink); return true
            }
            if r.method == "GET", path.hasPrefix("/v2/models/") {
                let parts = path.split(separator: "/")
                if parts.count == 4, parts[3] == "ready" {
                    if stopped { sendJSON(sink, 503, .obj(["message": "Service is abnormal"])); return true }
                    let ok = String(parts[2]) == modelName && serviceState == "NORMAL"
                    sink.respond(status: ok ? 200 : (String(parts[2]) == modelName ? 500 : 404), headers: closeHeaders, body: [])
                    return true
                }
                if parts.count == 4, parts[3] == "getSlotCount" {
                    guard String(parts[2]) == modelName else { sendError(sink, .notFound("Model \(parts[2]) not found.")); return true }
                    sendJSON(sink, 200, .obj([
                        "total_slots": .int(profile.maxBatchSize), "free_slots": .int(engine.availableSlots),
                        "available_tokens_length": .int(engine.pool.availableBlocks * profile.blockSize),
                    ]))
                    return true
                }
            }
            return false
        }
        return true
    }

    func settleRole() {
        role.settle(now: now)
    }

    func postRole(_ name: String, _ body: [UInt8], _ sink: any ResponseSink) {
        let ctx = FaultContext(path: "/v1/role/\(name)", reqId: nil, dialect: nil, role: role.role.rawValue)
        var linkFailure: String?
        var neverReady = false
        if let f = faults.take("role_fail", ctx) {
            let kind = f.mode ?? f.params["kind"] ?? "503"
            switch kind {
            case "422":
                sendJSON(sink, 422, .obj(["error": "Req body converts to json fail. Reset to previous node status.", "error_type": "Input validation error"]))
                return
            case "503":
                sendJSON(sink, 503, .obj(["error": "Update pd info failed. Reset to previous node status.", "error_type": "Service Unavailable"]))
                return
            case "never_ready": neverReady = true
            default:
                if kind.hasPrefix("link_failed") { linkFailure = String(kind.split(separator: ":").dropFirst().first ?? "1") }
            }
        }
        let wasPrefill = role.role == .prefill
        let reply = role.post(
            role: name, body: body, now: now, linkDelay: configuration.linkDelay * scale, linkFailure: linkFailure,
            fixSticky: configuration.wire.fixed(.stickySwitching),
            lowercaseType: !configuration.wire.fixed(.roleErrorType))
        if reply.status == 200 {
            neverReadyHold = neverReady
            if wasPrefill != (role.role == .prefill), !requests.isEmpty {
                failAll(.incomplete("The role of the node has changed."))
            }
            if role.role == .prefill { closeDResult(message: nil) }
            scheduleRoleCheck()
        }
        sink.respond(status: reply.status, headers: jsonHeaders, body: reply.body)
    }

    func scheduleRoleCheck() {
        guard roleCheckTimer == nil || roleCheckTimer?.isPending == false else { return }
        roleCheckTimer = timers.schedule(at: now + configuration.roleCheckInterval * scale) { [weak self] in
            guard let self else { return }
            self.roleCheckTimer = nil
            if !self.neverReadyHold, self.now >= self.roleHoldUntil { self.role.check(now: self.now) } else { self.role.settle(now: self.now) }
            if self.role.status == .switching || !self.role.pending.isEmpty { self.scheduleRoleCheck() }
        }
    }

    func stopService(force: Bool, _ sink: any ResponseSink) {
        if stopped || stopPending != nil {
            sendError(sink, .incomplete("The service has been stopped."))
            return
        }
        if force {
            stopped = true
            sink.respond(status: 200, headers: closeHeaders, body: [])
            onStop?(true)
            return
        }
        stopped = true
        stopPending = sink
        checkStopDrained()
    }

    func checkStopDrained() {
        guard let sink = stopPending else { return }
        if requests.isEmpty && engine.isIdle {
            stopPending = nil
            sink.respond(status: 200, headers: closeHeaders, body: [])
            onStop?(false)
        } else {
            timers.schedule(at: now + 100) { [weak self] in self?.checkStopDrained() }
        }
    }

    func timedHealth(_ path: String, _ sink: any ResponseSink) {
        var seconds = 10.0
        if path.count > "/health/timed".count {
            guard path.hasPrefix("/health/timed-"), let n = Double(path.dropFirst("/health/timed-".count)), n >= 1, n <= 600 else {
                sink.respond(status: 404, headers: [], body: []); return
            }
            seconds = n
        }
        let healthy = JSON.obj(["status": "healthy"])
        if stopped && !configuration.wire.fixed(.timedHealthAfterStop) { sendJSON(sink, 200, healthy); return }
        let key = nextKey
        nextKey += 1
        let req = InferenceRequest(
            dialect: .mindie, stream: false, prompt: Tokenizer.encode("health"), promptText: "health", preGenerated: 0,
            maxTokens: 1, details: false, seed: 1, includeUsage: false, tritonId: nil, body: .obj([:]), isRecompute: false)
        do { try engine.submit(EngineRequest(id: key, prompt: req.prompt, maxNewTokens: 1, seed: 1), now: now) } catch {
            sink.respond(status: 500, headers: closeHeaders, body: []); return
        }
        let a = ActiveRequest(
            key: key, request: req,
            renderer: ResponseRenderer(request: req, options: configuration.wire, responseId: "health", created: 0, model: modelName, promptTokens: 1),
            mode: .probe, sink: nil, arrival: now, path: path)
        let deadline = timers.schedule(at: now + seconds * 1000 * scale) { [weak self, weak a] in
            guard let self, let a else { return }
            self.engine.cancel(a.key)
            self.finishRequest(a, success: false)
            sink.respond(status: 500, headers: self.closeHeaders, body: [])
        }
        a.onDone = { [weak self] in
            deadline.cancel()
            guard let self else { return }
            self.sendJSON(sink, 200, healthy)
        }
        requests[key] = a
    }

    // MARK: metrics port

    func refreshGauges() {
        metrics.running = Double(engine.runningCount)
        metrics.waiting = Double(engine.waitingCount)
        let total = Double(max(1, engine.pool.totalBlocks))
        metrics.npuCacheUsage = Double(engine.pool.usedBlocks) / total
        metrics.radixLookups = Double(engine.pool.lookedUpTokens)
        metrics.radixHits = Double(engine.pool.hitTokens)
        metrics.prefixHitRate = engine.pool.lookedUpTokens == 0 ? 0 : Double(engine.pool.hitTokens) / Double(engine.pool.lookedUpTokens)
        metrics.preemptions = UInt64(engine.preemptions)
        // throughput over the window since the last sample at least 1 s old
        let t = now
        if let last = throughputSample {
            if t - last.time >= 1000 {
                let dt = (t - last.time) / 1000
                metrics.promptThroughput = Double(metrics.promptTokens - last.prompt) / dt
                metrics.generationThroughput = Double(metrics.generationTokens - last.generation) / dt
                throughputSample = (t, metrics.promptTokens, metrics.generationTokens)
            }
        } else {
            throughputSample = (t, metrics.promptTokens, metrics.generationTokens)
        }
    }

    public func metricsText() -> String {
        refreshGauges()
        return metrics.render(modelName: modelName)
    }

    var metricsJSON: JSON {
        refreshGauges()
        return .obj([
            "request_received_total": .int(Int64(metrics.requestReceived)), "request_success_total": .int(Int64(metrics.requestSuccess)),
            "request_failed_total": .int(Int64(metrics.requestFailed)), "prompt_tokens_total": .int(Int64(metrics.promptTokens)),
            "generation_tokens_total": .int(Int64(metrics.generationTokens)), "num_preemptions_total": .int(Int64(metrics.preemptions)),
            "num_requests_running": .double(metrics.running), "num_requests_waiting": .double(metrics.waiting),
            "npu_cache_usage_perc": .double(metrics.npuCacheUsage), "all_radix_match_num": .double(metrics.radixLookups),
            "npu_radix_match_hit_num": .double(metrics.radixHits), "sim_dresult_dropped_total": .int(Int64(metrics.dresultDropped)),
        ])
    }

    func handleMetrics(_ r: SimRequest, _ sink: any ResponseSink) -> Bool {
        guard r.method == "GET", r.path == "/metrics" else { return false }
        guard configuration.metricsEnabled else { sink.respond(status: 500, headers: [], body: []); return true }
        var text = metricsText()
        if let f = badJSON("/metrics") {
            switch f.mode ?? "invalid" {
            case "extra_family": text += "# HELP sim_extra Extra.\n# TYPE sim_extra gauge\nsim_extra{model_name=\"\(modelName)\"} 1\n"
            case "missing_field": text = text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst(3).joined(separator: "\n")
            default: text = String(text.prefix(text.count / 2))
            }
        }
        text += "# HELP sim_dresult_dropped_total D results dropped for want of a /dresult link.\n# TYPE sim_dresult_dropped_total counter\nsim_dresult_dropped_total{model_name=\"\(modelName)\"} \(metrics.dresultDropped)\n"
        sink.respond(status: 200, headers: [("content-type", "text/plain; charset=utf-8")], body: Array(text.utf8))
        return true
    }

    // MARK: control port

    public var stateJSON: JSON {
        refreshGauges()
        return .obj([
            "index": .int(index), "model": .string(modelName), "profile": .string(profile.name), "now": .double(now),
            "serviceState": .string(serviceState), "stopped": .bool(stopped), "status": statusJSON(),
            "engine": .obj([
                "waiting": .int(engine.waitingCount), "running": .int(engine.runningCount), "parked": .int(engine.parkedCount),
                "freeBlocks": .int(engine.pool.freeBlocks), "evictableBlocks": .int(engine.pool.evictableBlocks),
                "totalBlocks": .int(engine.pool.totalBlocks), "speedup": .double(engine.configuration.speedup),
                "paused": .bool(engine.paused),
            ]),
            "dresultLinked": .bool(dresult != nil), "rolePosts": .array(rolePostLog.map { .string($0) }),
            "controllerTerm": .int(Int(controllerTerm)), "faults": .array(faults.faults.map(\.json)), "metrics": metricsJSON,
        ])
    }

    func handleControl(_ r: SimRequest, _ sink: any ResponseSink) -> Bool {
        let path = r.path
        guard path.hasPrefix("/sim/") else { return false }
        let body = (try? JSON.parse(r.body)) ?? .obj([:])
        switch (r.method, path) {
        case ("GET", "/sim/state"):
            sendJSON(sink, 200, stateJSON)
        case ("PATCH", "/sim/config"):
            if let s = body["speedup"]?.doubleValue, s > 0 { engine.setSpeedup(s); configuration.engine.speedup = s }
            if let p = body["eos"]?.doubleValue { engine.setEOSProbability(p) }
            if let m = body["wire"]?.stringValue.flatMap(WireMode.init(rawValue:)) { configuration.wire.mode = m }
            if let fixes = body["fix"]?.arrayValue {
                configuration.wire.fixes = Set(fixes.compactMap { $0.stringValue.flatMap(WireFix.init(rawValue:)) })
            }
            if let b = body["totalBlocks"]?.intValue { engine.resizePool(totalBlocks: Int(b)) }
            sendJSON(sink, 200, stateJSON)
        case ("POST", "/sim/clock/advance"):
            guard let advance = advanceClock else {
                sendJSON(sink, 409, .obj(["error": "the clock is not manual", "error_type": "Conflict"])); return true
            }
            advance(body["ms"]?.doubleValue ?? 0)
            sendJSON(sink, 200, .obj(["now": .double(now)]))
        default:
            if path.hasPrefix("/sim/faults/") {
                let id = String(path.dropFirst("/sim/faults/".count))
                switch r.method {
                case "PUT":
                    guard let f = Fault.parse(json: body, id: id) else {
                        sendJSON(sink, 422, .obj(["error": "a fault needs a type", "error_type": "Input Validation Error"])); return true
                    }
                    putFault(f)
                    sendJSON(sink, 200, f.json)
                case "DELETE":
                    if removeFault(id) { sink.respond(status: 204, headers: [], body: []) } else {
                        sendJSON(sink, 404, .obj(["error": .string("no fault \(id)"), "error_type": "NotFoundError"]))
                    }
                default:
                    sendJSON(sink, 405, .obj(["error": "method not allowed", "error_type": "Method Not Allowed"]))
                }
                return true
            }
            if r.method == "POST", path.hasPrefix("/sim/actions/") {
                let type = String(path.dropFirst("/sim/actions/".count))
                var f = Fault.parse(json: body.setting("type", .string(type)), id: "action") ?? Fault(id: "action", type: type)
                f.id = "action-\(type)"
                switch type {
                case "role_unknown", "kv_shrink", "crash":
                    applyStandingFault(f)
                case "health", "hang":
                    putFault(f)
                case "clear_cache":
                    break
                default:
                    sendJSON(sink, 404, .obj(["error": .string("unknown action \(type)"), "error_type": "NotFoundError"])); return true
                }
                sendJSON(sink, 200, stateJSON)
                return true
            }
            return false
        }
        return true
    }
}
