import Foundation
import Logging
import Metrics
import MSCore
import Synchronization

/// Passive health (`instance_health_config`): consecutive failed attempts open an instance's circuit; a
/// half-open probe closes it.
extension Coordinator {
    /// A failed attempt on `entry`; opening its circuit schedules the probe.
    func noteFailure(_ entry: InstanceEntry) {
        let h = config.health
        let now = DispatchTime.now().uptimeNanoseconds
        guard entry.load.recordFailure(threshold: h.failureThreshold, now: now, backoff: { h.openNanoseconds(openings: $0) }) else { return }
        metrics.circuitOpenings.increment()
        logger.warning("instance circuit opened: no new requests until it answers a probe",
                       metadata: ["instance": "\(entry.info.id)", "failures": "\(entry.load.failures.load(ordering: .relaxed))"])
        scheduleProbe(entry, due: entry.load.openUntil.load(ordering: .relaxed))
    }

    /// `entry` answered.
    func noteSuccess(_ entry: InstanceEntry) {
        let wasOpen = !entry.load.routable
        entry.load.recordSuccess()
        if wasOpen { logger.info("instance circuit closed", metadata: ["instance": "\(entry.info.id)"]) }
    }

    private func scheduleProbe(_ entry: InstanceEntry, due: UInt64) {
        let now = DispatchTime.now().uptimeNanoseconds
        let ms = due > now ? (due - now + 999_999) / 1_000_000 : 0
        linkLoop.execute { [weak self] in
            guard let self else { return }
            self.linkLoop.schedule(afterMilliseconds: ms) { [weak self] in self?.probe(entry) }
        }
    }

    /// Half-open: one cheap request; any HTTP answer proves the process serves again. Link loop.
    private func probe(_ entry: InstanceEntry) {
        guard !isShutDown.load(ordering: .relaxed), !entry.load.routable else { return }
        // an instance the Controller removed is no longer ours to watch
        guard cluster.view.entries.values.contains(where: { $0.load === entry.load }) else { return }
        let req = HTTPClientRequest(method: "GET", host: entry.ip, port: entry.port, path: "/health",
                                    timeoutMilliseconds: UInt64(config.health.probeTimeoutMs))
        var answered = false
        sideClient.stream(req, on: linkLoop, onHead: { _, _ in answered = true }, onBody: { _ in }, onEnd: { [weak self] _ in
            guard let self else { return }
            if answered { return self.noteSuccess(entry) }
            let h = self.config.health
            if let due = entry.load.probeFailed(now: DispatchTime.now().uptimeNanoseconds, backoff: { h.openNanoseconds(openings: $0) }) {
                self.scheduleProbe(entry, due: due)
            }
        })
    }
}
