import MSCore

/// How replies are rendered.
public enum WireMode: String, Sendable, CaseIterable {
    /// Byte-faithful to MindIE Server, quirks included.
    case mindie
    /// What strict clients accept: SSE exactly `data: <json>\n\n`, TGI tokens with an int id, `special:false`,
    /// the text and `logprob:0.0`, OpenAI usage only in a `choices:[]` chunk when asked.
    case compat
}

/// A reference quirk that `--fix <name>` turns off (spec marks these (Q)).
public enum WireFix: String, Sendable, CaseIterable {
    /// A role re-post that adds no link returns to RoleReady instead of staying RoleSwitching.
    case stickySwitching = "sticky-switching"
    /// The two `lastData:` messages at the end of a chat stream on `/dresult` become one.
    case doubleLastData = "double-lastdata"
    /// Non-stream replies keep the connection open instead of `Connection: close`.
    case connectionClose = "connection-close"
    /// `/generate` without input gets a plain message instead of JSON text in `error`.
    case generateErrorJSON = "generate-error-json"
    /// `/v1/models` is compact instead of pretty-printed.
    case modelsPretty = "models-pretty"
    /// A chat stream from D starts without its own role chunk.
    case dRoleChunk = "d-role-chunk"
    /// OpenAI streams carry `usage` only in a `choices:[]` chunk and only with `include_usage` (= `--openai-usage strict`).
    case usageAlways = "usage-always"
    /// The role-switch 422 uses `Input Validation Error` instead of the lowercase type.
    case roleErrorType = "role-error-type"
    /// `/health/timed` answers 500 after stop instead of healthy.
    case timedHealthAfterStop = "timed-health-after-stop"
    /// The P admission 503 text loses its trailing space.
    case trailingSpace = "trailing-space"
}

/// Rendering switches.
public struct WireOptions: Sendable, Equatable {
    public var mode: WireMode
    public var fixes: Set<WireFix>
    public init(mode: WireMode = .mindie, fixes: Set<WireFix> = []) { self.mode = mode; self.fixes = fixes }

    public func fixed(_ f: WireFix) -> Bool { fixes.contains(f) }
    var compat: Bool { mode == .compat }
    /// OpenAI usage in OpenAI's own form.
    var strictUsage: Bool { compat || fixed(.usageAlways) }
}
