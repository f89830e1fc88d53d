import Foundation
import Logging
import MSCore
import Synchronization

/// The `/dresult` links, one per D (docs/wire/coordinator.md §4.2 step 4, §4.3), and the faulty ids of a D whose
/// link could not be restored. Link loop only.
extension Coordinator {
    /// Opens `link`; `opened` reports the first outcome. Later losses relink (§4.3).
    func openLink(_ link: DResultLink, opened: ((Bool) -> Void)? = nil) {
        let req = HTTPClientRequest(method: "GET", host: link.ip, port: link.port, path: "/dresult",
                                    headers: [("user-agent", config.http.userAgent)], timeoutMilliseconds: 30_000)
        var ok = false
        var reported = false
        link.parser = DResultParser()
        let id = link.instance
        let settled = { [weak self] in
            guard let self, !reported else { return }
            reported = true
            self.logger.debug("/dresult link open", metadata: ["instance": "\(id)", "head": "\(ok)"])
            link.open = true
            link.relinkAttempts = 0
            _ = self.unlinked.withLock { $0.remove(id) }
            opened?(true)
        }
        link.call = sideClient.stream(req, on: linkLoop, onHead: { status, _ in
            guard status == 200 else { return }
            ok = true
            settled()
        }, onBody: { [weak self] bytes in
            guard let self, ok, link.call != nil else { return }
            for event in link.parser.feed(bytes) {
                switch event {
                case .frame(let reqId, let kind, let payload):
                    self.deliverDecodeFrame(reqId: reqId, from: id, kind: kind, payload: payload)
                case .close:
                    // never cancel a call inside its own callback (the C side frees it on return):
                    // drop it on the next turn of the loop
                    let call = link.call
                    link.call = nil
                    let box = LoopBound(link, on: self.linkLoop)
                    self.linkLoop.schedule(afterMilliseconds: 0) { call?.cancel(); _ = box }
                    ok = false
                    self.linkLost(link, why: "close message")
                    return
                }
            }
        }, onEnd: { [weak self] err in
            guard let self else { return }
            if link.call == nil && !ok && reported { return } // already handled (close message)
            link.call = nil
            if !reported {
                self.logger.debug("/dresult link not opened", metadata: ["instance": "\(id)", "error": "\(String(describing: err))"])
                reported = true
                if let opened { opened(false) } else { self.relinkFailed(link) }
                return
            }
            self.linkLost(link, why: err.map { "\($0)" } ?? "link ended")
        })
        // A D may hold the response head until its first message (a heartbeat comes after 5 s idle): a link that
        // neither failed nor was refused within 300 ms counts as open; a later failure is a link loss.
        // A relink must see the head (or a message): a D that accepts but never answers is not back.
        let call = link.call
        let relink = opened == nil
        linkLoop.schedule(afterMilliseconds: relink ? linkHeadTimeoutMilliseconds : 300) { [weak self] in
            guard let self, link.call === call, let call, !reported else { return }
            if !relink { return settled() }
            reported = true
            link.call = nil
            call.cancel()
            self.logger.debug("/dresult relink got no answer", metadata: ["instance": "\(id)"])
            self.relinkFailed(link)
        }
    }

    func linkLost(_ link: DResultLink, why: String) {
        guard !link.closed, !isShutDown.load(ordering: .relaxed) else { return }
        logger.warning("/dresult link lost", metadata: ["instance": "\(link.instance)", "why": "\(why)"])
        let dID = link.instance
        _ = unlinked.withLock { $0.insert(dID) }
        // their results cannot arrive any more: fail them now (DECISIONS 9, 11) rather than let them stall
        for handle in registry.handles(on: [link.instance]) {
            handle.loop.execute { [self] in
                guard let pd = handle.request.pd, pd.decode?.info.id == dID else { return }
                self.fail(handle.request, .decodeLinkLost, result: .upstreamError)
            }
        }
        relinkFailed(link, first: true)
    }

    /// Schedules the next relink, or gives the D up after `max_retry` attempts.
    func relinkFailed(_ link: DResultLink, first: Bool = false) {
        guard !link.closed, !isShutDown.load(ordering: .relaxed) else { return }
        if !first { link.relinkAttempts += 1 }
        guard link.relinkAttempts < config.exceptions.maxRetry else { return markFaulty(link) }
        let box = LoopBound(link, on: linkLoop)
        link.relinkTimer = linkLoop.schedule(afterMilliseconds: first ? 200 : 500) { [weak self] in
            guard let self, !box.value.closed else { return }
            box.value.relinkTimer = nil
            self.logger.debug("/dresult relink", metadata: ["instance": "\(box.value.instance)", "attempt": "\(box.value.relinkAttempts + 1)"])
            self.openLink(box.value)
        }
    }

    /// The D and every instance sharing its virtual_id are removed and kept out for 2 minutes (§4.3).
    func markFaulty(_ link: DResultLink) {
        link.close()
        links[link.instance] = nil
        let until = DispatchTime.now().uptimeNanoseconds + 120 * 1_000_000_000
        faultyIDs[link.instance] = until
        if link.virtualID != 0 { faultyVirtualIDs[link.virtualID] = until }
        let old = cluster.view
        let keep = old.snapshot.instances.compactMap { info -> InstanceEntry? in
            guard let e = old.entries[info.id] else { return nil }
            return isFaulty(id: info.id, virtualID: e.virtualID) ? nil : e
        }
        let removed = Set(old.entries.keys).subtracting(keep.map(\.info.id))
        let view = ClusterView(entries: keep, initialized: old.initialized, deployPD: old.deployPD)
        cluster.replace(view)
        noteRemoved(old: old, new: view, reason: "faulty: its /dresult link could not be restored")
        _ = unlinked.withLock { $0.remove(link.instance) }
        for id in removed where id != link.instance { links.removeValue(forKey: id)?.close() }
        logger.error("D instance marked faulty for 2 minutes", metadata: ["instance": "\(link.instance)", "removed": "\(removed.sorted())"])
        for handle in registry.handles(on: removed) {
            handle.loop.execute { [self] in self.fail(handle.request, .instanceRemoved, result: .upstreamError) }
        }
    }

    func isFaulty(id: InstanceID, virtualID: UInt64) -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        if let t = faultyIDs[id], t > now { return true }
        if virtualID != 0, let t = faultyVirtualIDs[virtualID], t > now { return true }
        return false
    }
}
