public import MSCore

/// Renders JSON trees as YAML for `kubectl apply -f -` (block style, keys sorted, strings quoted when needed).
public enum YAML {
    /// A multi-document stream, one document per object.
    public static func render(_ objects: [KubeObject]) -> String {
        objects.map { "---\n" + render($0.body) }.joined()
    }

    public static func render(_ value: JSON) -> String {
        var out = ""
        write(value, indent: 0, into: &out)
        return out
    }

    static func write(_ v: JSON, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        switch v {
        case .object(let o):
            if o.isEmpty { out += pad + "{}\n"; return }
            for k in o.keys.sorted() {
                let child = o[k]!
                out += pad + key(k) + ":"
                writeChild(child, indent: indent, into: &out)
            }
        case .array(let a):
            if a.isEmpty { out += pad + "[]\n"; return }
            for item in a {
                if case .object(let o) = item, !o.isEmpty {
                    // "- " then the first key inline, the others aligned under it.
                    var inner = ""
                    write(item, indent: indent + 2, into: &inner)
                    out += pad + "- " + inner.dropFirst(indent + 2)
                } else if case .array(let inner) = item, !inner.isEmpty {
                    out += pad + "-\n"
                    write(item, indent: indent + 2, into: &out)
                } else {
                    out += pad + "- " + scalar(item) + "\n"
                }
            }
        default:
            out += pad + scalar(v) + "\n"
        }
    }

    static func writeChild(_ child: JSON, indent: Int, into out: inout String) {
        switch child {
        case .object(let o) where !o.isEmpty:
            out += "\n"
            write(child, indent: indent + 2, into: &out)
        case .array(let a) where !a.isEmpty:
            out += "\n"
            write(child, indent: indent, into: &out)
        case .string(let s) where s.contains("\n") && !s.hasPrefix(" ") && !s.hasPrefix("\n") && !s.hasSuffix("\n\n") && !s.contains("\r"):
            out += " |" + (s.hasSuffix("\n") ? "" : "-") + "\n"
            let pad = String(repeating: " ", count: indent + 2)
            for line in s.split(separator: "\n", omittingEmptySubsequences: false).dropLast(s.hasSuffix("\n") ? 1 : 0) {
                out += (line.isEmpty ? "" : pad + line) + "\n"
            }
        default:
            out += " " + scalar(child) + "\n"
        }
    }

    static func key(_ k: String) -> String { isPlain(k) ? k : JSON.quoted(k) }

    static func scalar(_ v: JSON) -> String {
        switch v {
        case .string(let s): return isPlain(s) ? s : JSON.quoted(s)
        case .object: return "{}"
        case .array: return "[]"
        default: return v.serialized()
        }
    }

    /// Whether a string can be written unquoted without changing its type or meaning.
    static func isPlain(_ s: String) -> Bool {
        guard !s.isEmpty else { return false }
        let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"]
        if reserved.contains(s.lowercased()) { return false }
        if Double(s) != nil || Int(s) != nil { return false }
        if s.first!.isNumber || s.hasPrefix("0x") || s.hasPrefix(".") { return false }
        return s.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || "-_./".unicodeScalars.contains(c)
        } && !s.hasPrefix("-")
    }
}
