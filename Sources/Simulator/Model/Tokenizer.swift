import Foundation

/// The simulator's deterministic tokenizer (docs/wire/simulator.md §6.1).
///
/// UTF-8 text is split greedily into chunks of whole Unicode scalars of at most 4 bytes; each chunk is
/// one token whose id is FNV-1a-32(chunk) mod 151936. ASCII gives ≈4 characters per token, CJK one.
public enum Tokenizer {
    public static let vocabularySize: UInt32 = 151_936

    /// Token ids of `text`.
    public static func encode(_ text: String) -> [UInt32] {
        var ids: [UInt32] = []
        ids.reserveCapacity(text.utf8.count / 4 + 1)
        var chunk: [UInt8] = []
        chunk.reserveCapacity(4)
        for scalar in text.unicodeScalars {
            let n = UTF8.width(scalar)
            if chunk.count + n > 4, !chunk.isEmpty {
                ids.append(id(of: chunk))
                chunk.removeAll(keepingCapacity: true)
            }
            UTF8.encode(scalar) { chunk.append($0) }
        }
        if !chunk.isEmpty { ids.append(id(of: chunk)) }
        return ids
    }

    /// Number of tokens of `text`.
    public static func count(_ text: String) -> Int { encode(text).count }

    static func id(of chunk: [UInt8]) -> UInt32 { fnv1a32(chunk) % vocabularySize }

    /// The chat template: each message as `<|role|>\n` + content + `\n`, then `<|assistant|>\n`.
    public static func chatPrompt(_ messages: [(role: String, content: String)]) -> String {
        var s = ""
        for m in messages { s += "<|\(m.role)|>\n" + m.content + "\n" }
        return s + "<|assistant|>\n"
    }
}

/// FNV-1a, 32 bits.
@inlinable
public func fnv1a32<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
    var h: UInt32 = 0x811C_9DC5
    for b in bytes { h = (h ^ UInt32(b)) &* 0x0100_0193 }
    return h
}

/// FNV-1a, 64 bits.
@inlinable
public func fnv1a64<S: Sequence>(_ bytes: S, seed: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 where S.Element == UInt8 {
    var h = seed
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    return h
}

/// Deterministic output text: token `i` of a request is a word from a 256-word list chosen by the
/// request's seed (docs/wire/simulator.md §6.1). The same seed always yields the same tokens, so P and D agree.
public struct OutputGenerator: Sendable, Equatable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Seed derived from the prompt tokens, used when the request gives none.
    public static func seed(forPrompt tokens: [UInt32]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for t in tokens {
            withUnsafeBytes(of: t.littleEndian) { for b in $0 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 } }
        }
        return h
    }

    /// Text of token `index` (0-based): the word, with a leading space after the first token.
    public func text(at index: Int) -> String {
        let w = OutputGenerator.words[Int(SplitMix64.mix(seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15) & 0xFF)]
        return index == 0 ? w : " " + w
    }

    /// Id of token `index`.
    public func id(at index: Int) -> UInt32 { fnv1a32(Array(text(at: index).utf8)) % Tokenizer.vocabularySize }

    static let words: [String] = [
        "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
        "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
        "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so",
        "no", "she", "other", "its", "may", "these", "what", "them", "than", "some", "him", "time", "into", "only", "do", "could",
        "new", "about", "two", "then", "first", "also", "after", "any", "like", "our", "over", "such", "people", "my", "most", "made",
        "out", "up", "many", "me", "must", "years", "between", "very", "through", "before", "where", "should", "work", "used", "way", "well",
        "because", "each", "just", "those", "even", "how", "state", "under", "life", "same", "both", "system", "world", "three", "while", "during",
        "much", "own", "here", "might", "take", "high", "good", "still", "see", "part", "however", "use", "long", "water", "number", "since",
        "government", "found", "being", "day", "great", "without", "small", "point", "case", "man", "place", "against", "know", "public", "give", "general",
        "last", "group", "form", "set", "end", "large", "school", "power", "change", "order", "within", "around", "next", "four", "level", "every",
        "model", "token", "cache", "block", "batch", "queue", "node", "graph", "signal", "value", "field", "light", "river", "stone", "cloud", "paper",
        "music", "garden", "engine", "window", "bridge", "market", "forest", "ocean", "letter", "circle", "summer", "winter", "silver", "copper", "marble", "thread",
        "anchor", "harbor", "meadow", "canyon", "desert", "island", "valley", "planet", "rocket", "spark", "vector", "matrix", "kernel", "tensor", "socket", "packet",
        "lemon", "olive", "cedar", "maple", "tiger", "eagle", "whale", "otter", "falcon", "badger", "heron", "lynx", "panda", "koala", "bison", "camel",
        "quiet", "rapid", "gentle", "bright", "narrow", "steady", "hollow", "golden", "frozen", "silent", "hidden", "simple", "honest", "clever", "humble", "brave",
        "build", "carry", "drive", "float", "gather", "listen", "measure", "notice", "open", "praise", "reach", "share", "train", "wander", "yield", "zoom",
    ]
}

/// SplitMix64: a small seeded generator, used for jitter and EOS draws.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    /// Standard normal (Box–Muller).
    public mutating func gaussian() -> Double {
        let u1 = max(unit(), 1e-300), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}
