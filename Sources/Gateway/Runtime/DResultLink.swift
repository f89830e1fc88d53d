import MSCore
import Synchronization

/// One message of a `/dresult` link: `reqId:<id>\0<kind>:<payload>\0` (docs/wire/coordinator.md §4.2 step 4).
enum DFrameKind: String, Sendable {
    case data
    case lastData
    case error
    case retry
}

/// Splits the endless `/dresult` body into messages and pairs them (pure; unit-tested).
///
/// Messages are NUL-terminated; the key is the text before the first `:`. A `reqId:` message names the
/// request of the next message. `ka:` (heartbeat) is ignored; `close:` asks to close the link. Empty
/// messages (vLLM frames end in NUL, so one follows each of them) and unknown keys are skipped.
struct DResultParser {
    enum Event: Equatable {
        case frame(reqId: String, kind: DFrameKind, payload: [UInt8])
        case close
    }

    private var buffer: [UInt8] = []
    private var currentReqId: String?

    mutating func feed(_ bytes: [UInt8]) -> [Event] {
        buffer += bytes
        var events: [Event] = []
        var start = 0
        while let nul = buffer[start...].firstIndex(of: 0) {
            let msg = buffer[start..<nul]
            start = nul + 1
            guard !msg.isEmpty, let colon = msg.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let key = String(decoding: msg[msg.startIndex..<colon], as: UTF8.self)
            let payload = Array(msg[(colon + 1)...])
            switch key {
            case "reqId": currentReqId = String(decoding: payload, as: UTF8.self)
            case "ka": continue
            case "close":
                currentReqId = nil
                events.append(.close)
            default:
                defer { currentReqId = nil }
                guard let id = currentReqId, let kind = DFrameKind(rawValue: key) else { continue }
                events.append(.frame(reqId: id, kind: kind, payload: payload))
            }
        }
        if start > 0 { buffer.removeFirst(start) }
        return events
    }
}

/// The long-lived `GET /dresult` link to one D (docs/wire/coordinator.md §4.2 step 4, §4.3). Lives on the link loop only.
final class DResultLink {
    let instance: InstanceID
    let ip: String
    let port: Int
    let virtualID: UInt64
    var call: ClientCall?
    var parser = DResultParser()
    /// Opened at least once and not given up.
    var open = false
    /// Closed on purpose (instance removed): no relink.
    var closed = false
    var relinkAttempts = 0
    var relinkTimer: LoopTimer?

    init(instance: InstanceID, ip: String, port: Int, virtualID: UInt64) {
        self.instance = instance
        self.ip = ip
        self.port = port
        self.virtualID = virtualID
    }

    func close() {
        closed = true
        relinkTimer?.cancel()
        relinkTimer = nil
        call?.cancel()
        call = nil
    }
}

