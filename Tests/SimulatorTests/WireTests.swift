import Testing
@testable import Simulator
import MSCore

func utf8(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

@Suite struct JSONTests {
    @Test func roundTripKeepsOrderAndEscapes() throws {
        let text = #"{"b":1,"a":[true,false,null,-2.5,"x\"y\\z\n\u0001é"],"c":{}}"#
        let j = try JSON.parse(text)
        #expect(j.compact == #"{"b":1,"a":[true,false,null,-2.5,"x\"y\\z\n\u0001é"],"c":{}}"#)
        #expect(j["b"] == .int(1))
        #expect(throws: JSONParseError.self) { try JSON.parse("{\"a\":1} x") }
        #expect(throws: JSONParseError.self) { try JSON.parse("[1,]") }
        #expect(try JSON.parse(#""\ud83d\ude00""#) == .string("😀"))
    }

    @Test func prettyPrinting() {
        let j = JSON.obj(["a": [1], "b": .obj([:])])
        #expect(j.pretty() == "{\n    \"a\": [\n        1\n    ],\n    \"b\": {}\n}")
    }
}

@Suite struct ParseTests {
    let ctx = ParseContext(modelName: "llama", maxIterTimes: 128)

    func parse(_ d: Dialect, _ body: String, path: String = "/") throws(WireError) -> InferenceRequest {
        try RequestParser.parse(dialect: d, path: path, body: Array(body.utf8), context: ctx)
    }

    func error(_ d: Dialect, _ body: String, path: String = "/") -> WireError? {
        do { _ = try parse(d, body, path: path); return nil } catch { return error }
    }

    @Test func generateDecidesTheDialectByBody() throws {
        let v = try parse(.tgiGenerate, #"{"prompt":"hi","stream":true}"#)
        #expect(v.dialect == .vllm && v.stream && v.maxTokens == 128)
        let t = try parse(.tgiGenerate, #"{"inputs":"hi","stream":true}"#)
        #expect(t.dialect == .tgiGenerate && !t.stream && t.maxTokens == 20)
        let e = try #require(error(.tgiGenerate, #"{"text":"hi"}"#))
        #expect(e.status == 422)
        #expect(utf8(e.body) == #"{"error":"{\"Error\": \"`inputs` or `prompt` must be necessary and data type must be string. Additionally, the request body must be valid json\", \"error_type\": \"validation\"}","error_type":"Input Validation Error"}"#)
    }

    @Test func exact422Texts() {
        #expect(error(.chat, "{nope")?.message == "Failed to parse request context to json")
        #expect(error(.chat, #"{"messages":[]}"#)?.message == "Request contains not model or model null")
        #expect(error(.chat, #"{"model":null,"messages":[]}"#)?.message == "Request contains not model or model null")
        let m = error(.chat, #"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#)
        #expect(m.map { utf8($0.body) } == #"{"error":"Model not found","error_type":"Input Validation Error"}"#)
        #expect(m?.status == 422)
        #expect(error(.chat, #"{"model":"llama"}"#)?.message == "Request param contains not messages or messages null")
        #expect(error(.mindie, #"{"inputs":"a","input_id":[1]}"#)?.message == "Input conflict.")
        #expect(error(.tgiGeneral, #"{"inputs":"a","stream":"yes"}"#)?.message == "Stream must be boolean type.")
        #expect(error(.tritonToken, #"{"inputs":[{"name":"input0","shape":[1,2],"datatype":"INT64","data":[1,2]}]}"#)?.message
            == "Unsupported datatype, got INT64.")
    }

    @Test func samplingRanges() {
        #expect(error(.chat, #"{"model":"llama","messages":"x","temperature":3}"#)?.message == "Parameter temperature must be in [0, 2], got 3.0.")
        #expect(error(.tgiGeneral, #"{"inputs":"x","parameters":{"top_p":0}}"#)?.status == 422)
        #expect(error(.tgiGeneral, #"{"inputs":"x","parameters":{"top_p":0.9,"top_k":5,"repetition_penalty":1.1}}"#) == nil)
        #expect(error(.chat, #"{"model":"llama","messages":"x","n":2}"#)?.message == "Parameter n must be 1, got 2.")
        #expect(error(.chat, #"{"model":"llama","messages":"x","max_tokens":0}"#)?.status == 422)
    }

    @Test func openAIFields() throws {
        let r = try parse(.chat, #"{"model":"llama","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":"b"}]}],"max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true},"stop":["x"],"seed":9}"#)
        #expect(r.promptText == "<|system|>\nbe brief\n<|user|>\nab\n<|assistant|>\n")
        #expect(r.maxTokens == 7 && r.stream && r.includeUsage && r.seed == 9)
        let c = try parse(.completions, #"{"model":"llama","prompt":"once","max_tokens":3}"#)
        #expect(c.prompt == Tokenizer.encode("once") && c.maxTokens == 3 && !c.stream)
    }

    @Test func tritonAndMindIE() throws {
        let t = try parse(.tritonText, #"{"id":"abc","text_input":"hello","parameters":{"max_new_tokens":4,"details":true}}"#, path: "/v2/models/llama/generate_stream")
        #expect(t.stream && t.tritonId == "abc" && t.maxTokens == 4 && t.details)
        let k = try parse(.tritonToken, #"{"inputs":[{"name":"input0","shape":[1,3],"datatype":"UINT32","data":[5,6,7]}],"outputs":[{"name":"output0"}]}"#)
        #expect(k.prompt == [5, 6, 7] && k.maxTokens == 20)
        let i = try parse(.mindieToken, #"{"input_id":[1,2,3],"stream":true}"#)
        #expect(i.prompt == [1, 2, 3] && i.stream)
    }

    @Test func recomputeTokenString() throws {
        let c = ParseContext(modelName: "llama", maxIterTimes: 128, isRecompute: true)
        let r = try RequestParser.parse(dialect: .chat, path: "/v1/chat/completions", body: Array(#"{"model":"llama","messages":"3,10,11,12,50,51","max_tokens":4}"#.utf8), context: c)
        #expect(r.prompt == [10, 11, 12, 50, 51] && r.preGenerated == 2 && r.originalPromptLength == 3)
        do {
            _ = try RequestParser.parse(dialect: .chat, path: "/", body: Array(#"{"model":"llama","messages":[]}"#.utf8), context: c)
            Issue.record("expected 422")
        } catch { #expect(error.message == "Messages MUST be a string for recompute") }
        #expect(r.recomputeBody(prompt: [10, 11, 12], generated: [50, 51, 52]).count > 0)
        #expect(utf8(r.recomputeBody(prompt: [10, 11, 12], generated: [50, 51, 52])) == #"{"model":"llama","messages":"3,10,11,12,50,51,52","max_tokens":4}"#)
    }

    @Test func routes() {
        #expect(Route.data(method: "POST", path: "/v2/models/llama/infer") == .infer(.tritonToken))
        #expect(Route.data(method: "POST", path: "/v2/models/llama/versions/1/infer") == .notFound)
        #expect(Route.data(method: "POST", path: "/v2/models/llama/versions/1/infer", acceptTritonVersions: true) == .infer(.tritonToken))
        #expect(Route.data(method: "POST", path: "/v2/models/a b/infer") == .notFound)
        #expect(Route.data(method: "GET", path: "/dresult") == .dresult)
        #expect(Route.data(method: "POST", path: "/v2/models/llama/stopInfer") == .stopInfer("llama"))
        #expect(Route.data(method: "GET", path: "/v1/health") == .notFound)
    }
}

@Suite struct RenderTests {
    let ctx = ParseContext(modelName: "llama", maxIterTimes: 128)

    func renderer(_ d: Dialect, _ body: String, path: String = "/", mode: WireMode = .mindie) throws -> ResponseRenderer {
        let r = try RequestParser.parse(dialect: d, path: path, body: Array(body.utf8), context: ctx)
        return ResponseRenderer(request: r, options: WireOptions(mode: mode), responseId: "endpoint_common_1", created: 1_700_000_000, model: "llama", promptTokens: r.prompt.count, cachedTokens: 0)
    }

    func toks(_ n: Int, seed: UInt64) -> [TokenInfo] { (0..<n).map { TokenInfo.at($0, seed: seed) } }

    @Test func chatNonStream() throws {
        var r = try renderer(.chat, #"{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"seed":1}"#)
        let t = toks(5, seed: 1)
        let text = t.map(\.text).joined()
        let p = Tokenizer.count("<|user|>\nhi\n<|assistant|>\n")
        #expect(utf8(r.nonStream(t, finish: .length)) == #"{"id":"endpoint_common_1","object":"chat.completion","created":1700000000,"model":"llama","choices":[{"index":0,"message":{"role":"assistant","content":"\#(text)","tool_calls":[]},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":\#(p),"prompt_tokens_details":{"cached_tokens":0},"completion_tokens":5,"total_tokens":\#(p + 5)}}"#)
    }

    @Test func chatStreamMindIEQuirks() throws {
        var r = try renderer(.chat, #"{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"seed":1,"stream":true}"#)
        let t = toks(5, seed: 1)
        var frames: [Frame] = []
        for (i, tok) in t.enumerated() { frames += r.frames(for: tok, finish: i == 4 ? .length : nil) }
        #expect(frames.count == 7)
        let head = #"{"id":"endpoint_common_1","object":"chat.completion.chunk","created":1700000000,"model":"llama","choices":"#
        #expect(frames[0].text == "data: " + head + #"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"# + "\n\n")
        #expect(frames[1].text == "data: " + head + #"[{"index":0,"delta":{"role":"assistant","content":"\#(t[0].text)"},"logprobs":null,"finish_reason":null}]}"# + "\n\n")
        let p = r.promptTokens
        #expect(frames[5].text == "data: " + head + #"[{"index":0,"delta":{"role":"assistant","content":"\#(t[4].text)"},"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":\#(p),"prompt_tokens_details":{"cached_tokens":0},"completion_tokens":5,"total_tokens":\#(p + 5)}}"# + "\n\n")
        #expect(frames[6].text == "data: [DONE]\n\n")
        #expect(frames.map(\.last) == [false, false, false, false, false, true, true])
    }

    @Test func chatStreamCompatUsageOnlyWhenAsked() throws {
        for include in [false, true] {
            var r = try renderer(.chat, #"{"model":"llama","messages":"x","max_tokens":2,"stream":true,"stream_options":{"include_usage":\#(include)}}"#, mode: .compat)
            let t = toks(2, seed: 3)
            var frames = r.frames(for: t[0], finish: nil)
            frames += r.frames(for: t[1], finish: .eos)
            #expect(frames.count == (include ? 5 : 4))
            #expect(!frames[2].text.contains("usage"))
            #expect(frames[2].text.contains(#""finish_reason":"stop"}]}"#))
            if include {
                #expect(frames[3].text == "data: " + #"{"id":"endpoint_common_1","object":"chat.completion.chunk","created":1700000000,"model":"llama","choices":[],"usage":{"prompt_tokens":\#(r.promptTokens),"prompt_tokens_details":{"cached_tokens":0},"completion_tokens":2,"total_tokens":\#(r.promptTokens + 2)}}"# + "\n\n")
            }
            #expect(frames.last?.text == "data: [DONE]\n\n")
        }
    }

    @Test func tgiStreamWithDetails() throws {
        var r = try renderer(.tgiStream, #"{"inputs":"hello","parameters":{"details":true,"seed":4}}"#)
        let t = toks(20, seed: 4)
        var frames: [Frame] = []
        for (i, tok) in t.enumerated() { frames += r.frames(for: tok, finish: i == 19 ? .length : nil) }
        #expect(frames.count == 20)
        #expect(frames[0].text == #"data: {"token":{"id":[\#(t[0].id)],"text":"\#(t[0].text)","logprob":null,"special":null},"generated_text":null,"details":null}"# + "\n\n")
        #expect(frames[19].text == #"data: {"token":{"id":[\#(t[19].id)],"text":"\#(t[19].text)","logprob":null,"special":null},"generated_text":"\#(t.map(\.text).joined())","details":{"prompt_tokens":2,"finish_reason":"length","generated_tokens":20,"seed":4}}"# + "\n\n")
        var c = try renderer(.tgiStream, #"{"inputs":"hello"}"#, mode: .compat)
        #expect(c.frames(for: t[0], finish: nil)[0].text == #"data: {"token":{"id":\#(t[0].id),"text":"\#(t[0].text)","logprob":0.0,"special":false},"generated_text":null,"details":null}"# + "\n\n")
    }

    @Test func tgiGeneralIsAnArray() throws {
        var r = try renderer(.tgiGeneral, #"{"inputs":"hello"}"#)
        let t = toks(2, seed: 5)
        #expect(utf8(r.nonStream(t, finish: .length)) == #"[{"generated_text":"\#(t[0].text)\#(t[1].text)"}]"#)
        var d = try renderer(.tgiGenerate, #"{"inputs":"hello","parameters":{"details":true}}"#)
        #expect(utf8(d.nonStream(t, finish: .eos)) == #"{"details":{"prompt_tokens":2,"finish_reason":"eos_token","generated_tokens":2,"prefill":[],"seed":null,"tokens":[{"id":\#(t[0].id),"logprob":null,"special":null,"text":null},{"id":\#(t[1].id),"logprob":null,"special":null,"text":null}]},"generated_text":"\#(t[0].text)\#(t[1].text)"}"#)
    }

    @Test func vllmNulFramesAndEcho() throws {
        var r = try renderer(.tgiGenerate, #"{"prompt":"hi","stream":true}"#)
        let t = toks(2, seed: 6)
        let f = r.frames(for: t[0], finish: nil) + r.frames(for: t[1], finish: .length)
        #expect(f.map(\.bytes) == [Array(#"{"text":["\#(t[0].text)"]}"#.utf8) + [0], Array(#"{"text":["\#(t[1].text)"]}"#.utf8) + [0]])
        var n = try renderer(.tgiGenerate, #"{"prompt":"hi"}"#)
        #expect(utf8(n.nonStream(t, finish: .length)) == #"{"text":["hi \#(t[0].text)\#(t[1].text)"]}"#)
    }

    @Test func mindieStream() throws {
        var r = try renderer(.mindie, #"{"inputs":"hi","stream":true}"#)
        let t = toks(2, seed: 7)
        let a = r.frames(for: t[0], finish: nil, timing: TokenTiming(prefillMs: 12))
        let b = r.frames(for: t[1], finish: .length, timing: TokenTiming(decodeMs: 5))
        #expect(a[0].text == #"data: {"prefill_time":12,"decode_time":null,"token":{"id":[\#(t[0].id)],"text":"\#(t[0].text)"}}"# + "\n\n")
        #expect(b[0].text == #"data: {"prefill_time":null,"decode_time":5,"token":{"id":[\#(t[1].id)],"text":null},"generated_text":"\#(t[0].text)\#(t[1].text)","details":null}"# + "\n\n")
    }

    @Test func tritonBodies() throws {
        var r = try renderer(.tritonText, #"{"id":"q1","text_input":"hi"}"#, path: "/v2/models/llama/generate_stream")
        let t = toks(1, seed: 8)
        #expect(r.frames(for: t[0], finish: .length)[0].text == #"data:{"id":"q1","model_name":"llama","model_version":null,"text_output":"\#(t[0].text)"}"# + "\n\n")
        var k = try renderer(.tritonToken, #"{"inputs":[{"name":"input0","shape":[1,2],"datatype":"UINT32","data":[1,2]}]}"#)
        let tt = toks(20, seed: 9)
        let body = utf8(k.nonStream(tt, finish: .length))
        #expect(body == #"{"id":"endpoint_common_1","outputs":[{"name":"output0","shape":[1,20],"datatype":"UINT32","data":[\#(tt.map { String($0.id) }.joined(separator: ","))]}]}"#)
    }
}

@Suite struct PDWireTests {
    func headers(_ h: [String: String]) -> (String) -> String? { { h[$0] } }

    @Test func admissionChecksInOrder() {
        func err(_ h: [String: String]) -> String? {
            do { _ = try PDHeaders.check(headers(h)); return nil } catch { return error.message }
        }
        let ok = ["req-type": "prefill", "req-id": "1a2B", "d-target": "127.0.0.2"]
        #expect(err(["req-type": "prefill", "req-id": "1a"]) == "DMI request must have req-type, req-id, d-target headers")
        #expect(err(ok.merging(["req-id": "xyz"]) { $1 }) == "Invalid req-id, the character of req-id should be hex char [0-9, a-f, A-F], but got xyz")
        #expect(err(ok.merging(["req-id": String(repeating: "a", count: 1025)]) { $1 }) == "The length of req-id cannot exceed 1024")
        #expect(err(ok.merging(["req-type": "decode"]) { $1 }) == "Parameter req-type must be prefill but got decode")
        #expect(err(ok.merging(["d-target": "host.local"]) { $1 }) == "Parameter d-target must be an IPv4 address")
        #expect(err(ok.merging(["is-recompute": "yes"]) { $1 }) == "Parameter is-recompute is an optional parameter. When it is set, it must be true or false.")
        let h = try? PDHeaders.check(headers(ok.merging(["d-target": "10.0.0.1;1121", "is-recompute": "true"]) { $1 }))
        #expect(h == PDHeaders(reqId: "1a2B", targetIP: "10.0.0.1", targetPort: 1121, isRecompute: true))
    }

    @Test func pReplyAndMessages() {
        #expect(utf8(PDWire.pReply(reqId: "ab", isStream: false)) == #"{"reqId":"ab","isStream":false}"#)
        #expect(utf8(PDWire.pReply(reqId: "ab", isStream: true, isLastResp: false, output: Array("data: {}\n\n".utf8))) == #"{"reqId":"ab","isStream":true,"isLastResp":false,"output":"data: {}\n\n"}"#)
        #expect(PDWire.message(reqId: "ab", kind: .lastData, payload: Array("data: [DONE]\n\n".utf8)) == Array("reqId:ab\0lastData:data: [DONE]\n\n\0".utf8))
        #expect(PDWire.heartbeat == Array("ka:heartbeat\0".utf8))
        #expect(utf8(PDWire.closeOld) == "reqId:0xffffffffffffffff\0close:new connection is to established, close the old one.\0")
        // a vLLM frame ends in NUL, so an empty message follows
        let m = PDWire.message(reqId: "1", kind: .data, payload: Array(#"{"text":["a"]}"#.utf8) + [0])
        #expect(PDWire.split(m).messages == ["reqId:1", #"data:{"text":["a"]}"#, ""])
        #expect(WireError.unavailable("The service has been stopped").body == Array(#"{"error":"The service has been stopped","error_type":"Service Unavailable"}"#.utf8))
    }

    @Test func decodeParametersRoundTrip() throws {
        let d = DecodeParameters(reqId: "ff", promptTokens: [1, 2], firstTokens: [3], isStream: true, maxNewToken: 4, seed: 99, model: "m", dialect: .chat, details: false, includeUsage: true, id: "ff", responseId: "ff", created: 5, promptText: "p", cachedTokens: 0, pNodeAddr: "127.0.0.1:1121", e2eStartTime: 1.5, eosAfter: nil)
        let back = DecodeParameters(json: try JSON.parse(d.json.bytes))
        #expect(back == d)
        #expect(utf8(DecodeParameters.answer(valid: false, error: "x")) == #"{"isValidDecodeParameters":false,"errorMessage":"x"}"#)
    }
}

@Suite struct RoleStateTests {
    let local = #""local":{"server_ip":"127.0.0.1","id":1,"host_ip":"127.0.0.1","device":[{"device_id":"0","device_ip":"10.0.0.1","device_logical_id":"0","rank_id":"0"}]}"#
    let peer = #"{"server_ip":"127.0.0.2","id":2,"host_ip":"127.0.0.2","device":[]}"#

    @Test func firstRoleWithoutPeersIs503AndChangesNothing() {
        var s = RoleState(dmi: true)
        let r = s.post(role: "prefill", body: Array("{\(local),\"peers\":[]}".utf8), now: 0, linkDelay: 2000)
        #expect(r.status == 503)
        #expect(utf8(r.body) == #"{"error":"Update pd info failed. Reset to previous node status.","error_type":"Service Unavailable"}"#)
        #expect(s == RoleState(dmi: true) && s.status == .unknown && s.role == .none)
    }

    @Test func invalidBodyIs422WithLowercaseType() {
        var s = RoleState(dmi: true)
        let r = s.post(role: "prefill", body: Array(#"{"local":{"server_ip":"host"},"peers":[]}"#.utf8), now: 0, linkDelay: 2000)
        #expect(r.status == 422)
        #expect(utf8(r.body) == #"{"error":"Req body converts to json fail. Reset to previous node status.","error_type":"Input validation error"}"#)
        let bad = s.post(role: "prefill", body: Array("{\(local),\"peers\":[{\"server_ip\":\"1.2.3.4\",\"id\":3}]}".utf8), now: 0, linkDelay: 2000)
        #expect(bad.status == 422)  // id without host_ip
    }

    @Test func linksSettleThenTheCheckerSetsReady() {
        var s = RoleState(dmi: true)
        let r = s.post(role: "prefill", body: Array("{\(local),\"peers\":[\(peer)]}".utf8), now: 0, linkDelay: 2000)
        #expect(r.status == 200 && utf8(r.body) == #"{"result":"ok"}"#)
        #expect(s.status == .switching && s.role == .prefill && s.linkStatusJSON.compact == #"{"peers":[]}"#)
        s.check(now: 1000)
        #expect(s.status == .switching)
        s.check(now: 10_000)
        #expect(s.status == .ready && s.linkStatusJSON.compact == #"{"peers":[{"target":2,"link":"ok"}]}"#)
        // (Q) the same peers again: RoleSwitching persists
        var q = s
        _ = q.post(role: "prefill", body: Array("{\(local),\"peers\":[\(peer)]}".utf8), now: 20_000, linkDelay: 2000)
        q.check(now: 40_000)
        #expect(q.status == .switching)
        var f = s
        _ = f.post(role: "prefill", body: Array("{\(local),\"peers\":[\(peer)]}".utf8), now: 20_000, linkDelay: 2000, fixSticky: true)
        f.check(now: 30_000)
        #expect(f.status == .ready)
        #expect(s.isPrefill && !s.isDecode)
    }

    @Test func failedLinkKeepsSwitching() {
        var s = RoleState(dmi: true)
        _ = s.post(role: "decode", body: Array("{\(local),\"peers\":[\(peer)]}".utf8), now: 0, linkDelay: 2000, linkFailure: "1")
        s.check(now: 10_000)
        #expect(s.status == .switching && s.allLinksFailed)
        #expect(s.linkStatusJSON.compact == #"{"peers":[{"target":2,"link":"failed : 1"}]}"#)
    }
}

@Suite struct MetricsTextTests {
    @Test func fixedLayout() {
        var m = ServerMetrics()
        m.requestReceived = 3
        m.promptHist.observe(120)
        m.ttft.observe(0.03)
        m.npuCacheUsage = 0.125
        let text = m.render(modelName: "llama")
        let lines = text.split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("request_prompt_tokens_bucket") }.count == 16)
        #expect(text.hasPrefix("# HELP request_received_total Count of received requests.\n# TYPE request_received_total counter\nrequest_received_total{model_name=\"llama\"} 3\n"))
        #expect(text.contains("npu_cache_usage_perc{model_name=\"llama\"} 0.125\n"))
        #expect(text.contains("request_prompt_tokens_count{model_name=\"llama\"} 1\nrequest_prompt_tokens_sum{model_name=\"llama\"} 120\nrequest_prompt_tokens_bucket{model_name=\"llama\",le=\"10\"} 0\n"))
        #expect(text.contains("request_prompt_tokens_bucket{model_name=\"llama\",le=\"200\"} 1\n"))
        #expect(text.contains("time_to_first_token_seconds_bucket{model_name=\"llama\",le=\"0.04\"} 1\n"))
        #expect(text.hasSuffix("request_generation_tokens_bucket{model_name=\"llama\",le=\"+Inf\"} 0\n"))
        // the structure does not depend on the values
        let other = ServerMetrics().render(modelName: "llama")
        #expect(other.split(separator: "\n").map { $0.split(separator: " ").first } == lines.map { $0.split(separator: " ").first })
        #expect(ServerMetrics.format(1.0 / 3.0) == "0.3333333333333333")
    }
}
