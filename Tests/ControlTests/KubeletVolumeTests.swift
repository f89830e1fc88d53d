import Foundation
import MSCore
import Testing
import TestSupport

@testable import Control

/// The Controller reading its files as Kubernetes mounts them (ConfigMap volumes laid out by kubelet's atomic
/// writer), with the permission checks on.
@Suite("Controller: files in kubelet's ConfigMap layout")
struct KubeletVolumeTests {
    @Test("the rank table at <volume>/..data/global_ranktable.json (as the PD manifests set it) is read, and an update swap of ..data is followed")
    func rankTableSwap() async throws {
        let f = try ClusterFixture(instances: 4)
        try f.writeRankTable([0, 1])
        let two = try String(contentsOfFile: f.rankTablePath, encoding: .utf8)
        try f.writeRankTable()
        let four = try String(contentsOfFile: f.rankTablePath, encoding: .utf8)
        let rank = try KubeletVolume(["global_ranktable.json": two])
        // the DIGS model and machine files delivered the same way (a config ConfigMap)
        let model = try String(contentsOf: Paths.conf.appendingPathComponent("model_config/llama2-70B.json"), encoding: .utf8)
        let machine = try String(contentsOf: Paths.conf.appendingPathComponent("machine_config/800IA2.json"), encoding: .utf8)
        let config = try KubeletVolume(["model.json": model, "machine.json": machine])
        defer { rank.remove(); config.remove() }
        try await f.startController(
            [("global_rank_table_file_path", .string(rank.dataPath("global_ranktable.json"))),
             ("digs_model_config_path", .string(config.file("model.json"))),
             ("digs_machine_config_path", .string(config.file("machine.json")))],
            environment: [:])
        #expect(await f.waitForRefresh([0, 1], seconds: 60))  // generous: the whole suite runs in parallel on a shared machine
        try rank.update(["global_ranktable.json": four])
        #expect(await f.waitForRefresh([0, 1, 2, 3], seconds: 60))
        await f.tearDown()
    }
}
