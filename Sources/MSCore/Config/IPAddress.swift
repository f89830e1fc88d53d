#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Textual IP address checks: the one validator of every binary's config, rank-table and API input.
public enum IPAddress {
    /// Whether `text` is a dotted-quad IPv4 address or an IPv6 address (no zone, no brackets).
    public static func isValid(_ text: String) -> Bool {
        isIPv4(text) || isIPv6(text)
    }

    /// Strict dotted quad: four decimal fields 0...255, no empty field, no sign, at most 3 digits each, no
    /// leading zero (`010` reads as octal to some parsers and as decimal to others, and `inet_pton` refuses it).
    public static func isIPv4(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for p in parts {
            guard (1...3).contains(p.count), p.allSatisfy({ $0.isASCII && $0.isNumber }), let v = Int(p),
                v <= 255, p.count == 1 || p.first != "0"
            else { return false }
        }
        return true
    }

    /// IPv6 as `inet_pton(AF_INET6)` accepts it.
    public static func isIPv6(_ text: String) -> Bool {
        guard text.contains(":"), text.count <= 45 else { return false }
        var buf = in6_addr()
        return text.withCString { inet_pton(AF_INET6, $0, &buf) } == 1
    }

    /// Whether the address is the all-zero "any" address (`0.0.0.0` or `::`).
    public static func isAllZero(_ text: String) -> Bool {
        if isIPv4(text) { return text.split(separator: ".").allSatisfy { Int($0) == 0 } }
        guard isIPv6(text) else { return false }
        var buf = in6_addr()
        _ = text.withCString { inet_pton(AF_INET6, $0, &buf) }
        return withUnsafeBytes(of: &buf) { $0.allSatisfy { $0 == 0 } }
    }
}
