import Foundation
import Metrics
import MSCore
import Synchronization

/// DIGS (`load_balance`, PD only, docs/wire/coordinator.md §5.1): one process-wide queue and booking table,
/// passes on the link loop at least every 100 ms and whenever a booking is released; placements go to the
/// requests' loops as lifecycle events.
extension Coordinator {
    var usesDIGS: Bool { config.scheduler.algorithm == .loadBalance }

    /// Whether a P outside `excludedP` has a D outside `excludedD` (in its group, listing it as a peer).
    static func hasPair(_ s: InstanceSnapshot, excludedP: Set<InstanceID>, excludedD: Set<InstanceID>) -> Bool {
        s.instances(role: .prefill).contains { p in
            !excludedP.contains(p.id) && s.decodes(for: p.id).contains { $0.groupID == p.groupID && !excludedD.contains($0.id) }
        }
    }

    /// One DIGS pass (§5.1): placements go to their requests' loops.
    func digsPass() {
        let view = schedulingView()
        let placed = digs.withLock { $0?.schedule(snapshot: view.snapshot) ?? [] }
        for (id, decision) in placed {
            guard case .pair(let p, let d) = decision, let handle = registry.handle(id) else {
                digs.withLock { $0?.finish(id) }
                continue
            }
            let pe = view.entries[p], de = view.entries[d]
            handle.loop.execute { [self] in
                let t = handle.request
                guard !t.finished else { return }
                guard let pe, let de else {
                    self.digs.withLock { $0?.requeue(id) }
                    return
                }
                self.metrics.scheduled.increment()
                if let pd = t.pd { self.run(t, pd, .placed(p: pe, d: de)) }
            }
        }
    }

    /// Starts the DIGS loop's periodic pass (at least every 100 ms).
    func startDIGSTicker() {
        linkLoop.execute { [weak self] in self?.digsTick() }
    }

    private func digsTick() {
        guard !isShutDown.load(ordering: .relaxed) else { return }
        digsPass()
        linkLoop.schedule(afterMilliseconds: 100) { [weak self] in self?.digsTick() }
    }

    func releaseBooking(_ t: TrackedRequest) {
        guard t.digsBooked else { return }
        t.digsBooked = false
        digs.withLock { $0?.finish(t.id) }
        digsPass()
    }
}
