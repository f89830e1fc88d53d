import Foundation
import MSCore
import Testing

@testable import Control

/// The Controller's REST endpoints over HTTP (§2, DECISIONS 1, 21, 22), with an empty rank table.
@Suite("controller REST API", .timeLimit(.minutes(1)))
struct RESTAPITests {
    static let alarm = #"""
        {"category":1,"cleared":0,"clearCategory":1,"occurUtc":1700000000,"occurTime":1700000000,"eventType":1,
         "severity":2,"serviceAffectedType":0,"reasonId":1,"originSystem":"ms","originSystemName":"coordinator",
         "originSystemType":"MindIE","probableCause":"test","location":"here","moi":"x","alarmId":"0xFC001005",
         "alarmName":"test","additionalInformation":"none"}
        """#

    @Test("probes, unknown paths, wrong methods, bad targets, alarms and terminate-service refusals")
    func endpoints() async throws {
        let f = try ClusterFixture(instances: 0)
        try await f.startController()
        for path in ["/v1/startup", "/v1/health"] {
            for listener in [0, 1] {
                let r = try await f.request("GET", path, listener: listener)
                #expect(r.status == 200)
                #expect(r.text == #"{"message":"","status":"0"}"#)
            }
        }
        let notReady = try await f.request("GET", "/v1/readiness")
        #expect(notReady.status == 503)
        #expect(notReady.text.contains("not ready"))
        let unknown = try await f.request("GET", "/v1/nothing")
        #expect(unknown.status == 404 && unknown.text.contains("Cannot find the resource /v1/nothing"))
        let put = try await f.request("PUT", "/v1/health")
        #expect(put.status == 405 && put.headers["allow"] == "GET")
        let dots = try await f.request("GET", "/v1/../health")
        #expect([400, 404].contains(dots.status))

        let ok = try await f.request("POST", "/v1/alarm/coordinator", body: "[\(Self.alarm)]", listener: 1)
        #expect(ok.status == 200)
        let outOfRange = Self.alarm.replacingOccurrences(of: #""severity":2"#, with: #""severity":9"#)
        let bad = try await f.request("POST", "/v1/alarm/coordinator", body: "[\(Self.alarm),\(outOfRange)]", listener: 1)
        #expect(bad.status == 422 && bad.text.contains("[1].severity"))
        #expect(f.service!.api.alarms.queued.count == 2)
        let notArray = try await f.request("POST", "/v1/alarm/coordinator", body: "{}", listener: 1)
        #expect(notArray.status == 422)
        let notJSON = try await f.request("POST", "/v1/alarm/coordinator", body: "[", listener: 1)
        #expect(notJSON.status == 400)

        let llm = try await f.request(
            "POST", "/v1/alarm/llm_engine", body: #"{"node_manager_ip":"127.0.0.1","alarm_info":[]}"#, listener: 1)
        #expect(llm.status == 200)
        let llmBad = try await f.request(
            "POST", "/v1/alarm/llm_engine", body: #"{"node_manager_ip":"x","alarm_info":[]}"#, listener: 1)
        #expect(llmBad.status == 422 && llmBad.text.contains("node_manager_ip"))

        let term = try await f.request("POST", "/v1/terminate-service", body: #"{"ip":"nope","port":"1025"}"#, listener: 1)
        #expect(term.status == 422 && term.text.contains("ip"))
        let getTerm = try await f.request("GET", "/v1/terminate-service", listener: 1)
        #expect(getTerm.status == 405)
        await f.tearDown()
    }

    @Test("the coordinator exception alarm: the first raise and the first clear are swallowed, readiness follows")
    func coordinatorException() {
        let store = AlarmStore()
        func record(cleared: Int) -> JSON {
            .object(["alarmId": .string(AlarmStore.coordinatorExceptionID), "cleared": .int(Int64(cleared))])
        }
        store.accept([record(cleared: 0)], firstIsFirstOfBody: true)
        #expect(!store.coordinatorReady && store.queued.isEmpty)
        store.accept([record(cleared: 1)], firstIsFirstOfBody: true)
        #expect(store.coordinatorReady && store.queued.isEmpty)
        store.accept([record(cleared: 0)], firstIsFirstOfBody: true)
        #expect(!store.coordinatorReady && store.queued.count == 1)
    }
}
