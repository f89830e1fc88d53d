import Testing

@testable import Gateway
import MSCore

private func parse(_ target: String, _ body: String, maxDepth: Int = 10) throws(GatewayError) -> InferenceRequest {
    guard case .route(let r) = RouteTable.match(method: "POST", target: target) else {
        Issue.record("no route for \(target)")
        throw GatewayError.notFound
    }
    return try RequestParser(maxDepth: maxDepth).parse(route: r, body: Array(body.utf8))
}

private func refusal(_ target: String, _ body: String, maxDepth: Int = 10) -> GatewayError? {
    do {
        _ = try parse(target, body, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite("Route table")
struct RouteTableTests {
    @Test("every route of §2.1", arguments: [
        ("/v2/models/llama/generate", Route.tritonGenerate(model: "llama", version: nil, stream: false)),
        ("/v2/models/llama/generate_stream", .tritonGenerate(model: "llama", version: nil, stream: true)),
        ("/v2/models/m/versions/1/generate", .tritonGenerate(model: "m", version: "1", stream: false)),
        ("/v2/models/m/versions/2/generate_stream", .tritonGenerate(model: "m", version: "2", stream: true)),
        ("/v2/models/llama/infer", .tritonInfer(model: "llama", version: nil)),
        ("/v2/models/m/versions/3/infer", .tritonInfer(model: "m", version: "3")),
        ("/v2/models//generate", .tritonGenerate(model: "", version: nil, stream: false)),
        ("/generate_stream", .tgiGenerateStream),
        ("/", .tgiRoot),
        ("/generate", .generate),
        ("/v1/completions", .openAICompletions),
        ("/v1/chat/completions", .openAIChat),
        ("/v1/chat/completions?api-version=1", .openAIChat),
        ("/infer", .mindIEInfer),
        ("/infer_token", .mindIEInferToken),
        ("/v1/tokenizer", .tokenizer),
    ])
    func routes(target: String, expected: Route) {
        #expect(RouteTable.match(method: "POST", target: target) == .route(expected))
    }

    @Test("unknown paths are 404, known paths with another method 405, long targets 414 (case 23)")
    func refusals() {
        #expect(RouteTable.match(method: "GET", target: "/v1/instances/offline") == .notFound)
        #expect(RouteTable.match(method: "POST", target: "/v1/nope") == .notFound)
        #expect(RouteTable.match(method: "POST", target: "/v2/models/m/ready") == .notFound)
        #expect(RouteTable.match(method: "POST", target: "/v2/models/a/b/generate") == .notFound)
        #expect(RouteTable.match(method: "POST", target: "/v1/chat/completions/") == .notFound)
        #expect(RouteTable.match(method: "GET", target: "/v1/chat/completions") == .methodNotAllowed)
        #expect(RouteTable.match(method: "post", target: "/infer") == .methodNotAllowed)
        #expect(RouteTable.match(method: "PUT", target: "/v2/models/m/generate") == .methodNotAllowed)
        let long = "/v1/chat/completions?q=" + String(repeating: "a", count: 4096)
        #expect(RouteTable.match(method: "POST", target: long) == .targetTooLong)
        let limit = "/infer?" + String(repeating: "a", count: 4096 - 7)
        #expect(RouteTable.match(method: "POST", target: limit) == .route(.mindIEInfer))
    }

    @Test("404 and 405 bodies speak the path's likely dialect")
    func notFoundBodies() {
        #expect(text(GatewayError.notFound.body(dialect: Dialect.guess(path: "/v1/foo")))
            == #"{"error":{"message":"Invalid request: unknown path","type":"invalid_request_error","code":404}}"#)
        #expect(text(GatewayError.methodNotAllowed.body(dialect: Dialect.guess(path: "/v2/models/m/infer")))
            == #"{"error":"Invalid request: method not allowed, use POST"}"#)
        #expect(text(GatewayError.notFound.body(dialect: Dialect.guess(path: "/foo")))
            == #"{"error":"Invalid request: unknown path","code":404}"#)
    }
}

@Suite("Request parsing")
struct RequestParserTests {
    @Test("OpenAI chat: stream, model, max tokens, content parts, message dumps")
    func openAIChat() throws {
        let body = #"""
        {"model":"llama","stream":true,"max_tokens":64,"messages":[
          {"role":"system","content":"You are terse."},
          {"role":"user","content":[{"type":"text","text":"Hi "},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"there"}]}]}
        """#
        let r = try parse("/v1/chat/completions", body)
        #expect(r.dialect == .openAI && r.stream && r.model == "llama" && r.maxTokens == 64)
        #expect(text(r.prompt.renderedPrompt)
            == "system\nYou are terse.\nuser\nHi {\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}}there\n")
        #expect(r.prompt.messageDumps == [
            #"{"role":"system","content":"You are terse."}"#,
            #"{"role":"user","content":[{"type":"text","text":"Hi "},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"there"}]}"#,
        ])
        let dumpLength = 2 + r.prompt.messageDumps!.map(\.utf8.count).reduce(0, +) + 1
        #expect(r.prompt.size == .bytes(dumpLength))
    }

    @Test("OpenAI: max_completion_tokens wins; stream defaults to false; null stream is false")
    func openAIDefaults() throws {
        let r = try parse("/v1/chat/completions",
                          #"{"messages":[{"role":"user","content":"x"}],"max_tokens":5,"max_completion_tokens":9,"stream":null}"#)
        #expect(!r.stream && r.maxTokens == 9)
    }

    @Test("OpenAI completions: prompt string, list, tokens; size is the JSON dump length")
    func openAICompletions() throws {
        let a = try parse("/v1/completions", #"{"prompt":"Hello","stream":false}"#)
        #expect(text(a.prompt.renderedPrompt) == "Hello" && a.prompt.size == .bytes(7) && a.prompt.messageDumps == nil)
        let b = try parse("/v1/completions", #"{"prompt":["a","b"]}"#)
        #expect(text(b.prompt.renderedPrompt) == "a\nb" && b.prompt.size == .bytes(9))
        let c = try parse("/v1/completions", #"{"prompt":[1,2]}"#)
        #expect(c.prompt.renderedPrompt == [1, 0, 0, 0, 2, 0, 0, 0])
        // prompt wins over messages when both are present
        let d = try parse("/v1/chat/completions", #"{"prompt":"p","messages":[{"role":"user","content":"m"}]}"#)
        #expect(text(d.prompt.renderedPrompt) == "p")
    }

    @Test("OpenAI with neither prompt nor messages (case 19)")
    func openAIMissing() {
        let e = refusal("/v1/chat/completions", #"{"model":"x"}"#)
        #expect(e == .missingPromptOrMessages)
        #expect(text(e!.body(dialect: .openAI))
            == #"{"error":{"message":"Invalid request format: Missing both 'prompt' or 'messages'","type":"invalid_request_error","code":400}}"#)
    }

    @Test("400 Request format is invalid for every case of §2.1", arguments: [
        ("/v1/chat/completions", "not json"),
        ("/v1/chat/completions", #"{"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#),
        ("/v1/chat/completions", #"{"messages":"hello"}"#),
        ("/v1/chat/completions", #"{"messages":[1]}"#),
        ("/v1/chat/completions", #"{"messages":[{"role":"user","content":5}]}"#),
        ("/v1/completions", #"{"prompt":{"a":1}}"#),
        ("/v1/completions", "[1,2]"),
        ("/generate", #"{"prompt":123}"#),
        ("/generate", #"{"parameters":{}}"#),
        ("/generate", #"{"inputs":["a","b"]}"#),
        ("/generate", #"{"prompt":"x","stream":1}"#),
        ("/", #"{"inputs":"x","stream":"true"}"#),
        ("/", #"{"text":"x"}"#),
        ("/generate_stream", #"{"inputs":[{"type":"image"}]}"#),
        ("/infer", #"{"inputs":"x","input_id":[1]}"#),
        ("/infer", #"{"stream":true}"#),
        ("/infer", #"{"inputs":7}"#),
        ("/infer_token", #"{"input_id":[1,-2]}"#),
        ("/infer_token", #"{"input_id":[1,4294967296]}"#),
        ("/v2/models//generate", #"{"text_input":"x"}"#),
        ("/v2/models/m/versions//generate", #"{"text_input":"x"}"#),
        ("/v2/models/m/generate", #"{"parameters":{}}"#),
        ("/v2/models/m/infer", #"{"inputs":[{"name":"input_ids","datatype":"UINT64","shape":[2],"data":[1,2]}]}"#),
        ("/v2/models/m/infer", #"{"inputs":[{"name":"input_ids","datatype":"UINT32","shape":[2]}]}"#),
        ("/v2/models/m/infer", #"{"inputs":[]}"#),
        ("/v2/models/m/infer", "{}"),
        ("/v1/tokenizer", "{"),
    ])
    func formatInvalid(target: String, body: String) {
        let e = refusal(target, body)
        #expect(e == .formatInvalid)
        #expect(e?.status == 400 && e?.message == "Request format is invalid")
    }

    @Test("TGI: / reads stream, /generate_stream always streams, /generate with inputs never does")
    func tgi() throws {
        let a = try parse("/", #"{"inputs":"hi","stream":true,"parameters":{"max_new_tokens":20}}"#)
        #expect(a.dialect == .tgi && a.stream && a.maxTokens == 20 && text(a.prompt.renderedPrompt) == "hi")
        #expect(try parse("/", #"{"inputs":"hi"}"#).stream == false)
        #expect(try parse("/generate_stream", #"{"inputs":"hi"}"#).stream == true)
        let g = try parse("/generate", #"{"inputs":"hi","stream":true}"#)
        #expect(g.dialect == .tgi && g.stream == false && g.prompt.size == .bytes(2))
    }

    @Test("vLLM: /generate with prompt reads stream and max_tokens")
    func vllm() throws {
        let r = try parse("/generate", #"{"prompt":"héllo","stream":true,"max_tokens":3}"#)
        #expect(r.dialect == .vllm && r.stream && r.maxTokens == 3 && r.prompt.size == .bytes(6))
    }

    @Test("Triton: text_input, token tensors (nested data flattened), model and version from the path (case 21)")
    func triton() throws {
        let a = try parse("/v2/models/llama_65b/generate_stream", #"{"text_input":"abc","parameters":{"max_new_tokens":7}}"#)
        #expect(a.dialect == .triton && a.stream && a.model == "llama_65b" && a.maxTokens == 7)
        #expect(a.prompt.size == .bytes(3))
        let b = try parse("/v2/models/m/versions/1/generate",
                          #"{"inputs":[{"name":"input_ids","datatype":"UINT32","shape":[1,3],"data":[[1,2,300]]}]}"#)
        #expect(!b.stream && b.prompt.size == .rawTokens(3))
        #expect(b.prompt.renderedPrompt == [1, 0, 0, 0, 2, 0, 0, 0, 44, 1, 0, 0])
        // A valid infer without `parameters` is accepted (forwarded).
        let c = try parse("/v2/models/m/infer", #"{"inputs":[{"name":"input_ids","datatype":"UINT32","shape":[2],"data":[5,6]}]}"#)
        #expect(c.route == .tritonInfer(model: "m", version: nil) && !c.stream && c.prompt.size == .rawTokens(2))
    }

    @Test("MindIE: inputs or input_id, stream flag (case 22 for both)")
    func mindIE() throws {
        let a = try parse("/infer", #"{"inputs":"abcd","stream":true,"parameters":{"max_new_tokens":2}}"#)
        #expect(a.dialect == .mindIE && a.stream && a.maxTokens == 2 && a.prompt.size == .bytes(4))
        let b = try parse("/infer_token", #"{"input_id":[1,2,3]}"#)
        #expect(!b.stream && b.prompt.size == .scaledTokens(3))
        #expect(refusal("/infer", #"{"inputs":"a","input_id":[1]}"#) == .formatInvalid)
    }

    @Test("tokenizer bodies need only be JSON")
    func tokenizer() throws {
        let r = try parse("/v1/tokenizer", #"{"inputs":"abc"}"#)
        #expect(r.dialect == .tokenizer && !r.stream && r.prompt.size == .none)
    }

    @Test("JSON nested deeper than the limit is refused with 400 (DECISIONS 14)")
    func depthLimit() throws {
        func nested(_ levels: Int) -> String {
            // top-level object is level 1; add (levels - 1) arrays inside `x`
            "{\"prompt\":\"p\",\"x\":" + String(repeating: "[", count: levels - 1) + String(repeating: "]", count: levels - 1) + "}"
        }
        _ = try parse("/v1/completions", nested(10))
        let e = refusal("/v1/completions", nested(11))
        #expect(e == .tooDeep(limit: 10))
        #expect(text(e!.body(dialect: .openAI))
            == #"{"error":{"message":"Request format is invalid: JSON nested deeper than 10 levels","type":"invalid_request_error","code":400}}"#)
        // Depth is configurable for deployments with deep tool schemas.
        _ = try parse("/v1/completions", nested(11), maxDepth: 32)
        // A very deep body does not crash the parser.
        #expect(refusal("/v1/completions", String(repeating: "[", count: 100_000)) == .tooDeep(limit: 10))
    }
}

@Suite("Error rendering")
struct ErrorRenderingTests {
    @Test("reply bodies in each dialect (DECISIONS 2)")
    func bodies() {
        let e = GatewayError.notReady
        #expect(text(e.body(dialect: .openAI))
            == #"{"error":{"message":"MindIE-MS Coordinator is not ready","type":"server_error","code":503}}"#)
        #expect(text(e.body(dialect: .tgi)) == #"{"error":"MindIE-MS Coordinator is not ready","error_type":"overloaded"}"#)
        #expect(text(e.body(dialect: .triton)) == #"{"error":"MindIE-MS Coordinator is not ready"}"#)
        #expect(text(e.body(dialect: .mindIE)) == #"{"error":"MindIE-MS Coordinator is not ready","code":503}"#)
        #expect(text(e.body(dialect: .vllm)) == #"{"error":"MindIE-MS Coordinator is not ready","code":503}"#)
        #expect(text(GatewayError.formatInvalid.body(dialect: .tgi))
            == #"{"error":"Request format is invalid","error_type":"validation"}"#)
        #expect(text(GatewayError.tooManyRequests.body(dialect: .openAI))
            == #"{"error":{"message":"Too many requests","type":"server_error","code":429}}"#)
        #expect(text(GatewayError.firstTokenTimeout.body(dialect: .tgi))
            == #"{"error":"Request first token timeout","error_type":"generation"}"#)
    }

    @Test("memory guard bodies match the reference's fields")
    func memoryGuard() {
        let e = GatewayError.memoryLimit
        #expect(text(e.body(dialect: .openAI))
            == #"{"error":{"message":"Memory limit exceeded","type":"server_error","code":429}}"#)
        #expect(text(e.body(dialect: .tgi)) == #"{"error":"Memory limit exceeded","error_type":"overloaded"}"#)
        #expect(text(e.body(dialect: nil)) == #"{"error":"Memory limit exceeded","code":429}"#)
    }

    @Test("messages are JSON-escaped")
    func escaping() {
        let e = GatewayError(status: 500, message: "a \"b\"\n\\c\u{01}")
        #expect(text(e.body(dialect: .triton)) == #"{"error":"a \"b\"\n\\c\u0001"}"#)
    }

    @Test("in-stream error events per dialect (DECISIONS 9)")
    func streamEvents() {
        let e = GatewayError.inferenceTimeout
        #expect(text(e.streamErrorEvent(dialect: .openAI, stream: true))
            == "data: {\"error\":{\"message\":\"Request inference timeout\",\"type\":\"server_error\",\"code\":408}}\n\n")
        #expect(text(e.streamErrorEvent(dialect: .tgi, stream: true))
            == "data: {\"error\":\"Request inference timeout\",\"error_type\":\"generation\"}\n\n")
        #expect(text(e.streamErrorEvent(dialect: .triton, stream: true)) == "data: {\"error\":\"Request inference timeout\"}\n\n")
        #expect(text(e.streamErrorEvent(dialect: .mindIE, stream: true))
            == "data: {\"error\":\"Request inference timeout\",\"code\":408}\n\n")
        #expect(e.streamErrorEvent(dialect: .vllm, stream: true)
            == Array("{\"error\":\"Request inference timeout\",\"code\":408}".utf8) + [0])
        #expect(text(e.streamErrorEvent(dialect: .openAI, stream: false))
            == "{\"error\":{\"message\":\"Request inference timeout\",\"type\":\"server_error\",\"code\":408}}")
    }
}

@Suite("Route + parse")
struct RouteAndParseTests {
    private func refusal(_ method: String, _ target: String, _ body: String) -> Refusal? {
        do {
            _ = try RequestParser().parse(method: method, target: target, body: Array(body.utf8))
            return nil
        } catch {
            return error
        }
    }

    @Test("refusals carry status, dialect, headers and the exact body")
    func refusals() throws {
        let r405 = try #require(refusal("GET", "/v1/chat/completions", ""))
        #expect(r405.error.status == 405 && r405.dialect == .openAI)
        #expect(r405.headers.map { "\($0.0): \($0.1)" } == ["Allow: POST"])
        let r404 = try #require(refusal("POST", "/nope", "{}"))
        #expect(text(r404.body) == #"{"error":"Invalid request: unknown path","code":404}"#)
        let tgi = try #require(refusal("POST", "/generate", #"{"inputs":1}"#))
        #expect(text(tgi.body) == #"{"error":"Request format is invalid","error_type":"validation"}"#)
        let vllm = try #require(refusal("POST", "/generate", #"{"prompt":123}"#))
        #expect(text(vllm.body) == #"{"error":"Request format is invalid","code":400}"#)
        let triton = try #require(refusal("POST", "/v2/models//generate", #"{"text_input":"x"}"#))
        #expect(triton.error.status == 400 && text(triton.body) == #"{"error":"Request format is invalid"}"#)
        let ok = try RequestParser().parse(method: "POST", target: "/v1/completions?x=1", body: Array(#"{"prompt":"a"}"#.utf8))
        #expect(ok.route == .openAICompletions)
    }
}

@Suite("chat validation without prompt features")
struct LeanChatValidationTests {
    @Test("the lean parser (round_robin, least_load) refuses the same malformed chats", arguments: [
        #"{"messages":"hello"}"#, #"{"messages":[1]}"#, #"{"messages":[{"role":"user","content":5}]}"#,
        #"{"messages":[{"role":"user","content":[{"type":"text","text":3}]}]}"#, #"{"messages":[{"role":"user","content":["x"]}]}"#,
    ])
    func refuses(_ body: String) {
        #expect(throws: GatewayError.formatInvalid) {
            _ = try RequestParser(detailedChatFeatures: false).parse(route: .openAIChat, body: Array(body.utf8))
        }
        #expect(throws: GatewayError.formatInvalid) {
            _ = try RequestParser(detailedChatFeatures: true).parse(route: .openAIChat, body: Array(body.utf8))
        }
    }

    @Test func acceptsWhatTheDetailedParserAccepts() throws {
        let body = #"{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#
        let lean = try RequestParser(detailedChatFeatures: false).parse(route: .openAIChat, body: Array(body.utf8))
        let full = try RequestParser(detailedChatFeatures: true).parse(route: .openAIChat, body: Array(body.utf8))
        #expect(lean.dialect == full.dialect && lean.stream == full.stream)
        #expect(full.prompt.messageDumps?.count == 1 && lean.prompt.messageDumps == nil)
    }
}
