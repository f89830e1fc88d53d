public import MSCore

/// The P/D role of an instance, with the reference's ASCII codes (85 U, 80 P, 68 D, 70 F).
public enum InstanceRole: String, Sendable, Codable, CaseIterable, Hashable {
    case prefill
    case decode
    case flex
    /// Not yet decided ("U"); also the role of every instance in single_node mode.
    case undefined

    /// The ASCII code used on the wire (`static_info.role`, `current_role`).
    public var asciiCode: Int { roleCode.rawValue }

    public init?(asciiCode: Int) {
        switch RoleCode(rawValue: asciiCode) {
        case .prefill: self = .prefill
        case .decode: self = .decode
        case .flex: self = .flex
        case .undefined: self = .undefined
        case nil: return nil
        }
    }

    /// The contract's code for this role.
    public var roleCode: RoleCode {
        switch self {
        case .prefill: .prefill
        case .decode: .decode
        case .flex: .flex
        case .undefined: .undefined
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
