import Foundation
import MSCore
import Synchronization

/// The data port's endpoints that are not inference: model list, health, TGI info and metrics (``LocalEndpoint``),
/// and the PD-mode dispatch of pass-through routes.
extension Coordinator {
    /// `created` of the model cards: when this process first listed them (the Controller tells us no registration time).
    private static let modelsCreated = Int(Date().timeIntervalSince1970)

    /// Answers a ``LocalEndpoint`` (loop thread, no instance round trip except `/metrics`' scrape).
    /// - Returns: false when the path is not one of them (the request is an inference request).
    func handleLocalData(_ req: HTTPRequest, _ res: HTTPResponder) -> Bool {
        guard let endpoint = LocalEndpoint.match(path: req.path, metrics: config.api.metricsOnDataPort) else { return false }
        guard req.method == LocalEndpoint.method else {
            let e = GatewayError(status: 405, message: "Invalid request: method not allowed, use GET")
            res.respond(status: 405, headers: [("content-type", GatewayError.contentType), ("allow", LocalEndpoint.method)],
                        body: e.body(dialect: endpoint.dialect))
            return true
        }
        let view = cluster.view
        switch endpoint {
        case .models:
            json(res, 200, ModelCatalog.list(ModelCatalog.names(view.snapshot), created: Self.modelsCreated))
        case .model(let id):
            if ModelCatalog.names(view.snapshot).contains(id) {
                json(res, 200, ModelCatalog.card(id, created: Self.modelsCreated))
            } else {
                let e = ModelCatalog.notFound(id)
                json(res, e.status, e.json(dialect: .openAI))
            }
        case .health:
            if view.available && !isShutDown.load(ordering: .relaxed) {
                res.respond(status: 200, body: [])
            } else {
                json(res, 503, GatewayError.notReady.json(dialect: nil))
            }
        case .info:
            if view.available {
                json(res, 200, ModelCatalog.info(view.snapshot, version: ProductInfo.version))
            } else {
                json(res, 503, GatewayError.notReady.json(dialect: .tgi))
            }
        case .metrics:
            serveMetrics(res)
        }
        return true
    }

    private func json(_ res: HTTPResponder, _ status: Int, _ body: String) {
        res.respond(status: status, headers: [("content-type", "application/json")], body: Array(body.utf8))
    }

    /// PD mode has no P/D hand-off for pass-through routes (embeddings, tokenize, responses): the request goes whole
    /// to the least loaded instance that is not offline, as the tokenizer's does (§5.4).
    func dispatchPassthroughPD(_ t: TrackedRequest, view: ClusterView) {
        let online = InstanceSnapshot(view.snapshot.instances.filter { !$0.offline })
        run(t, .passthrough(Scheduler.tokenizerTarget(online, load: view.load()).flatMap { view.entries[$0] }))
    }
}
