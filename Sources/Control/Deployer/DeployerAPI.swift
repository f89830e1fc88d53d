import Foundation
public import Logging
public import MSCore

/// Routing of the REST API (docs/wire/deployer.md §2 with DECISIONS 1 and 25): `/v1/servers` create/update/get/delete.
public enum DeployerAPI {
    /// What a request asks for, decided without I/O.
    public enum Route: Sendable, Equatable {
        case create
        case update
        case get(String)
        case delete(String)
        case list
        case refuse(DeployerReply)
    }

    public static func route(method: String, path: String) -> Route {
        guard path.hasPrefix("/"), !path.contains("..") else { return .refuse(DeployerReply(400, "Illegal request-target")) }
        guard ["GET", "POST", "DELETE"].contains(method) else { return .refuse(DeployerReply(405, "Unknown Http-method")) }
        let notFound = Route.refuse(DeployerReply(404, "Cannot find the resource \(path)"))
        if path == "/v1/servers" {
            switch method {
            case "POST": return .create
            case "GET": return .list
            default: return notFound
            }
        }
        guard path.hasPrefix("/v1/servers/") else { return notFound }
        let name = String(path.dropFirst("/v1/servers/".count))
        switch method {
        case "POST": return .update
        case "GET": return name.isEmpty ? .list : .get(name)
        default: return name.isEmpty ? notFound : .delete(name)
        }
    }

    /// The reference's body limit.
    public static let maxBodyBytes = 10 << 20
    /// What the HTTP layer reads before it refuses by itself. Over TLS that refusal is a bare close (the client is
    /// still sending), so the listener reads up to twice the limit and `handle` answers 413 with a JSON reply.
    public static let listenerBodyBytes = 2 * maxBodyBytes + (1 << 20)

    /// Runs a routed request against the service.
    public static func handle(method: String, path: String, body: [UInt8], service: DeployerService) async -> DeployerReply {
        if body.count > maxBodyBytes {
            return DeployerReply(413, "request body is \(body.count) bytes, over the limit of \(maxBodyBytes) bytes (10 MiB)")
        }
        return switch route(method: method, path: path) {
        case .create: await service.create(body: body)
        case .update: await service.update(body: body)
        case .get(let name): await service.get(name: name, target: path)
        case .delete(let name): await service.delete(name: name, target: path)
        case .list: await service.list()
        case .refuse(let reply): reply
        }
    }

    /// An `HTTPHandler`: the work runs in a task, the answer goes back on the request's loop.
    public static func httpHandler(service: DeployerService, logger: Logger) -> HTTPHandler {
        { request, responder in
            let box = responder.bound
            let method = request.method, path = request.path, body = request.body
            Task {
                let reply = await handle(method: method, path: path, body: body, service: service)
                logger.info("request", metadata: ["method": "\(method)", "path": "\(path)", "status": "\(reply.status)"])
                let text = reply.body
                box.execute { $0.respondJSON(status: reply.status, text) }
            }
        }
    }
}

