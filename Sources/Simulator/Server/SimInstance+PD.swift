import MSCore

extension SimInstance {
    // MARK: P side

    func deliverPrefill(_ a: ActiveRequest, _ h: PDHeaders, _ tok: TokenInfo, _ finish: FinishReason?, _ timing: TokenTiming) {
        guard let sink = a.sink else { return }
        let stream = a.request.stream
        let ctx = FaultContext(path: a.path, reqId: h.reqId, dialect: a.request.dialect, role: role.role.rawValue)
        a.tokens.append(tok)
        if let f = finish {
            // finished on P: the whole answer goes back in `output`
            let output: [UInt8]
            if stream {
                output = a.renderer.frames(for: tok, finish: f, timing: timing).flatMap(\.bytes)
            } else {
                output = a.renderer.nonStream(a.tokens, finish: f, timing: timing)
            }
            replyP(a, sink, PDWire.pReply(reqId: h.reqId, isStream: stream, isLastResp: true, output: output), ctx)
            finishRequest(a, success: true)
            return
        }
        // park the KV and hand the rest to D
        let firstFrames = stream ? a.renderer.frames(for: tok, finish: nil, timing: timing).flatMap(\.bytes) : []
        if let f = faults.take("p_send_d_fail", ctx) {
            engine.release(a.key)
            sendError(sink, .incomplete("[P Node] Send D request failed:\(f.params["why"] ?? "injected fault")"))
            finishRequest(a, success: false)
            return
        }
        parkKV(a.key, reqId: h.reqId)
        let params = DecodeParameters(
            reqId: h.reqId, promptTokens: Array(a.request.prompt.prefix(a.request.originalPromptLength)),
            firstTokens: Array(a.request.prompt.dropFirst(a.request.originalPromptLength)) + [tok.id],
            isStream: stream, maxNewToken: a.request.maxTokens, seed: a.request.outputSeed, model: modelName,
            dialect: a.request.dialect, details: a.request.details, includeUsage: a.request.includeUsage,
            id: a.request.tritonId ?? a.renderer.responseId, responseId: a.renderer.responseId, created: a.renderer.created,
            promptText: a.request.promptText, cachedTokens: a.renderer.cachedTokens,
            pNodeAddr: "\(configuration.ipAddress):\(configuration.interCommPort)", e2eStartTime: a.e2eStart, eosAfter: a.eosAfter)
        var p = params
        p.body = a.request.body
        p.path = a.path
        p.isRecompute = a.request.isRecompute
        // the request leaves this instance's books; the reply goes out when D answers
        requests[a.key] = nil
        if let id = a.reqId, byReqId[id] == a.key { byReqId[id] = nil }
        a.timeout?.cancel()
        a.e2eTimeout?.cancel()
        sink.onClientGone = nil
        guard let transport else {
            sendError(sink, .incomplete("[P Node] Send D request failed:no transport"))
            metrics.requestFailed += 1
            return
        }
        let port = h.targetPort ?? configuration.interCommPort
        transport.sendDecode(host: h.targetIP, port: port, parameters: p) { [weak self] why in
            guard let self else { return }
            self.pump()
            if let why {
                if let pk = self.parked.removeValue(forKey: h.reqId) { pk.timer.cancel(); self.engine.release(pk.key) }
                self.sendError(sink, .incomplete("[P Node] Send D request failed:\(why)"))
                self.metrics.requestFailed += 1
            } else {
                let body = stream
                    ? PDWire.pReply(reqId: h.reqId, isStream: true, isLastResp: false, output: firstFrames)
                    : PDWire.pReply(reqId: h.reqId, isStream: false)
                self.replyP(a, sink, body, ctx)
            }
            self.pump(); self.arm()
        }
    }

    func replyP(_ a: ActiveRequest, _ sink: any ResponseSink, _ body: [UInt8], _ ctx: FaultContext) {
        guard let f = faults.take("p_reply", ctx) else {
            sink.respond(status: 200, headers: jsonHeaders, body: body)
            return
        }
        let kind = f.mode ?? f.params["kind"] ?? "invalid_json"
        switch kind {
        case "invalid_json":
            sink.respond(status: 200, headers: jsonHeaders, body: Array(body.prefix(max(1, body.count / 2))))
        case "missing_field":
            var j = (try? JSON.parse(body)) ?? .obj([:])
            if case .object(var ms) = j { ms.removeValue(forKey: "isStream"); j = .object(ms) }
            sink.respond(status: 200, headers: jsonHeaders, body: j.bytes)
        case "wrong_reqid":
            let j = ((try? JSON.parse(body)) ?? .obj([:])).setting("reqId", "ffffffff")
            sink.respond(status: 200, headers: jsonHeaders, body: j.bytes)
        case "delay":
            let ms = f.double("ms") ?? 5000
            timers.schedule(at: now + ms) { sink.respond(status: 200, headers: self.jsonHeaders, body: body) }
        case "none":
            hung.append(sink)
        default:
            if kind.hasPrefix("status") {
                let status = Int(kind.split(separator: ":").last ?? "") ?? f.int("status") ?? 500
                sendError(sink, WireError(status: status, message: "Injected fault", type: errorType(status)))
            } else {
                sink.respond(status: 200, headers: jsonHeaders, body: body)
            }
        }
    }

    func parkKV(_ key: UInt64, reqId: String) {
        let t = timers.schedule(at: now + configuration.kvReleaseTimeout * scale) { [weak self] in
            guard let self, let p = self.parked.removeValue(forKey: reqId) else { return }
            self.engine.release(p.key)
        }
        parked[reqId] = (key, t)
    }

    /// D released the KV of `reqId` (docs/wire/simulator.md §3.2 `ReleaseKVCacheChannel`).
    @discardableResult
    public func releaseKV(reqId: String) -> Bool {
        pump()
        defer { pump(); arm() }
        guard let p = parked.removeValue(forKey: reqId) else { return false }
        p.timer.cancel()
        return engine.release(p.key)
    }

    // MARK: D side

    /// The decode call from a P. Returns nil when accepted, else the refusal text.
    public func receiveDecode(_ p: DecodeParameters) -> String? {
        pump()
        defer { pump(); arm() }
        if stopped { return "The service has been stopped." }
        guard role.isDecode else {
            if role.role == .flex { return "failed to register decode request handler, pdRole flex p_percentage = 100." }
            return "failed to register decode request handler, pdRole is \(role.role.rawValue)."
        }
        let ctx = ParseContext(modelName: modelName, maxIterTimes: profile.maxIterTimes, isRecompute: p.isRecompute)
        var req: InferenceRequest
        if let parsed = try? RequestParser.parse(dialect: p.dialect == .vllm ? .tgiGenerate : p.dialect, path: p.path, body: p.body.bytes, context: ctx) {
            req = parsed
        } else {
            req = InferenceRequest(
                dialect: p.dialect, stream: p.isStream, prompt: [], promptText: p.promptText, preGenerated: 0,
                maxTokens: p.maxNewToken, details: p.details, seed: nil, includeUsage: p.includeUsage, tritonId: p.id,
                body: p.body, isRecompute: false)
        }
        req.prompt = p.promptTokens + p.firstTokens
        req.preGenerated = p.firstTokens.count
        req.seed = req.seed ?? nil
        let key = nextKey
        nextKey += 1
        let ereq = EngineRequest(
            id: key, prompt: req.prompt, maxNewTokens: p.maxNewToken == 0 ? profile.maxIterTimes : p.maxNewToken,
            seed: p.seed, eosAfter: p.eosAfter, preGenerated: p.firstTokens.count, kind: .decodeOnly)
        do { try engine.submit(ereq, now: now) } catch { return "Failed to enqueue inferRequest." }
        var renderer = ResponseRenderer(
            request: req, options: configuration.wire, responseId: p.responseId, created: p.created, model: modelName,
            promptTokens: p.promptTokens.count, cachedTokens: p.cachedTokens, roleChunk: !configuration.wire.fixed(.dRoleChunk))
        renderer.prime((0..<p.firstTokens.count).map { TokenInfo.at($0, seed: p.seed) })
        let a = ActiveRequest(key: key, request: req, renderer: renderer, mode: .decode(p), sink: nil, arrival: now, path: p.path)
        a.reqId = p.reqId
        a.e2eStart = p.e2eStartTime
        a.firstTokenAt = now
        a.lastTokenAt = now
        a.tokens = renderer.tokens
        requests[key] = a
        byReqId[p.reqId] = key
        return nil
    }

    func onKVPulled(_ a: ActiveRequest) {
        guard case .decode(let p) = a.mode else { return }
        let ctx = FaultContext(path: a.path, reqId: p.reqId, dialect: a.request.dialect, role: role.role.rawValue)
        if let f = faults.take("kv_pull_fail", ctx) {
            let how = f.mode == "irreversibly" || f.params["reversible"] == "false" ? "irreversibly" : "reversibly"
            sendDResult(p.reqId, .error, Array("Pull kv failed \(how).".utf8))
            for l in role.links { role.failLink(l.id, code: "pull kv failed.") }
            engine.cancel(a.key)
            finishRequest(a, success: false)
            return
        }
        let parts = p.pNodeAddr.split(separator: ":")
        if parts.count == 2, let port = Int(parts[1]) { transport?.sendRelease(host: String(parts[0]), port: port, reqId: p.reqId) }
        if let f = faults.take("dresult_retry", ctx) {
            _ = f
            onDecodePreempted(a, generated: a.renderer.tokens.count)
            engine.cancel(a.key)
        } else if let f = faults.take("dresult_error", ctx) {
            sendDResult(p.reqId, .error, Array((f.params["message"] ?? "Engine error.").utf8))
            engine.cancel(a.key)
            finishRequest(a, success: false)
        }
    }

    func onDecodePreempted(_ a: ActiveRequest, generated: Int) {
        guard case .decode(let p) = a.mode else { return }
        let gen = (0..<generated).map { OutputGenerator(seed: p.seed).id(at: $0) }
        let body = a.request.recomputeBody(prompt: p.promptTokens, generated: gen)
        sendDResult(p.reqId, .retry, body)
        finishRequest(a, success: false, stopped: false)
    }

    func deliverDecode(_ a: ActiveRequest, _ tok: TokenInfo, _ finish: FinishReason?, _ timing: TokenTiming) {
        guard case .decode(let p) = a.mode else { return }
        if a.request.stream {
            let frames = a.renderer.frames(for: tok, finish: finish, timing: timing)
            let dataFrames = frames.filter { !$0.last }, lastFrames = frames.filter(\.last)
            // frames of one step go out as one message (the first holds D's role chunk and token 2)
            if !dataFrames.isEmpty { sendDResult(p.reqId, .data, dataFrames.flatMap(\.bytes)) }
            if !lastFrames.isEmpty {
                if configuration.wire.fixed(.doubleLastData) {
                    sendDResult(p.reqId, .lastData, lastFrames.flatMap(\.bytes))
                } else {
                    for f in lastFrames { sendDResult(p.reqId, .lastData, f.bytes) }
                }
            }
        } else {
            a.tokens.append(tok)
            if let f = finish { sendDResult(p.reqId, .lastData, a.renderer.nonStream(a.tokens, finish: f, timing: timing)) }
        }
        if finish != nil { finishRequest(a, success: true) }
    }

    // MARK: /dresult

    func openDResult(_ sink: any ResponseSink) {
        guard configuration.dmi else { sendError(sink, .badRequest("Non DMI does not support dresult request")); return }
        guard role.isDecode else {
            sendError(sink, .badRequest("Only the Decode node supports dresult but you send to \(role.role.rawValue)"))
            return
        }
        flushDResult()
        closeDResult(message: PDWire.closeOld)
        sink.startStream(status: 200, headers: SimInstance.sseHeaders)
        dresult = sink
        dresultSilent = false
        dresultLastWrite = now
        sink.onClientGone = { [weak self, weak sink] in
            guard let self, let sink, self.dresult === sink else { return }
            self.dresult = nil
        }
        scheduleHeartbeat()
    }

    func closeDResult(message: [UInt8]?) {
        guard let old = dresult else { return }
        dresult = nil
        old.onClientGone = nil
        if let message { old.write(message) }
        old.end()
    }

    func scheduleHeartbeat() {
        heartbeatTimer?.cancel()
        heartbeatTimer = timers.schedule(at: now + configuration.keepAliveCheck * scale) { [weak self] in
            guard let self, let link = self.dresult else { return }
            if self.role.role != .prefill, !self.dresultSilent,
                self.now - self.dresultLastWrite > self.configuration.keepAliveIdle * self.scale
            {
                link.write(PDWire.heartbeat)
                self.dresultLastWrite = self.now
            }
            self.scheduleHeartbeat()
        }
    }

    /// Sends one message on the `/dresult` link (or drops it when there is none).
    func sendDResult(_ reqId: String, _ kind: DResultKind, _ payload: [UInt8]) {
        guard let link = dresult else { metrics.dresultDropped += 1; return }
        let ctx = FaultContext(path: "/dresult", reqId: reqId, dialect: nil, role: role.role.rawValue)
        if let f = faults.take("dresult_drop", ctx) {
            switch f.mode ?? f.params["how"] ?? "close_msg" {
            case "tcp_close", "rst":
                dresult = nil; link.onClientGone = nil; link.abort()
            case "silent":
                dresultSilent = true
            default:
                closeDResult(message: Array("reqId:0xffffffffffffffff\u{0}close:injected fault.\u{0}".utf8))
            }
            metrics.dresultDropped += 1
            return
        }
        if dresultSilent { metrics.dresultDropped += 1; return }
        var msg = PDWire.message(reqId: reqId, kind: kind, payload: payload)
        if let f = faults.take("dresult_garble", ctx) {
            switch f.mode ?? "split" {
            case "no_nul": msg.removeLast()
            case "unknown_kind": msg = PDWire.message(reqId: reqId, kind: kind, payload: payload).replacingKind(with: "bogus")
            case "split":
                let half = msg.count / 2
                link.write(Array(msg[..<half]))
                msg = Array(msg[half...])
            default:
                dresultBuffer += msg
                return
            }
        }
        dresultLastWrite = now
        if configuration.coalesceDResult { dresultBuffer += msg } else { link.write(msg) }
    }

    func flushDResult() {
        guard !dresultBuffer.isEmpty else { return }
        defer { dresultBuffer.removeAll() }
        dresult?.write(dresultBuffer)
    }

    // MARK: inter-comm port

    func handleInterComm(_ r: SimRequest, _ sink: any ResponseSink) -> Bool {
        guard r.method == "POST" else { return false }
        switch r.path {
        case "/sim/pd/decode":
            guard let j = try? JSON.parse(r.body), let p = DecodeParameters(json: j) else {
                sink.respond(status: 200, headers: jsonHeaders, body: DecodeParameters.answer(valid: false, error: "invalid DecodeParameters"))
                return true
            }
            let why = receiveDecode(p)
            sink.respond(status: 200, headers: jsonHeaders, body: DecodeParameters.answer(valid: why == nil, error: why ?? ""))
        case "/sim/pd/release":
            let id = (try? JSON.parse(r.body))?["reqId"]?.stringValue ?? ""
            let ok = releaseKV(reqId: id)
            sendJSON(sink, 200, .obj(["released": .bool(ok)]))
        default:
            return false
        }
        return true
    }
}

extension Array where Element == UInt8 {
    func replacingKind(with kind: String) -> [UInt8] {
        guard let nul = firstIndex(of: 0), let colon = self[(nul + 1)...].firstIndex(of: UInt8(ascii: ":")) else { return self }
        return Array(self[...nul]) + Array(kind.utf8) + Array(self[colon...])
    }
}
