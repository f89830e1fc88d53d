import Foundation

public struct ConfigLoadError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Where a binary's config file is and how it is read: `--config` wins, then the environment variable, then the
/// default path. The reference's file checks apply; `MINDIE_CHECK_INPUTFILES_PERMISSION=0` switches off the
/// permission and owner checks (the reference does so only for env-given paths; we honour it everywhere).
public struct ConfigLocation: Sendable {
    public let path: String
    public let source: String

    public init(explicit: String?, environmentVariable: String, defaultPath: String, environment: [String: String]) {
        if let explicit, !explicit.isEmpty {
            path = explicit
            source = "--config"
        } else if let env = environment[environmentVariable], !env.isEmpty {
            path = env
            source = environmentVariable
        } else {
            path = defaultPath
            source = "default"
        }
    }

    /// The checked bytes of the file.
    public func read(environment: [String: String]) throws(ConfigLoadError) -> [UInt8] {
        do {
            return try FileCheck(maxMode: FileCheck.configMode, environment: environment).read(path)
        } catch {
            throw ConfigLoadError("config file (\(source)): \(error)")
        }
    }

    /// The file as a JSON object.
    public func readJSONObject(environment: [String: String]) throws(ConfigLoadError) -> [String: Any] {
        let bytes = try read(environment: environment)
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw ConfigLoadError("config file \(path): not a JSON object")
        }
        return obj
    }
}
