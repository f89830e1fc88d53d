import Foundation
import MSCore

/// Reads a kubeconfig (YAML block style as kubectl writes it, or JSON) into a `KubeEndpoint` for its current
/// context: server URL, cluster CA, client certificate and key (files or inline `-data`), or a bearer token.
public enum Kubeconfig {
    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// - Parameters:
    ///   - text: the file's contents.
    ///   - directory: where relative paths in the file are resolved, and where inline `-data` are written (0600).
    public static func endpoint(text: String, directory: String, context: String? = nil) throws(Kubeconfig.Error) -> KubeEndpoint {
        let doc: JSON
        if let j = try? JSON.parse(Data(text.utf8)), case .object = j { doc = j } else { doc = try MiniYAML.parse(text) }
        guard let ctxName = context ?? doc["current-context"]?.stringValue else { throw Error("kubeconfig has no current-context") }
        func named(_ list: String, _ name: String) -> JSON? {
            doc[list]?.arrayValue?.first { $0["name"]?.stringValue == name }
        }
        guard let ctx = named("contexts", ctxName)?["context"] else { throw Error("kubeconfig has no context \(ctxName)") }
        guard let clusterName = ctx["cluster"]?.stringValue, let cluster = named("clusters", clusterName)?["cluster"] else {
            throw Error("kubeconfig context \(ctxName) names no known cluster")
        }
        let user = ctx["user"]?.stringValue.flatMap { named("users", $0)?["user"] } ?? .object([:])
        guard let server = cluster["server"]?.stringValue, let url = URLComponents(string: server), let host = url.host,
              url.scheme == "https" || url.scheme == "http" else {
            throw Error("kubeconfig cluster \(clusterName) has no valid server URL")
        }
        let https = url.scheme == "https"
        let port = url.port ?? (https ? 443 : 80)
        var files: [String: String] = [:]
        func file(_ obj: JSON, _ key: String) throws(Kubeconfig.Error) -> String? {
            if let p = obj[key]?.stringValue { return p.hasPrefix("/") ? p : "\(directory)/\(p)" }
            guard let b64 = obj["\(key)-data"]?.stringValue else { return nil }
            guard let data = Data(base64Encoded: b64, options: .ignoreUnknownCharacters) else { throw Error("kubeconfig \(key)-data is not base64") }
            let path = "\(directory)/.kube-\(key)-\(getpid())-\(files.count).pem"
            guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
                throw Error("cannot write \(path) for kubeconfig \(key)-data")
            }
            files[key] = path
            return path
        }
        var tls: TLSConfiguration?
        if https {
            let insecure = cluster["insecure-skip-tls-verify"]?.boolValue == true
            tls = TLSConfiguration(certificatePath: try file(user, "client-certificate") ?? "", privateKeyPath: try file(user, "client-key") ?? "",
                                   caPath: try file(cluster, "certificate-authority"), verifyPeer: !insecure, minimumVersion: 12)
        }
        var token = user["token"]?.stringValue
        if token == nil, let tf = user["tokenFile"]?.stringValue,
           let t = try? String(contentsOfFile: tf.hasPrefix("/") ? tf : "\(directory)/\(tf)", encoding: .utf8) {
            token = t.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return KubeEndpoint(host: host, port: port, tls: tls, bearerToken: token)
    }
}

/// The YAML subset kubeconfigs use: block maps and lists, plain/quoted scalars, comments.
enum MiniYAML {
    struct Line { let indent: Int; let text: String }

    static func parse(_ text: String) throws(Kubeconfig.Error) -> JSON {
        var lines: [Line] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let s = String(raw).replacingOccurrences(of: "\t", with: "  ")
            let trimmed = s.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed == "---" { continue }
            lines.append(Line(indent: s.prefix { $0 == " " }.count, text: trimmed))
        }
        var i = 0
        let v = try block(lines, &i, indent: lines.first?.indent ?? 0)
        return v
    }

    static func block(_ lines: [Line], _ i: inout Int, indent: Int) throws(Kubeconfig.Error) -> JSON {
        guard i < lines.count else { return .null }
        if lines[i].text.hasPrefix("- ") || lines[i].text == "-" {
            var items: [JSON] = []
            while i < lines.count, lines[i].indent == indent, lines[i].text.hasPrefix("-") {
                let rest = String(lines[i].text.dropFirst(1)).trimmingCharacters(in: .whitespaces)
                if rest.isEmpty {
                    i += 1
                    items.append(i < lines.count && lines[i].indent > indent ? try block(lines, &i, indent: lines[i].indent) : .null)
                } else if keyValue(rest) != nil {
                    // A map starting on the dash line: re-read it as a line indented past the dash.
                    var sub = lines
                    sub[i] = Line(indent: indent + 2, text: rest)
                    var j = i
                    let m = try block(sub, &j, indent: indent + 2)
                    i = j
                    items.append(m)
                } else {
                    items.append(scalar(rest))
                    i += 1
                }
            }
            return .array(items)
        }
        var map: JSON.Object = [:]
        while i < lines.count, lines[i].indent == indent, !lines[i].text.hasPrefix("- ") {
            guard let (k, v) = keyValue(lines[i].text) else { throw Kubeconfig.Error("kubeconfig: cannot read line \"\(lines[i].text)\"") }
            i += 1
            if v.isEmpty {
                if i < lines.count, lines[i].indent > indent || (lines[i].indent == indent && lines[i].text.hasPrefix("-")) {
                    map[k] = try block(lines, &i, indent: lines[i].indent)
                } else {
                    map[k] = .null
                }
            } else {
                map[k] = scalar(v)
            }
        }
        return .object(map)
    }

    static func keyValue(_ s: String) -> (String, String)? {
        var inQuote: Character?
        for (n, c) in s.enumerated() {
            if let q = inQuote { if c == q { inQuote = nil }; continue }
            if c == "\"" || c == "'" { inQuote = c; continue }
            if c == ":" {
                let after = s.index(s.startIndex, offsetBy: n + 1)
                if after == s.endIndex || s[after] == " " {
                    let k = String(s[..<s.index(s.startIndex, offsetBy: n)])
                    return (unquote(k), String(s[after...]).trimmingCharacters(in: .whitespaces))
                }
            }
        }
        return nil
    }

    static func unquote(_ s: String) -> String {
        if s.count >= 2, (s.hasPrefix("\"") && s.hasSuffix("\"")) || (s.hasPrefix("'") && s.hasSuffix("'")) {
            return String(s.dropFirst().dropLast())
        }
        return s
    }

    static func scalar(_ s: String) -> JSON {
        if s.hasPrefix("\"") || s.hasPrefix("'") { return .string(unquote(s)) }
        let v = s.split(separator: " #", maxSplits: 1).first.map(String.init) ?? s
        switch v {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null", "~": return .null
        case "{}": return .object([:])
        case "[]": return .array([])
        default: return Int64(v).map { .int($0) } ?? .string(v)
        }
    }
}
