import MSCore

/// A GET endpoint of the data port that the Coordinator answers itself, with no round trip to an instance
/// (`/metrics` scrapes the instances' metrics ports, as the external port does).
///
/// Users' tools probe these before they send a request: OpenAI clients and UIs list models first, guidellm and
/// TGI/vLLM-style health checks call `/health`, aiperf scrapes `/metrics` on the port it sends to.
public enum LocalEndpoint: Sendable, Equatable {
    /// `GET /v1/models`: OpenAI's model list, from the registered instances' model names.
    case models
    /// `GET /v1/models/{id}`: one model. The id is percent-decoded and may contain `/` (`org/model`).
    case model(String)
    /// `GET /health`: 200 when the Coordinator can serve a request, 503 otherwise.
    case health
    /// `GET /info`: TGI's router info.
    case info
    /// `GET /metrics`: the external port's `/metrics` text.
    case metrics

    /// The only method these endpoints take.
    public static let method = "GET"

    /// The endpoint for a path (no query), or nil.
    /// - Parameter metrics: whether `/metrics` is served on the data port (`api_config.metrics_on_data_port`).
    public static func match(path: some StringProtocol, metrics: Bool) -> LocalEndpoint? {
        switch path {
        case "/v1/models", "/v1/models/": return .models
        case "/health": return .health
        case "/info": return .info
        case "/metrics": return metrics ? .metrics : nil
        default: break
        }
        guard path.hasPrefix("/v1/models/") else { return nil }
        let raw = path.dropFirst("/v1/models/".count)
        return .model(percentDecoded(raw) ?? String(raw))
    }

    /// The error dialect of a refusal on this endpoint: OpenAI for `/v1/models…`, generic otherwise.
    public var dialect: Dialect? {
        switch self {
        case .models, .model: return .openAI
        case .health, .info, .metrics: return nil
        }
    }

    /// `%XX` escapes decoded as UTF-8; nil when an escape is malformed or the result is not UTF-8.
    static func percentDecoded(_ s: some StringProtocol) -> String? {
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            guard b == UInt8(ascii: "%") else {
                out.append(b)
                continue
            }
            guard it.count >= 2, let hi = hex(it.removeFirst()), let lo = hex(it.removeFirst()) else { return nil }
            out.append(hi << 4 | lo)
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// The models the cluster serves, rendered in OpenAI's and TGI's formats. Pure.
public enum ModelCatalog {
    /// `owned_by` of every model card.
    public static let owner = "mindie-ms"

    /// The distinct non-empty model names of the instances that take requests (not offline), in registration order.
    public static func names(_ snapshot: InstanceSnapshot) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for i in snapshot.instances where !i.offline && !i.modelName.isEmpty && seen.insert(i.modelName).inserted {
            out.append(i.modelName)
        }
        return out
    }

    /// One OpenAI model object.
    public static func card(_ name: String, created: Int) -> String {
        "{\"id\":\(JSON.quoted(name)),\"object\":\"model\",\"created\":\(created),\"owned_by\":\"\(owner)\",\"root\":\(JSON.quoted(name))}"
    }

    /// OpenAI's `GET /v1/models` body.
    public static func list(_ names: [String], created: Int) -> String {
        "{\"object\":\"list\",\"data\":[" + names.map { card($0, created: created) }.joined(separator: ",") + "]}"
    }

    /// The 404 of `GET /v1/models/{id}` for a model no instance serves.
    public static func notFound(_ id: String) -> GatewayError {
        GatewayError(status: 404, message: "The model `\(id)` does not exist", openAIType: "invalid_request_error")
    }

    /// TGI's `GET /info` body: the first model, the cluster's slot total as its concurrency, and every model served.
    /// Fields the Coordinator does not know (dtype, sha, token limits) are left out rather than invented.
    public static func info(_ snapshot: InstanceSnapshot, version: String) -> String {
        let names = names(snapshot)
        let slots = snapshot.instances.filter { !$0.offline && $0.role != .decode }.reduce(0) { $0 + $1.totalSlots }
        var s = "{\"model_id\":\(JSON.quoted(names.first ?? "")),\"model_pipeline_tag\":\"text-generation\""
        s += ",\"max_concurrent_requests\":\(slots),\"router\":\"mindie-ms-coordinator\",\"version\":\(JSON.quoted(version))"
        s += ",\"models\":[" + names.map { JSON.quoted($0) }.joined(separator: ",") + "]}"
        return s
    }
}
