extension CoordinatorConfig {
    /// Why `ms_coordinator` would refuse to start with these config bytes (nil when it would start): the one parser
    /// `ms_coordinator` runs, offered to the Deployer, which renders Coordinator configs but cannot import Gateway.
    @Sendable
    public static func startRefusal(_ bytes: [UInt8]) -> String? {
        do {
            _ = try parse(bytes, environment: [:], file: "ms_coordinator.json")
            return nil
        } catch {
            return "\(error)"
        }
    }
}
