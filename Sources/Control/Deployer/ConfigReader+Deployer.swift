import MSCore

/// The checks ms_deployer.json and msctl.json share, on the one reader of every binary so their errors read
/// `FILE: KEY = VALUE: allowed ALLOWED` like the other binaries' (DECISIONS 3).
extension ConfigReader {
    /// Both files name an address to listen on or connect to, for which the "any" address means nothing.
    static let specificIPAllowed = "an IPv4 or IPv6 address other than 0.0.0.0 and ::"

    /// A string holding an IPv4 or IPv6 address that is not all-zero.
    func specificIP(_ k: String) throws(ConfigError) -> String {
        let v = try required(k, Self.specificIPAllowed)
        guard case .string(let s) = v else { throw fail(k, v, Self.specificIPAllowed, .wrongType) }
        guard Self.isSpecificIP(s) else { throw fail(k, v, Self.specificIPAllowed, .invalidValue) }
        return s
    }

    static func isSpecificIP(_ s: String) -> Bool { IPAddress.isValid(s) && !IPAddress.isAllZero(s) }

    /// A string whose UTF-8 length is in `bytes`: these files have always bounded paths in bytes (the
    /// reference's limit on a path), so a path of multi-byte characters accepted before still is.
    func string(_ k: String, utf8Length bytes: ClosedRange<Int>) throws(ConfigError) -> String {
        let allowed = "a string of \(bytes.lowerBound)...\(bytes.upperBound) bytes"
        let v = try required(k, allowed)
        guard case .string(let s) = v else { throw fail(k, v, allowed, .wrongType) }
        guard bytes.contains(s.utf8.count) else { throw fail(k, v, allowed, .outOfRange) }
        return s
    }

    /// A non-empty string (a path whose length only the file system bounds).
    func nonEmptyString(_ k: String, _ allowed: String) throws(ConfigError) -> String {
        let v = try required(k, allowed)
        guard case .string(let s) = v else { throw fail(k, v, allowed, .wrongType) }
        guard !s.isEmpty else { throw fail(k, v, allowed, .outOfRange) }
        return s
    }
}
