/// Little-endian byte building for the structures and tables the loader
/// writes into guest memory.
struct ByteWriter {
    private(set) var bytes: [UInt8]

    init() { bytes = [] }
    /// `count` zero bytes, to be filled with `put(_:at:)`.
    init(zeros count: Int) { bytes = [UInt8](repeating: 0, count: count) }

    var count: Int { bytes.count }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ more: [UInt8]) { bytes.append(contentsOf: more) }

    /// `text` as ASCII, cut or padded with `pad` to exactly `length` bytes
    /// (ACPI signatures, OEM IDs, MP table strings).
    mutating func appendASCII(_ text: String, length: Int, pad: UInt8 = 0x20) {
        var field = Array(text.utf8.prefix(length))
        field += [UInt8](repeating: pad, count: length - field.count)
        bytes.append(contentsOf: field)
    }

    /// Overwrites `MemoryLayout<T>.size` bytes at `offset` (inside the buffer).
    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, b) in raw.enumerated() { bytes[offset + i] = b }
        }
    }

    mutating func put(_ more: [UInt8], at offset: Int) {
        bytes.replaceSubrange(offset..<(offset + more.count), with: more)
    }

    /// Pads with zeros to a multiple of `alignment`.
    mutating func align(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }
}

/// Bounds- and overflow-checked little-endian reads of an untrusted image:
/// nil when `[offset, offset + size)` is not inside `bytes`.
func readLE<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], at offset: UInt64) -> T? {
    let size = UInt64(MemoryLayout<T>.size)
    guard offset <= UInt64(bytes.count), size <= UInt64(bytes.count) - offset else { return nil }
    var value: T = 0
    for i in 0..<Int(size) { value |= T(bytes[Int(offset) + i]) << (8 * i) }
    return value
}

/// True when `[offset, offset + length)` lies inside a buffer of `count`
/// bytes, without overflowing.
func fits(offset: UInt64, length: UInt64, in count: Int) -> Bool {
    offset <= UInt64(count) && length <= UInt64(count) - offset
}

/// The byte that makes `bytes` sum to zero modulo 256 (the ACPI and MP
/// table checksum rule: ACPI 6.4, 5.2.6; MP spec 1.4, 4.1 and 4.2).
func zeroSumChecksum(_ bytes: some Sequence<UInt8>) -> UInt8 {
    0 &- bytes.reduce(0, &+)
}

func hex(_ value: some BinaryInteger) -> String { "0x" + String(value, radix: 16) }

/// A size for messages: "16 MiB", "1.5 MiB", "512 KiB", "300 bytes".
func sizeText(_ bytes: UInt64) -> String {
    if bytes >= 1 << 20 {
        // Rounded to a tenth without multiplying `bytes` (which may be near 2^64).
        var whole = bytes >> 20
        var tenth = ((bytes & 0xF_FFFF) * 10 + (1 << 19)) >> 20
        if tenth == 10 { whole += 1; tenth = 0 }
        return tenth == 0 ? "\(whole) MiB" : "\(whole).\(tenth) MiB"
    }
    if bytes >= 1 << 10, bytes % 1024 == 0 { return "\(bytes >> 10) KiB" }
    return "\(bytes) bytes"
}
