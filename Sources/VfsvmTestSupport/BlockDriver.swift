import VfsvmMemory
import VfsvmVirtio

/// virtio-blk request types (virtio 1.2, 5.2.6), as a driver writes them.
public enum BlockRequestType: UInt32, Sendable {
    case read = 0  // VIRTIO_BLK_T_IN
    case write = 1  // VIRTIO_BLK_T_OUT
    case flush = 4
    case getID = 8
    case discard = 11
    case writeZeroes = 13
}

/// A virtio-blk request as the driver reads it back: the data the device
/// wrote (IN, GET_ID) and the status byte (the last writable byte).
public struct BlockCompletion: Hashable, Sendable {
    public var id: UInt16
    public var length: UInt32
    public var data: [UInt8]
    public var status: UInt8?

    public init(_ c: MockCompletion) {
        id = c.id
        length = c.length
        data = Array(c.reply.dropLast())
        status = c.reply.last
    }
}

extension MockDriver {
    /// `struct virtio_blk_outhdr`: le32 type, le32 ioprio, le64 sector.
    public static func blockHeader(_ type: UInt32, sector: UInt64) -> [UInt8] {
        le(UInt64(type), 4) + le(0, 4) + le(sector, 8)
    }

    /// One `struct virtio_blk_discard_write_zeroes` segment.
    public static func blockSegment(sector: UInt64, sectors: UInt32, flags: UInt32 = 0) -> [UInt8] {
        le(sector, 8) + le(UInt64(sectors), 4) + le(UInt64(flags), 4)
    }

    /// Posts a request the way Linux's virtio_blk lays it out: the header,
    /// then the data (readable `out`, or `inLength` writable bytes), then a
    /// one-byte status buffer, each its own descriptor; data buffers are
    /// 4096-byte aligned (so O_DIRECT can take them) unless `aligned` is
    /// false. Returns the chain id.
    @discardableResult
    public func postBlock(_ type: UInt32, sector: UInt64 = 0, out: [UInt8] = [], inLength: Int = 0,
                          aligned: Bool = true, indirect: Bool = false, publish: Bool = true) throws(MockDriverError) -> UInt16 {
        let header = Self.blockHeader(type, sector: sector)
        var segments: [MockSegment] = []
        do {
            let h = try allocate(header.count)
            try memory.writeBytes(header, at: h)
            segments.append(MockSegment(address: h, length: UInt32(header.count), writable: false))
            if !out.isEmpty {
                let a = try allocate(out.count + (aligned ? 0 : 1), alignment: 4096)
                let at = aligned ? a : a.unchecked(plus: 1)
                try memory.writeBytes(out, at: at)
                segments.append(MockSegment(address: at, length: UInt32(out.count), writable: false))
            }
            if inLength > 0 {
                let a = try allocate(inLength + (aligned ? 0 : 1), alignment: 4096)
                let at = aligned ? a : a.unchecked(plus: 1)
                try memory.fill(0xEE, at: at, count: inLength)
                segments.append(MockSegment(address: at, length: UInt32(inLength), writable: true))
            }
            let s = try allocate(1)
            try memory.fill(0xEE, at: s, count: 1)
            segments.append(MockSegment(address: s, length: 1, writable: true))
        } catch {
            throw MockDriverError(error)
        }
        return try addChain(segments, indirect: indirect, publish: publish)
    }

    private static func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
