/// The FUSE target's input: server options, then FUSE requests as a guest
/// would put them in a chain's readable buffers.
///
///     u8   flags: bit 0 no synthesized INIT first (the input's own INIT,
///          or none), bit 1 read-only server, bit 2 writeback, bit 3 xattr
///          off, bit 4 no file handles (name-based inodes), bit 5
///          security labels (--security-label: FUSE_SECURITY_CTX offered
///          and asked for in the synthesized INIT, so creates carry the
///          extension)
///     then requests: u16 length, u8 fix-ups (bit 0: set fuse_in_header.len
///          to the length), the request bytes
public struct FUSEFuzzCase {
    public var skipInit = false, readOnly = false, writeback = false, noXattr = false, noFileHandles = false
    public var securityLabel = false
    public var requests: [(fixLength: Bool, bytes: [UInt8])] = []

    public static let maxRequest = 1 << 16

    public init() {}

    public init(_ input: inout FuzzInput) {
        let flags = input.u8()
        skipInit = flags & 1 != 0
        readOnly = flags & 2 != 0
        writeback = flags & 4 != 0
        noXattr = flags & 8 != 0
        noFileHandles = flags & 16 != 0
        securityLabel = flags & 32 != 0
        while !input.isAtEnd {
            let length = Int(input.u16())
            let fix = input.u8() & 1 != 0
            requests.append((fix, input.take(length)))
        }
    }

    public var encoded: [UInt8] {
        var w = FuzzInputWriter()
        w.u8((skipInit ? 1 : 0) | (readOnly ? 2 : 0) | (writeback ? 4 : 0) | (noXattr ? 8 : 0) | (noFileHandles ? 16 : 0) | (securityLabel ? 32 : 0))
        for r in requests {
            w.u16(UInt16(min(r.bytes.count, Int(UInt16.max))))
            w.u8(r.fixLength ? 1 : 0)
            w.append(Array(r.bytes.prefix(Int(UInt16.max))))
        }
        return w.bytes
    }
}

/// Builds FUSE requests (fuse_in_header + op struct, little-endian) for
/// seeds and the synthesized INIT.
public struct FUSERequestBuilder {
    public var unique: UInt64 = 1
    public var uid: UInt32 = 0, gid: UInt32 = 0
    public init() {}

    public mutating func request(_ opcode: UInt32, node: UInt64, _ body: [UInt8]) -> [UInt8] {
        unique += 1
        var w = FuzzInputWriter()
        w.u32(UInt32(40 + body.count))
        w.u32(opcode)
        w.u64(unique)
        w.u64(node)
        w.u32(uid)
        w.u32(gid)
        w.u32(4242)
        w.u16(0)
        w.u16(0)
        w.append(body)
        return w.bytes
    }

    public static func name(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    public static func fields(_ values: [(bits: Int, value: UInt64)]) -> [UInt8] {
        var w = FuzzInputWriter()
        for (bits, v) in values {
            switch bits {
            case 16: w.u16(UInt16(truncatingIfNeeded: v))
            case 32: w.u32(UInt32(truncatingIfNeeded: v))
            default: w.u64(v)
            }
        }
        return w.bytes
    }

    /// INIT, protocol 7.38, every flag offered (as Linux 6.x asks);
    /// `flags2` the high half (bit 0: FUSE_SECURITY_CTX).
    public mutating func initRequest(flags2: UInt32 = 0) -> [UInt8] {
        request(26, node: 0, Self.fields([(32, 7), (32, 38), (32, 128 * 1024), (32, 0xffff_ffff), (32, UInt64(flags2))])
                + [UInt8](repeating: 0, count: 44))
    }
}
