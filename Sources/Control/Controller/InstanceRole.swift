/// The P/D role of an instance, with the reference's ASCII codes (85 U, 80 P, 68 D, 70 F).
public enum InstanceRole: String, Sendable, Codable, CaseIterable, Hashable {
    case prefill
    case decode
    case flex
    /// Not yet decided ("U"); also the role of every instance in single_node mode.
    case undefined

    /// The ASCII code used on the wire (`static_info.role`, `current_role`).
    public var asciiCode: Int {
        switch self {
        case .prefill: return 80
        case .decode: return 68
        case .flex: return 70
        case .undefined: return 85
        }
    }

    public init?(asciiCode: Int) {
        switch asciiCode {
        case 80: self = .prefill
        case 68: self = .decode
        case 70: self = .flex
        case 85: self = .undefined
        default: return nil
        }
    }

    /// The path component of `POST /v1/role/{prefill|decode|flex}`; nil for `.undefined`.
    public var postPathComponent: String? {
        switch self {
        case .prefill: return "prefill"
        case .decode: return "decode"
        case .flex: return "flex"
        case .undefined: return nil
        }
    }

    /// The opposite role (prefill ↔ decode); flex and undefined have none.
    public var opposite: InstanceRole? {
        switch self {
        case .prefill: return .decode
        case .decode: return .prefill
        case .flex, .undefined: return nil
        }
    }
}
