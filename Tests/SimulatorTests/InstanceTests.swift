import Testing
@testable import Simulator
import MSCore
import Foundation

@Suite struct StandardModeTests {
    @Test func case1ChatNonStream() throws {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "POST", "/v1/chat/completions", chatBody)
        #expect(s.status == nil)
        c.run(until: s)
        #expect(s.status == 200)
        #expect(s.header("connection") == "close")
        let j = try #require(s.json)
        #expect(j["object"] == "chat.completion")
        #expect(j["id"] == "endpoint_common_1")
        #expect(j["choices"]?.arrayValue?.first?["finish_reason"] == "length")
        #expect(j["usage"]?["completion_tokens"] == 5)
        let expected = (0..<5).map { TokenInfo.at($0, seed: 11).text }.joined()
        #expect(j["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == expected)
        #expect(i.metrics.requestReceived == 1 && i.metrics.requestSuccess == 1 && i.metrics.generationTokens == 5)
    }

    @Test func case2ChatStream() throws {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "POST", "/v1/chat/completions", chatBody.replacingOccurrences(of: "\"seed\":11", with: "\"seed\":11,\"stream\":true"), headers: [("req-id", "abc")])
        c.run(until: s)
        #expect(s.status == 200 && s.ended && !s.aborted)
        #expect(s.header("content-type") == "text/event-stream")
        let frames = s.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(frames.count == 7)
        #expect(frames[0].contains(#""delta":{"role":"assistant","content":""}"#))
        for k in 1...5 {
            #expect(frames[k].contains(#""content":"\#(TokenInfo.at(k - 1, seed: 11).text)""#))
            #expect(frames[k].contains(#""id":"abc""#))
        }
        #expect(frames[4].contains(#""finish_reason":null}]}"#))
        #expect(frames[5].contains(#""finish_reason":"length"}],"usage":{"#))
        #expect(frames[6] == "data: [DONE]")
    }

    @Test func case3UnknownModel() {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "POST", "/v1/chat/completions", chatBody.replacingOccurrences(of: "\"llama\"", with: "\"x\""))
        #expect(s.status == 422)
        #expect(s.text == #"{"error":"Model not found","error_type":"Input Validation Error"}"#)
        #expect(i.metrics.requestFailed == 1)
    }

    @Test func case4TGIStreamWithDetails() throws {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "POST", "/generate_stream", #"{"inputs":"hi","parameters":{"details":true,"seed":3}}"#)
        c.run(until: s)
        let frames = s.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(frames.count == 20)
        let last = try JSON.parse(String(frames[19].dropFirst("data: ".count)))
        #expect(last["generated_text"]?.stringValue == (0..<20).map { TokenInfo.at($0, seed: 3).text }.joined())
        #expect(last["details"]?["generated_tokens"] == 20)
    }

    @Test func case5RootIsAnArray() throws {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "POST", "/", #"{"inputs":"hi","parameters":{"max_new_tokens":3}}"#)
        c.run(until: s)
        #expect(s.json?.arrayValue?.count == 1)
        #expect(s.json?.arrayValue?.first?["generated_text"] != nil)
    }

    @Test func case6Generate() {
        let c = Cluster()
        let i = c.add()
        let v = c.send(i, "POST", "/generate", #"{"prompt":"hi","stream":true,"max_tokens":3}"#)
        c.run(until: v)
        #expect(v.chunks.count == 3 && v.chunks.allSatisfy { $0.last == 0 })
        let t = c.send(i, "POST", "/generate", #"{"inputs":"hi","parameters":{"max_new_tokens":2}}"#)
        c.run(until: t)
        #expect(t.json?["generated_text"] != nil && t.json?.arrayValue == nil)
        let e = c.send(i, "POST", "/generate", #"{"x":1}"#)
        #expect(e.status == 422 && e.json?["error"]?.stringValue == RequestParser.generateMissingInput)
    }

    @Test func case7TritonInfer() {
        let c = Cluster()
        let i = c.add()
        let body = #"{"id":"t1","inputs":[{"name":"input0","shape":[1,3],"datatype":"UINT32","data":[1,2,3]}],"outputs":[{"name":"output0"}]}"#
        let ok = c.send(i, "POST", "/v2/models/llama/infer", body)
        c.run(until: ok)
        #expect(ok.json?["outputs"]?.arrayValue?.first?["data"]?.arrayValue?.count == 20)
        #expect(ok.json?["id"] == "t1")
        let bad = c.send(i, "POST", "/v2/models/llama/infer", body.replacingOccurrences(of: "UINT32", with: "INT64"))
        #expect(bad.status == 422 && bad.json?["error"] == "Unsupported datatype, got INT64.")
        let unknown = c.send(i, "POST", "/v2/models/other/infer", body)
        #expect(unknown.status == 404 && unknown.text == #"{"error":"Model other not found.","error_type":"NotFoundError"}"#)
        let versions = c.send(i, "POST", "/v2/models/llama/versions/1/infer", body)
        #expect(versions.status == 404 && versions.body.isEmpty)
    }

    @Test func case16DResultOnStandard() {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "GET", "/dresult")
        #expect(s.status == 400 && s.text == #"{"error":"Non DMI does not support dresult request","error_type":"Bad Request"}"#)
    }

    @Test func case21PrefixCacheAcrossChats() throws {
        let c = Cluster()
        let i = c.add { $0.engine = EngineConfiguration(profile: { var p = ModelProfile.llama8b; p.sigma = 0; p.stallProbability = 0; return p }()) }
        let system = String(repeating: "You are a helpful assistant. ", count: 138)  // ≈ 1000 tokens
        func chat(_ q: String) -> String {
            #"{"model":"llama","messages":[{"role":"system","content":"\#(system)"},{"role":"user","content":"\#(q)"}],"max_tokens":1}"#
        }
        let a = c.send(i, "POST", "/v1/chat/completions", chat("first question"))
        c.run(until: a)
        let t1 = c.now
        let b = c.send(i, "POST", "/v1/chat/completions", chat("and a second one"))
        let start = c.now
        c.run(until: b)
        let t2 = c.now - start
        #expect(a.json?["usage"]?["prompt_tokens_details"]?["cached_tokens"] == 0)
        #expect(b.json?["usage"]?["prompt_tokens_details"]?["cached_tokens"] == 896)
        #expect(t1 - t2 > 50)
        #expect(i.metricsText().contains("npu_radix_match_hit_num{model_name=\"llama\"} 896\n"))
    }

    @Test func case22NinthStreamWaits() throws {
        let c = Cluster()
        let i = c.add()
        var sinks: [RecordingSink] = []
        for k in 0..<9 {
            sinks.append(c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p\#(k)","max_tokens":100,"stream":true}"#))
        }
        c.advance(by: 30)
        let st = c.send(i, "GET", "/v1/status")
        #expect(st.json?["resource"]?["availSlotsNum"] == 0)
        #expect(st.json?["resource"]?["waitingRequestNum"] == 1)
        #expect(i.metricsText().contains("num_requests_waiting{model_name=\"llama\"} 1\n"))
        let step = try #require(i.engine.lastStep)
        #expect(step.batch == 8)
    }

    @Test func case23MetricsLayoutIsTheSameEverywhere() {
        let c = Cluster()
        let a = c.add(), b = c.add()
        let s = c.send(a, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":3}"#)
        c.run(until: s)
        let ma = c.send(a, "GET", "/metrics").text, mb = c.send(b, "GET", "/metrics").text
        #expect(ma.split(separator: "\n").filter { $0.hasPrefix("request_prompt_tokens_bucket") }.count == 16)
        let shape: (String) -> [Substring] = { $0.split(separator: "\n").map { $0.split(separator: " ").first! } }
        #expect(shape(ma) == shape(mb))
        #expect(ma.contains("request_success_total{model_name=\"llama\"} 1\n") && mb.contains("request_success_total{model_name=\"llama\"} 0\n"))
    }

    @Test func case24StopServiceForce() {
        let c = Cluster()
        let i = c.add()
        let running = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":50,"stream":true}"#)
        c.advance(by: 20)
        let stop = c.send(i, "GET", "/stopService?mode=Force")
        #expect(stop.status == 200 && stop.body.isEmpty)
        #expect(c.stops == [true])
        let after = c.send(i, "POST", "/v1/chat/completions", chatBody)
        #expect(after.status == 503 && after.text == #"{"error":"The service has been stopped","error_type":"Service Unavailable"}"#)
        #expect(c.send(i, "GET", "/stopService?mode=Force").status == 500)
        #expect(c.send(i, "GET", "/v1/status").status == 503)
        _ = running
    }

    @Test func case25DieMidStream() {
        let c = Cluster()
        let i = c.add { $0.faults = [Fault.parse("die_mid_stream:after_tokens=3", id: "f1")!] }
        let s = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":10,"stream":true}"#)
        c.run(until: s)
        #expect(s.aborted && !s.ended)
        #expect(s.chunks.count == 3)
        #expect(!s.text.contains("[DONE]"))
        #expect(i.engine.isIdle)
    }

    @Test func headerFaultAndOutputTokens() {
        let c = Cluster()
        let i = c.add { $0.headerFaults = true }
        let s = c.send(i, "POST", "/v1/chat/completions", chatBody, headers: [("X-Sim-Output-Tokens", "2")])
        c.run(until: s)
        #expect(s.json?["choices"]?.arrayValue?.first?["finish_reason"] == "stop")
        #expect(s.json?["usage"]?["completion_tokens"] == 2)
        let f = c.send(i, "POST", "/v1/chat/completions", chatBody, headers: [("X-Sim-Fault", "die_mid_stream;after_tokens=1;timeout_text")])
        _ = f
        let e = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":5,"stream":true}"#, headers: [("X-Sim-Fault", "die_mid_stream;after_tokens=2;how=timeout_text")])
        c.run(until: e)
        #expect(e.ended && e.text.hasSuffix("Engine callback timeout: client timeout"))
    }

    @Test func httpErrorFaultAndControlAPI() {
        let c = Cluster()
        let i = c.add()
        let put = c.send(i, "PUT", "/sim/faults/e1", #"{"type":"http_error","params":{"status":503},"match":{"path":"/v1/chat"},"count":1}"#, ports: [.control])
        #expect(put.status == 200)
        let a = c.send(i, "POST", "/v1/chat/completions", chatBody)
        #expect(a.status == 503 && a.json?["error_type"] == "Service Unavailable")
        let b = c.send(i, "POST", "/v1/chat/completions", chatBody)
        c.run(until: b)
        #expect(b.status == 200)
        #expect(c.send(i, "DELETE", "/sim/faults/e1", ports: [.control]).status == 204)
        #expect(c.send(i, "GET", "/sim/state", ports: [.control]).json?["faults"] == [])
        #expect(c.send(i, "GET", "/v1/status", ports: [.data]).status == 404)  // management routes are not on the data port
    }

    @Test func oversizedBody() {
        let c = Cluster()
        let i = c.add()
        let big = "{\"inputs\":\"" + String(repeating: "a", count: 40 << 20) + "\"}"
        let s = c.send(i, "POST", "/generate", big)
        #expect(s.status == 413 && s.text == #"{"message":"Request body too large. Maximum allowed size is 40MB."}"#)
    }

    @Test func clientGoneCancels() {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":50,"stream":true}"#)
        c.advance(by: 20)
        s.leave()
        #expect(i.engine.isIdle && i.engine.pool.usedBlocks == 0)
    }

    @Test func stopInferById() {
        let c = Cluster()
        let i = c.add()
        let s = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":50,"stream":true}"#, headers: [("req-id", "0abc")])
        c.advance(by: 20)
        let stop = c.send(i, "POST", "/v2/models/llama/stopInfer", #"{"id":"0abc"}"#)
        #expect(stop.status == 200 && stop.text == #"{"id":"0abc"}"#)
        #expect(s.ended && i.engine.isIdle)
        let again = c.send(i, "POST", "/v2/models/llama/stopInfer", #"{"id":"0abc"}"#)
        #expect(again.status == 404 && again.json?["error"] == "RequestId is 0abc not found.")
    }

    @Test func managementBasics() {
        let c = Cluster()
        let i = c.add()
        #expect(c.send(i, "GET", "/v1/config").text == #"{"modelName":"llama","maxSeqLen":512,"npuMemSize":-1,"cpuMemSize":0,"worldSize":4,"maxOutputLen":128,"cacheBlockSize":16}"#)
        #expect(c.send(i, "GET", "/v1/status").text == #"{"service":{"roleStatus":"RoleReady","currentRole":"none"},"resource":{"availSlotsNum":8,"availBlockNum":64,"waitingRequestNum":0,"runningRequestNum":0,"swappedRequestNum":0,"freeNpuBlockNums":64,"freeCpuBlockNums":0,"totalNpuBlockNums":64,"totalCpuBlockNums":0},"linkStatus":{"peers":[]}}"#)
        #expect(c.send(i, "GET", "/v2/health/ready").status == 200)
        #expect(c.send(i, "GET", "/v1/health").status == 404)
        #expect(c.send(i, "GET", "/v1/models").text == "{\n    \"object\": \"list\",\n    \"data\": [\n        {\n            \"id\": \"llama\",\n            \"object\": \"model\",\n            \"root\": \"/data/models/llama3-8b\",\n            \"owned_by\": \"MindIE Server\",\n            \"parent\": \"null\"\n        }\n    ]\n}")
        #expect(c.send(i, "POST", "/v1/tokenizer", #"{"inputs":"abcdefgh"}"#).json?["token_number"] == 2)
        #expect(c.send(i, "GET", "/v2/models/llama/getSlotCount").text == #"{"total_slots":8,"free_slots":8,"available_tokens_length":1024}"#)
        let timed = c.send(i, "GET", "/health/timed-5")
        c.run(until: timed)
        #expect(timed.text == #"{"status":"healthy"}"#)
    }
}

@Suite struct PDTests {
    @Test func case8NoRoleYet() {
        let c = Cluster()
        let i = c.add { $0.dmi = true }
        #expect(c.send(i, "GET", "/v1/status").json?["service"] == .obj(["roleStatus": "RoleUnknown", "currentRole": "none"]))
        let ready = c.send(i, "GET", "/v2/health/ready")
        #expect(ready.status == 500 && ready.text == #"{"message":"Service is abnormal"}"#)
        let chat = c.send(i, "POST", "/v1/chat/completions", chatBody, headers: [("req-type", "prefill"), ("req-id", "1"), ("d-target", "127.0.0.2")])
        #expect(chat.status == 503)
        #expect(chat.text == #"{"error":"The server cannot process the inference request due to an unknown status. ","error_type":"Service Unavailable"}"#)
    }

    @Test func case9And10RoleAssignment() {
        let c = Cluster()
        let i = c.add { $0.dmi = true }
        let none = c.send(i, "POST", "/v1/role/prefill", "{\(Cluster.local),\"peers\":[]}")
        #expect(none.status == 503 && none.json?["error"] == "Update pd info failed. Reset to previous node status.")
        #expect(i.role.status == .unknown)
        let ok = c.send(i, "POST", "/v1/role/prefill", "{\(Cluster.local),\"peers\":[\(Cluster.peer("127.0.0.2", 7))]}")
        #expect(ok.status == 200 && ok.text == #"{"result":"ok"}"#)
        #expect(c.send(i, "GET", "/v1/status").json?["linkStatus"] == .obj(["peers": []]))
        #expect(c.send(i, "GET", "/v1/status").json?["service"]?["roleStatus"] == "RoleSwitching")
        c.advance(by: 9_999)
        #expect(i.role.status == .switching)
        c.advance(by: 1)
        let st = c.send(i, "GET", "/v1/status").json
        #expect(st?["service"] == .obj(["roleStatus": "RoleReady", "currentRole": "prefill"]))
        #expect(st?["linkStatus"]?.compact == #"{"peers":[{"target":7,"link":"ok"}]}"#)
        #expect(i.serviceState == "NORMAL")
    }

    @Test func case11StickySwitching() {
        for fix in [false, true] {
            let (c, p, _) = Cluster.pd { if fix { $0.wire.fixes = [.stickySwitching] } }
            #expect(p.role.status == .ready)
            c.send(p, "POST", "/v1/role/prefill", "{\(Cluster.local),\"peers\":[\(Cluster.peer("127.0.0.2", 2))]}")
            c.advance(by: 30_000)
            #expect(p.role.status == (fix ? .ready : .switching))
        }
    }

    @Test func case12PHeaderErrors() {
        let (c, p, _) = Cluster.pd()
        let base = [("req-type", "prefill"), ("req-id", "1f"), ("d-target", "127.0.0.2")]
        func err(_ h: [(String, String)]) -> String? { c.send(p, "POST", "/v1/chat/completions", chatBody, headers: h).json?["error"]?.stringValue }
        #expect(err(Array(base.prefix(2))) == "DMI request must have req-type, req-id, d-target headers")
        #expect(err([base[0], ("req-id", "xyz"), base[2]]) == "Invalid req-id, the character of req-id should be hex char [0-9, a-f, A-F], but got xyz")
        #expect(err([("req-type", "decode"), base[1], base[2]]) == "Parameter req-type must be prefill but got decode")
        #expect(err(base + [("is-recompute", "yes")]) == "Parameter is-recompute is an optional parameter. When it is set, it must be true or false.")
        #expect(err([base[0], base[1], ("d-target", "host.local")]) == "Parameter d-target must be an IPv4 address")
    }

    func pdHeaders(_ id: String) -> [(String, String)] {
        [("req-type", "prefill"), ("req-id", id), ("d-target", "127.0.0.2;1121"), ("d-port", "1025")]
    }

    @Test func case13StreamThroughPD() throws {
        let (c, p, d) = Cluster.pd()
        let link = c.send(d, "GET", "/dresult")
        #expect(link.status == 200 && link.streaming)
        let body = #"{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true,"seed":5}"#
        let s = c.send(p, "POST", "/v1/chat/completions", body, headers: pdHeaders("ab12"))
        c.run(until: s)
        let reply = try #require(s.json)
        #expect(reply["reqId"] == "ab12" && reply["isStream"] == true && reply["isLastResp"] == false)
        let out = try #require(reply["output"]?.stringValue)
        #expect(out.hasPrefix("data: {\"id\":\"ab12\"") && out.contains(#""content":"""#) && out.contains(TokenInfo.at(0, seed: 5).text))
        #expect(out.components(separatedBy: "\n\n").filter { !$0.isEmpty }.count == 2)
        c.advance(by: 200)
        let m = link.messages
        #expect(m.count == 8)
        #expect(m[0] == "reqId:ab12" && m[1].hasPrefix("data:data: ") && m[1].contains(#""delta":{"role":"assistant","content":""}"#))
        #expect(m[1].contains(TokenInfo.at(1, seed: 5).text))
        #expect(m[3].hasPrefix("data:data: ") && m[3].contains(TokenInfo.at(2, seed: 5).text))
        #expect(m[5].hasPrefix("lastData:data: ") && m[5].contains(#""finish_reason":"length""#) && m[5].contains(TokenInfo.at(3, seed: 5).text))
        #expect(m[7] == "lastData:data: [DONE]\n\n")
        #expect(c.releases == ["ab12"])
        #expect(p.engine.pool.usedBlocks == 0 && d.engine.pool.usedBlocks == 0)
        #expect(p.metrics.requestReceived == 1 && d.metrics.requestReceived == 0 && d.metrics.requestSuccess == 1)
    }

    @Test func case14NonStreamThroughPD() throws {
        let (c, p, d) = Cluster.pd()
        let link = c.send(d, "GET", "/dresult")
        let body = #"{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4}"#
        let s = c.send(p, "POST", "/v1/chat/completions", body, headers: pdHeaders("ab13"))
        c.run(until: s)
        #expect(s.text == #"{"reqId":"ab13","isStream":false}"#)
        c.advance(by: 200)
        let m = link.messages
        #expect(m.count == 2 && m[0] == "reqId:ab13" && m[1].hasPrefix("lastData:{"))
        let j = try JSON.parse(String(m[1].dropFirst("lastData:".count)))
        #expect(j["usage"]?["completion_tokens"] == 4)
        #expect(j["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == (0..<4).map { TokenInfo.at($0, seed: OutputGenerator.seed(forPrompt: Tokenizer.encode(Tokenizer.chatPrompt([("user", "hi")])))).text }.joined())
    }

    @Test func case15FinishedOnP() throws {
        let (c, p, _) = Cluster.pd()
        let body = #"{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":1,"stream":true}"#
        let s = c.send(p, "POST", "/v1/chat/completions", body, headers: pdHeaders("ab14"))
        c.run(until: s)
        let reply = try #require(s.json)
        #expect(reply["isLastResp"] == true)
        let out = try #require(reply["output"]?.stringValue)
        #expect(out.components(separatedBy: "\n\n").filter { !$0.isEmpty }.count == 3)
        #expect(out.hasSuffix("data: [DONE]\n\n"))
        #expect(c.decodeCalls == 0)
    }

    @Test func case16DResultOnP() {
        let (c, p, _) = Cluster.pd()
        let s = c.send(p, "GET", "/dresult")
        #expect(s.status == 400 && s.json?["error"] == "Only the Decode node supports dresult but you send to prefill")
    }

    @Test func case17SecondLinkReplacesTheFirst() {
        let (c, p, d) = Cluster.pd()
        let first = c.send(d, "GET", "/dresult")
        let second = c.send(d, "GET", "/dresult")
        #expect(first.ended)
        #expect(first.messages == ["reqId:0xffffffffffffffff", "close:new connection is to established, close the old one."])
        let s = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":3}"#, headers: pdHeaders("ab15"))
        c.run(until: s)
        c.advance(by: 200)
        #expect(second.messages.first == "reqId:ab15" && second.messages.count == 2)
    }

    @Test func case18Heartbeat() {
        let (c, p, d) = Cluster.pd()
        let link = c.send(d, "GET", "/dresult")
        c.advance(by: 5_000)
        #expect(link.messages.isEmpty)
        c.advance(by: 1_000)
        #expect(link.messages == ["ka:heartbeat"])
        // while tokens flow, no heartbeat
        let s = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":128,"stream":true}"#, headers: pdHeaders("ab16"))
        c.run(until: s)
        let before = link.messages.count
        c.advance(by: 700)
        #expect(link.messages.count > before)
        #expect(!link.messages.dropFirst(before).contains("ka:heartbeat"))
        _ = p
    }

    @Test func case19NoLinkDrops() {
        let (c, p, d) = Cluster.pd()
        let s = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":3,"stream":true}"#, headers: pdHeaders("ab17"))
        c.run(until: s)
        c.advance(by: 200)
        #expect(d.metrics.dresultDropped == 3)  // token 2 (data), token 3 and [DONE] (lastData)
        #expect(c.send(d, "GET", "/metrics").text.contains("sim_dresult_dropped_total{model_name=\"llama\"} 3\n"))
    }

    @Test func case20RetryAndRecompute() throws {
        let (c, p, d) = Cluster.pd { $0.engine.profile.totalBlocks = 8 }
        let link = c.send(d, "GET", "/dresult")
        // two long outputs on D with 8 blocks: one of them gets preempted
        let s1 = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"\#(String(repeating: "a", count: 120))","max_tokens":100,"seed":1}"#, headers: pdHeaders("a1"))
        let s2 = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"\#(String(repeating: "b", count: 120))","max_tokens":100,"seed":2}"#, headers: pdHeaders("a2"))
        c.run(until: s1); c.run(until: s2)
        c.advance(by: 3_000)
        let m = link.messages
        let i = try #require(m.firstIndex { $0.hasPrefix("retry:") })
        let retry = String(m[i].dropFirst("retry:".count))
        let j = try JSON.parse(retry)
        let tokens = try #require(j["prompt"]?.stringValue)
        let (ids, k) = try #require(RequestParser.parseTokenString(tokens))
        #expect(k >= 1 && ids.count == 30 + k)
        #expect(tokens.hasPrefix("30,"))
        let id = String(m[i - 1].dropFirst("reqId:".count))
        // the Coordinator resends the body to P with is-recompute: true
        let again = c.send(p, "POST", "/v1/completions", retry, headers: pdHeaders(id) + [("is-recompute", "true")])
        c.run(until: again)
        let out = try #require(again.json)
        #expect(out["isStream"] == false && out["reqId"] == .string(id))
        _ = d
    }

    @Test func case25DResultDropAndRoleUnknown() {
        let (c, p, d) = Cluster.pd()
        let link = c.send(d, "GET", "/dresult")
        d.putFault(Fault.parse("dresult_drop:tcp_close", id: "x")!)
        let s = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":3,"stream":true}"#, headers: pdHeaders("ab18"))
        c.run(until: s)
        c.advance(by: 200)
        #expect(link.aborted && !link.messages.contains { $0.hasPrefix("close:") })
        let act = c.send(p, "POST", "/sim/actions/role_unknown", "", ports: [.control])
        #expect(act.status == 200)
        #expect(c.send(p, "GET", "/v1/status").json?["service"] == .obj(["roleStatus": "RoleUnknown", "currentRole": "none"]))
        #expect(c.send(p, "GET", "/v1/status").json?["linkStatus"] == .obj(["peers": []]))
    }

    @Test func dRefusesWhenNotDecode() {
        let (c, p, _) = Cluster.pd()
        // point the P at itself through another P-only address: the cluster has no instance there
        let s = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":3}"#, headers: [("req-type", "prefill"), ("req-id", "ab"), ("d-target", "127.0.0.9")])
        c.run(until: s)
        #expect(s.status == 500 && s.json?["error"] == "[P Node] Send D request failed:connect refused")
        #expect(p.engine.pool.usedBlocks == 0)
    }

    @Test func kvPullFailure() {
        let (c, p, d) = Cluster.pd()
        let link = c.send(d, "GET", "/dresult")
        d.putFault(Fault.parse("kv_pull_fail:reversibly", id: "k")!)
        let s = c.send(p, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":3}"#, headers: pdHeaders("cd"))
        c.run(until: s)
        c.advance(by: 100)
        #expect(link.messages == ["reqId:cd", "error:Pull kv failed reversibly."])
        #expect(d.role.links.first?.link == "failed : pull kv failed.")
    }
}

@Suite struct ConfigAndFaultTests {
    @Test func configFileSections() throws {
        var c = InstanceConfiguration()
        let text = #"""
        {"ServerConfig":{"ipAddress":"127.0.0.5","managementIpAddress":"127.0.0.6","port":2025,"managementPort":2026,"metricsPort":2027,
          "interCommPort":2121,"inferMode":"dmi","tokenTimeout":60,"e2eTimeout":300,"maxRequestLength":40},
         "BackendConfig":{"ModelDeployConfig":{"maxSeqLen":4096,"maxInputTokenLen":3000,"ModelConfig":[{"modelName":"qwen","modelWeightPath":"/w"}]},
          "ScheduleConfig":{"cacheBlockSize":64,"maxPrefillBatchSize":10,"maxPrefillTokens":4096,"maxBatchSize":100,"maxIterTimes":256}},
         "Simulator":{"profile":"tiny","speedup":4,"wire":"compat","fix":["double-lastdata"],"faults":["http_error:status=503"],"profileOverrides":{"delta0":7}}}
        """#
        try c.apply(configFile: Array(text.utf8))
        #expect(c.ipAddress == "127.0.0.5" && c.managementIpAddress == "127.0.0.6" && c.port == 2025 && c.interCommPort == 2121)
        #expect(c.dmi && c.tokenTimeout == 60_000 && c.e2eTimeout == 300_000 && c.maxRequestLength == 40 << 20)
        #expect(c.modelName == "qwen" && c.modelWeightPath == "/w")
        let p = c.engine.profile
        #expect(p.name == "tiny" && p.maxSeqLen == 4096 && p.maxInputTokenLen == 3000 && p.blockSize == 64 && p.maxBatchSize == 100)
        #expect(p.maxIterTimes == 256 && p.delta0 == 7 && p.totalBlocks == 64)
        #expect(c.engine.speedup == 4 && c.wire.mode == .compat && c.wire.fixes == [.doubleLastData])
        #expect(c.faults.map(\.type) == ["http_error"] && c.faults[0].params["status"] == "503")
        var bad = InstanceConfiguration()
        #expect(throws: ConfigError(code: .outOfRange, file: "config.json", key: "ScheduleConfig.cacheBlockSize", value: "0", allowed: "integer 1...128")) {
            try bad.apply(configFile: Array(#"{"ScheduleConfig":{"cacheBlockSize":0}}"#.utf8))
        }
    }

    @Test func replicatedPorts() {
        var c = InstanceConfiguration()
        c.controlPort = 9000
        let r = c.replicated(count: 3, portStride: 10)
        #expect(r.map(\.port) == [1025, 1035, 1045] && r.map(\.interCommPort) == [1121, 1131, 1141] && r.map(\.controlPort) == [9000, 9010, 9020])
        let ips = c.replicated(count: 2, distinctIPs: true)
        #expect(ips.map(\.ipAddress) == ["127.0.0.1", "127.0.0.2"] && ips.map(\.port) == [1025, 1025])
    }

    @Test func faultSyntax() {
        let f = Fault.parse("die_mid_stream:after_tokens=3,how=close,path=/v1,count=2", id: "a")
        #expect(f == Fault(id: "a", type: "die_mid_stream", params: ["after_tokens": "3", "how": "close"], matchPath: "/v1", count: 2))
        let h = Fault.parse("dresult_drop;tcp_close", id: "h")
        #expect(h?.mode == "tcp_close")
        let j = Fault.parse(json: try! JSON.parse(#"{"type":"kv_shrink","params":{"blocks":8},"probability":0.5}"#), id: "k")
        #expect(j?.int("blocks") == 8 && j?.probability == 0.5)
    }

    @Test func e2eTimeoutCutsAStream() {
        let c = Cluster()
        let i = c.add { $0.e2eTimeout = 50 }
        let s = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":100,"stream":true}"#)
        c.advance(by: 60)
        #expect(s.ended && s.text.hasSuffix("Engine callback timeout: server e2eTimeout"))
        #expect(i.engine.isIdle && i.metrics.requestFailed == 1)
    }

    @Test func kvShrinkAndEngineHang() {
        let c = Cluster()
        let i = c.add()
        c.send(i, "POST", "/sim/actions/kv_shrink", #"{"params":{"blocks":8}}"#, ports: [.control])
        #expect(i.engine.pool.totalBlocks == 8)
        i.putFault(Fault(id: "h", type: "hang", params: ["mode": "engine"]))
        let s = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"p","max_tokens":2}"#)
        c.advance(by: 1000)
        #expect(s.status == nil)
        #expect(c.send(i, "GET", "/v1/status").status == 200)  // status still answers
        i.removeFault("h")
        c.run(until: s)
        #expect(s.status == 200)
    }
}

@Suite struct ThroughputTests {
    @Test func throughputGaugesCoverTheLastWindow() {
        let c = Cluster()
        let i = c.add()
        _ = i.metricsText()  // first sample at t = 0
        let s = c.send(i, "POST", "/v1/completions", #"{"model":"llama","prompt":"abcdefgh","max_tokens":10}"#)
        c.run(until: s)
        c.advance(to: 2000)
        let text = i.metricsText()
        #expect(text.contains("avg_prompt_throughput_toks_per_s{model_name=\"llama\"} 1\n"))  // 2 tokens / 2 s
        #expect(text.contains("avg_generation_throughput_toks_per_s{model_name=\"llama\"} 5\n"))  // 10 tokens / 2 s
    }
}
