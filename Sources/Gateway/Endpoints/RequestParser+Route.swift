import MSCore

/// A refused inference request, with what the edge needs to reply: the error, the dialect to render
/// it in, and extra headers (`Allow: POST` on 405).
public struct Refusal: Error, Sendable, Equatable {
    public var error: GatewayError
    /// The dialect to render ``error`` in (nil: generic `{"error","code"}`).
    public var dialect: Dialect?
    /// Extra response headers.
    public var headers: [(String, String)]

    public init(_ error: GatewayError, dialect: Dialect?, headers: [(String, String)] = []) {
        self.error = error
        self.dialect = dialect
        self.headers = headers
    }

    /// Reply body bytes (Content-Type ``GatewayError/contentType``).
    public var body: [UInt8] { error.body(dialect: dialect) }

    public static func == (a: Refusal, b: Refusal) -> Bool {
        a.error == b.error && a.dialect == b.dialect && a.headers.map { $0.0 + ":" + $0.1 } == b.headers.map { $0.0 + ":" + $0.1 }
    }
}

extension RequestParser {
    /// Routes and parses one data-port request: `RouteTable.match` then ``parse(route:body:)``.
    /// - Throws: a ``Refusal`` carrying 404/405/414 or the route's 400, in the caller's dialect.
    public func parse(method: some StringProtocol, target: some StringProtocol,
                      body: some Collection<UInt8>) throws(Refusal) -> InferenceRequest {
        // only a refusal needs the path (to guess its dialect)
        var path: some StringProtocol { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }
        switch RouteTable.match(method: method, target: target, passthrough: passthroughRoutes) {
        case .notFound:
            throw Refusal(.notFound, dialect: Dialect.guess(path: path))
        case .methodNotAllowed:
            throw Refusal(.methodNotAllowed, dialect: Dialect.guess(path: path), headers: [("Allow", "POST")])
        case .targetTooLong:
            throw Refusal(.targetTooLong, dialect: Dialect.guess(path: target.prefix(16)))
        case .route(let route):
            do {
                return try parse(route: route, body: body)
            } catch {
                throw Refusal(error, dialect: route.dialect ?? Self.guessGenerateDialect(body))
            }
        }
    }

    /// For a refused `/generate` body: TGI if it mentions `inputs`, vLLM if `prompt`, else generic.
    static func guessGenerateDialect(_ body: some Collection<UInt8>) -> Dialect? {
        guard let v = try? JSON.parse(body, maxDepth: 64) else { return nil }
        if v["inputs"] != nil { return .tgi }
        if v["prompt"] != nil { return .vllm }
        return nil
    }
}
