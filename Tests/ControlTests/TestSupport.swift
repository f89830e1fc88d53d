import Foundation
import Testing

@testable import Control
import MSCore

/// Paths of the package and of the shared reference files, found from this file's location.
enum Paths {
    /// The package root (this file is `<root>/Tests/ControlTests/TestSupport.swift`).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// `../shared/reference-conf` beside the checkout.
    static let referenceConf: URL = packageRoot.appendingPathComponent("../shared/reference-conf").standardized
    /// This project's `conf/`.
    static let conf: URL = packageRoot.appendingPathComponent("conf")

    static func reference(_ name: String) throws -> Data {
        try Data(contentsOf: referenceConf.appendingPathComponent(name))
    }

    static func ours(_ name: String) throws -> Data {
        try Data(contentsOf: conf.appendingPathComponent(name))
    }
}

extension JSON {
    /// A copy with the value at `path` replaced (nil removes the key). Missing objects on the way are created.
    func setting(_ path: [String], to value: JSON?) -> JSON {
        guard let head = path.first else { return value ?? .null }
        var o = objectValue ?? [:]
        if path.count == 1 {
            o[head] = value
        } else {
            o[head] = (o[head] ?? .object([:])).setting(Array(path.dropFirst()), to: value)
        }
        return .object(o)
    }

    func setting(_ dotted: String, to value: JSON?) -> JSON {
        setting(dotted.split(separator: ".").map(String.init), to: value)
    }

    var data: Data { try! JSONEncoder().encode(self) }
}

/// This project's `conf/ms_controller.json` as a `JSON`, for tests that vary one key.
func ourControllerJSON() throws -> JSON {
    try JSON.parse(try Paths.ours("ms_controller.json"))
}

/// Loads our config with `changes` applied (dotted key → value, nil = remove).
func loadConfig(_ changes: [(String, JSON?)] = [], environment: [String: String] = [:]) throws -> ControllerConfig {
    var json = try ourControllerJSON()
    for (k, v) in changes { json = json.setting(k, to: v) }
    return try ControllerConfig(data: json.data, environment: environment)
}

/// The `ConfigError` thrown for our config with `changes`, or nil if it loads.
func configError(_ changes: [(String, JSON?)], environment: [String: String] = [:]) throws -> ConfigError? {
    var json = try ourControllerJSON()
    for (k, v) in changes { json = json.setting(k, to: v) }
    do {
        _ = try ControllerConfig(data: json.data, environment: environment)
        return nil
    } catch {
        return error
    }
}

/// A server entry of a rank table.
struct TableServer {
    var ip: String
    var hostID: String = "10.0.0.1"
    var mgmtPort: String? = nil
    var predictPort: String? = nil
    var metricPort: String? = nil
    var interCommPort: String? = nil
    var hardwareType: String? = nil
    var devices: Int = 1
    var deviceIP: String? = nil

    var json: JSON {
        var o: JSON.Object = ["server_id": .string(hostID), "server_ip": .string(ip)]
        if let mgmtPort { o["mgmt_port"] = .string(mgmtPort) }
        if let predictPort { o["predict_port"] = .string(predictPort) }
        if let metricPort { o["metric_port"] = .string(metricPort) }
        if let interCommPort { o["inter_comm_port"] = .string(interCommPort) }
        if let hardwareType { o["hardware_type"] = .string(hardwareType) }
        o["device"] = .array(
            (0..<devices).map { d in
                .object([
                    "device_id": .string(String(d)), "device_ip": .string(deviceIP ?? ip),
                    "device_logical_id": .string(String(d)), "rank_id": .string(String(d)),
                ])
            })
        return .object(o)
    }
}

/// A rank table in the reference format: group 0 (coordinators), group 1 (controller), group 2 (`servers`).
func rankTableJSON(servers: [TableServer], coordinators: [String] = ["127.0.0.1"]) -> JSON {
    .object([
        "version": "1.0", "status": "completed",
        "server_group_list": .array([
            .object([
                "group_id": "0", "server_count": .string(String(coordinators.count)),
                "server_list": .array(coordinators.map { .object(["server_id": "coordinator", "server_ip": .string($0)]) }),
            ]),
            .object([
                "group_id": "1", "server_count": "1",
                "server_list": .array([.object(["server_id": "controller", "server_ip": "127.0.0.1"])]),
            ]),
            .object([
                "group_id": "2", "server_count": .string(String(servers.count)),
                "server_list": .array(servers.map(\.json)),
            ]),
        ]),
    ])
}

/// `n` servers on 10.1.x.y, one device each.
func servers(_ n: Int, devices: Int = 1) -> [TableServer] {
    (0..<n).map { i in TableServer(ip: "10.1.\(i / 250).\(i % 250 + 1)", devices: devices) }
}

