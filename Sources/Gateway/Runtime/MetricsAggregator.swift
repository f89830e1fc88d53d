import Dispatch
import Foundation
import MSCore
import Synchronization

/// Prometheus text of every instance, aggregated as the reference does (docs/wire/coordinator.md §7): counters, gauges and histogram
/// lines summed by sample; cache usage averaged weighted by total blocks; the prefix hit rate from its counters;
/// `request_*_total` from the Coordinator's own counts. DECISIONS 15: an instance that does not answer is left
/// out (its `up` gauge is 0), the rest is still served.
public enum PrometheusAggregation {
    struct Family {
        var name: String
        var help: String?
        var type: String?
        var samples: [(key: String, value: Double)] = []
    }

    /// The family a sample name belongs to (histogram/summary suffixes stripped).
    static func familyName(_ sample: Substring) -> Substring {
        for suffix in ["_bucket", "_sum", "_count"] where sample.hasSuffix(suffix) {
            return sample.dropLast(suffix.count)
        }
        return sample
    }

    static func parse(_ text: String) -> [Family] {
        var families: [Family] = []
        var index: [String: Int] = [:]
        func family(_ name: String) -> Int {
            if let i = index[name] { return i }
            families.append(Family(name: name))
            index[name] = families.count - 1
            return families.count - 1
        }
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ", maxSplits: 1)
                guard let name = parts.first else { continue }
                let f = family(String(name))
                if line.hasPrefix("# HELP ") { families[f].help = parts.count > 1 ? String(parts[1]) : "" } else { families[f].type = parts.count > 1 ? String(parts[1]) : "untyped" }
                continue
            }
            if line.hasPrefix("#") { continue }
            // name{labels} value [timestamp]
            guard let split = line.lastIndex(of: "}") ?? line.firstIndex(of: " ") else { continue }
            let keyEnd = line[split] == "}" ? line.index(after: split) : split
            let key = String(line[..<keyEnd])
            let rest = line[keyEnd...].split(separator: " ")
            guard let v = rest.first, let value = Double(v == "Nan" ? "nan" : String(v)) else { continue }
            let nameEnd = key.firstIndex(of: "{") ?? key.endIndex
            let fam = String(familyName(key[..<nameEnd]))
            let f = family(index[fam] != nil ? fam : String(key[..<nameEnd]))
            families[f].samples.append((key, value))
        }
        return families
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "Nan" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(format: "%.16g", v)
    }

    /// Whether a family's values describe one process rather than count work: gauges (or untyped samples) that are
    /// timestamps (`process_start_time_seconds`, prometheus_client's `*_created`, `*_timestamp[_seconds]`) or info
    /// values (`*_info`, always 1). Summing them across instances means nothing (two engines' start times added read
    /// as a date in 2083), so they are kept per instance.
    static func isPerInstance(name: String, type: String?) -> Bool {
        guard type == nil || type == "gauge" || type == "untyped" else { return false }
        return ["_created", "_timestamp", "_timestamp_seconds", "_time_seconds", "_info"].contains { name.hasSuffix($0) }
    }

    /// `key` (`name` or `name{labels}`) with an `instance` label first; nil when it already has one.
    static func labelled(_ key: String, instance: String) -> String? {
        let label = "instance=" + "\"" + instance + "\""
        guard let brace = key.firstIndex(of: "{") else { return key + "{" + label + "}" }
        let labels = key[key.index(after: brace)...]
        if labels.hasPrefix("instance=") || labels.contains(",instance=") { return nil }
        return String(key[...brace]) + label + (labels.hasPrefix("}") ? "" : ",") + labels
    }

    /// Aggregates the instances' texts. `weights` are the instances' total blocks (for cache usage).
    /// - Parameter instances: the instances' ids, in the order of `texts`, for the `instance` label of per-instance
    ///   families (``isPerInstance(name:type:)``); positions when absent.
    public static func aggregate(_ texts: [(text: String, totalBlocks: Int, isPrefill: Bool)], instances: [String] = [],
                                 overrides: [String: Double]) -> String {
        let parsed = texts.map { (parse($0.text), Double($0.totalBlocks), $0.isPrefill) }
        guard let first = parsed.first else { return "" }
        var order: [String] = []
        var merged: [String: Family] = [:]
        var sums: [String: [String: Double]] = [:]
        var sampleOrder: [String: [String]] = [:]
        var weighted: [String: (num: Double, den: Double)] = [:]
        for (n, (families, weight, _)) in parsed.enumerated() {
            let instance = n < instances.count ? instances[n] : String(n)
            for f in families {
                if merged[f.name] == nil {
                    order.append(f.name)
                    merged[f.name] = Family(name: f.name, help: f.help, type: f.type)
                }
                if isPerInstance(name: f.name, type: merged[f.name]?.type) {
                    for s in f.samples {
                        // already labelled by instance: the latest of them (max) rather than a sum
                        let key = labelled(s.key, instance: instance) ?? s.key
                        if let old = sums[f.name]?[key] {
                            sums[f.name]![key] = max(old, s.value)
                        } else {
                            sampleOrder[f.name, default: []].append(key)
                            sums[f.name, default: [:]][key] = s.value
                        }
                    }
                    continue
                }
                for s in f.samples {
                    if sums[f.name]?[s.key] == nil { sampleOrder[f.name, default: []].append(s.key) }
                    if f.name.hasSuffix("_cache_usage_perc") {
                        let w = weighted[s.key] ?? (0, 0)
                        weighted[s.key] = (w.num + s.value * weight, w.den + weight)
                    }
                    sums[f.name, default: [:]][s.key, default: 0] += s.value
                }
            }
        }
        _ = first
        // prefix hit rate: Σ hits / Σ all over P instances (all when there is no P)
        let usePrefill = parsed.contains { $0.2 }
        var hits = 0.0, all = 0.0, rates: [Double] = []
        for (families, _, isP) in parsed where !usePrefill || isP {
            for f in families {
                if f.name == "npu_radix_match_hit_num" { hits += f.samples.reduce(0) { $0 + $1.value } }
                if f.name == "all_radix_match_num" { all += f.samples.reduce(0) { $0 + $1.value } }
                if f.name == "npu_prefix_cache_hit_rate" { rates += f.samples.map(\.value) }
            }
        }
        var out = ""
        for name in order {
            guard let f = merged[name] else { continue }
            if let help = f.help { out += "# HELP \(name) \(help)\n" }
            if let type = f.type { out += "# TYPE \(name) \(type)\n" }
            for key in sampleOrder[name] ?? [] {
                var v = sums[name]?[key] ?? 0
                if name.hasSuffix("_cache_usage_perc"), let w = weighted[key] { v = w.den > 0 ? w.num / w.den : 0 }
                if name == "npu_prefix_cache_hit_rate" {
                    v = all > 0 ? hits / all : (hits > 0 ? 1.0 : (rates.isEmpty ? 0 : rates.reduce(0, +) / Double(rates.count)))
                }
                if let o = overrides[name] { v = o }
                out += "\(key) \(format(v))\n"
            }
        }
        return out
    }
}

/// Scrapes the instances for `/metrics`, with the reference's reuse window.
final class MetricsAggregator: Sendable {
    private struct Cached {
        var at: UInt64
        var body: [UInt8]
        var up: [InstanceID: Bool]
    }
    private let reuseNanos: UInt64
    private let cache = Mutex<Cached?>(nil)

    init(reuseSeconds: Int) {
        reuseNanos = UInt64(max(reuseSeconds, 0)) * 1_000_000_000
    }

    /// Loop thread: scrapes every instance on `loop`, then calls `done` there.
    func render(view: ClusterView, client: HTTPClient, loop: EventLoop, timeoutMilliseconds: UInt64, overrides: [String: Double],
                done: @escaping ([UInt8], [InstanceID: Bool]) -> Void) {
        let now = DispatchTime.now().uptimeNanoseconds
        if let c = cache.withLock({ $0 }), now - c.at < reuseNanos {
            done(c.body, c.up)
            return
        }
        let instances = view.snapshot.instances.compactMap { view.entries[$0.id] }
        guard !instances.isEmpty else {
            done([], [:])
            return
        }
        var texts: [InstanceID: String] = [:]
        var up: [InstanceID: Bool] = [:]
        var pending = instances.count
        for e in instances {
            var body: [UInt8] = []
            var status = 0
            client.stream(HTTPClientRequest(host: e.ip, port: e.metricPort, path: "/metrics", timeoutMilliseconds: timeoutMilliseconds),
                          on: loop, onHead: { s, _ in status = s }, onBody: { body += $0 }, onEnd: { [self] err in
                              let ok = err == nil && status == 200
                              up[e.info.id] = ok
                              if ok { texts[e.info.id] = String(decoding: body, as: UTF8.self) }
                              pending -= 1
                              guard pending == 0 else { return }
                              let answered = instances.filter { texts[$0.info.id] != nil }
                              let inputs = answered.map { i in (texts[i.info.id]!, i.info.totalBlocks, i.info.role == .prefill) }
                              let text = Array(PrometheusAggregation.aggregate(inputs, instances: answered.map { String($0.info.id) },
                                                                               overrides: overrides).utf8)
                              self.cache.withLock { $0 = Cached(at: DispatchTime.now().uptimeNanoseconds, body: text, up: up) }
                              done(text, up)
                          })
        }
    }
}
