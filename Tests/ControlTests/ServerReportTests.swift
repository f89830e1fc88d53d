import Foundation
import Testing

@testable import Control
import MSCore

@Suite("server replies (§3.1)")
struct ServerReportTests {
    static let status = """
        {"service":{"roleStatus":"RoleReady","currentRole":"prefill"},
         "resource":{"availSlotsNum":200,"availBlockNum":1024,"waitingRequestNum":1,"runningRequestNum":2,
           "swappedRequestNum":0,"freeNpuBlockNums":1000,"freeCpuBlockNums":10,"totalNpuBlockNums":1024,"totalCpuBlockNums":20},
         "linkStatus":{"peers":[{"target":1,"link":"ok"},{"target":2,"link":"fail"}]}}
        """

    // docs/wire/controller.md §12 test 20.
    @Test("a RoleReady / prefill / 200 / 1024 status reply parses")
    func statusV1() throws {
        let s = try ServerStatus(body: Data(Self.status.utf8))
        #expect(s.roleState == .ready && s.currentRole == .prefill)
        #expect(s.resources.availSlotsNum == 200 && s.resources.availBlockNum == 1024 && s.resources.runningRequestNum == 2)
        #expect(s.activePeers == [1])
    }

    @Test("v2 uses maxAvailNpuBlockNum")
    func statusV2() throws {
        let body = """
            {"service":{"roleStatus":"RoleSwitching","currentRole":"decode"},
             "resource":{"totalAvailNpuSlotsNum":50,"totalAvailNpuBlockNum":9000,"maxAvailNpuBlockNum":3000},
             "linkStatus":{"peers":[]}}
            """
        let s = try ServerStatus(body: Data(body.utf8), v2: true)
        #expect(s.roleState == .switching && s.currentRole == .decode)
        #expect(s.resources.availSlotsNum == 50 && s.resources.availBlockNum == 3000)
    }

    @Test("invalid status replies are bad responses", arguments: [
        ("service", nil), ("service.roleStatus", "Ready"), ("service.currentRole", "mixed"),
        ("resource.availSlotsNum", 5001), ("resource.availBlockNum", -1), ("resource.waitingRequestNum", nil),
        ("linkStatus", nil),
    ] as [(String, JSON?)])
    func badStatus(key: String, value: JSON?) throws {
        let body = try JSON.parse(Data(Self.status.utf8)).setting(key, to: value)
        #expect(throws: ProbeFailure.self) { try ServerStatus(body: body.data) }
    }

    @Test("/v1/config: modelName non-empty, maxSeqLen, maxOutputLen, cacheBlockSize ranges")
    func config() throws {
        let ok = JSON.object(["modelName": "m", "maxSeqLen": 0, "maxOutputLen": 1, "cacheBlockSize": 128])
        #expect(try ServerConfigInfo(body: ok.data) == ServerConfigInfo(modelName: "m", maxSeqLen: 0, maxOutputLen: 1, cacheBlockSize: 128))
        for (k, v) in [("modelName", JSON.string("")), ("maxOutputLen", 0), ("cacheBlockSize", 129),
                       ("maxSeqLen", .int(4_294_967_296)), ("maxOutputLen", .int(4_294_967_295))] {
            #expect(throws: ProbeFailure.self) { try ServerConfigInfo(body: ok.setting(k, to: v).data) }
        }
        #expect(throws: ProbeFailure.badResponse("not a JSON object")) { try ServerConfigInfo(body: Data()) }
        #expect(ProbeFailure.noReply.reasonCode == 1 && ProbeFailure.badResponse("x").reasonCode == 2)
    }
}
