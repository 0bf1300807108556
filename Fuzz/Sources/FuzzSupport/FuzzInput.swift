import Glibc

/// A fuzzer's input read as a stream of little-endian fields. Past the end
/// every read gives zero, so any byte string is a valid input.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Copies libFuzzer's buffer. Safe: libFuzzer lends `size` readable
    /// bytes at `data` for the duration of the call.
    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    }

    public var isAtEnd: Bool { position >= bytes.count }
    public var remaining: Int { max(0, bytes.count - position) }

    public mutating func u8() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    public mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    public mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
    public mutating func bool() -> Bool { u8() & 1 != 0 }

    /// Up to `count` bytes (fewer at the end).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = min(max(count, 0), remaining)
        defer { position += n }
        return Array(bytes[position..<position + n])
    }

    /// Everything left.
    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Appends little-endian fields: for seed generators writing inputs in a
/// harness's format.
public struct FuzzInputWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func append(_ b: [UInt8]) { bytes += b }
}

/// An invariant the code under test broke: printed, then the process traps
/// so libFuzzer records the input as a crash.
public func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        print("fuzz invariant failed (\(file):\(line)): \(message())")
        fatalError("fuzz invariant failed: \(message())")
    }
}

/// `VFSVM_FUZZ_WRITE_SEEDS=DIR`: writes `seeds` (file name, input) into DIR
/// and exits; run from LLVMFuzzerInitialize by each target, so the seeds
/// are made by the same build that reads them (Fuzz/fuzz.sh seeds).
public func writeSeedsIfAsked(_ seeds: @autoclosure () -> [(name: String, bytes: [UInt8])]) {
    guard let dir = getenv("VFSVM_FUZZ_WRITE_SEEDS").map({ String(cString: $0) }) else { return }
    for (name, bytes) in seeds() {
        let path = dir + "/" + name
        guard let f = fopen(path, "wb") else { fatalError("cannot write \(path)") }
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }
    exit(0)
}
