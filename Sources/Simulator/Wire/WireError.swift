import MSCore

/// An error reply of the data port (docs/wire/simulator.md §2.1): `{"error":"<msg>","error_type":"<t>"}`.
public struct WireError: Error, Equatable, Sendable {
    public var status: Int
    public var message: String
    public var type: String

    public init(status: Int, message: String, type: String) {
        self.status = status; self.message = message; self.type = type
    }

    public static func badRequest(_ m: String) -> WireError { .init(status: 400, message: m, type: "Bad Request") }
    public static func notFound(_ m: String) -> WireError { .init(status: 404, message: m, type: "NotFoundError") }
    public static func validation(_ m: String) -> WireError { .init(status: 422, message: m, type: "Input Validation Error") }
    public static func generation(_ m: String) -> WireError { .init(status: 424, message: m, type: "Generation Error") }
    public static func incomplete(_ m: String) -> WireError { .init(status: 500, message: m, type: "Incomplete Generation") }
    public static func unavailable(_ m: String) -> WireError { .init(status: 503, message: m, type: "Service Unavailable") }
    /// A bare 404 with an empty body (unknown route).
    public static let noRoute = WireError(status: 404, message: "", type: "")

    /// The JSON body.
    public var body: [UInt8] {
        if status == 404 && type.isEmpty { return [] }
        return JSON.obj(["error": .string(message), "error_type": .string(type)]).bytes
    }
}
