internal import CH2O

/// 64-bit xxHash (XXH3) of a byte range, seeded.
///
/// Stable across processes and machines for the same bytes and seed, so it may key caches
/// that outlive one request (prefix blocks, affinity keys).
/// - Parameters:
///   - bytes: the bytes to hash; may be empty.
///   - seed: the seed; chaining blocks passes the previous block's hash here.
public func xxh64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
    ch2o_xxh64(bytes.baseAddress, bytes.count, seed)
}

/// 64-bit xxHash (XXH3) of a contiguous byte collection, seeded.
public func xxh64(_ bytes: some Sequence<UInt8>, seed: UInt64 = 0) -> UInt64 {
    if let h = bytes.withContiguousStorageIfAvailable({ xxh64(UnsafeRawBufferPointer($0), seed: seed) }) {
        return h
    }
    return Array(bytes).withUnsafeBytes { xxh64($0, seed: seed) }
}

/// 64-bit xxHash (XXH3) of a string's UTF-8 bytes, seeded.
public func xxh64(_ string: String, seed: UInt64 = 0) -> UInt64 {
    var s = string
    return s.withUTF8 { xxh64(UnsafeRawBufferPointer($0), seed: seed) }
}
