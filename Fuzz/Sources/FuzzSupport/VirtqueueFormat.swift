import VfsvmMemory
import VfsvmVirtio

/// The virtqueue target's input: a queue as a transport would program it,
/// and guest memory contents as (offset, bytes) chunks, in two batches: the
/// device drains the ring after each (the second batch is the driver
/// publishing more while the device runs).
///
///     u8   flags: bit 0 packed, 1 EVENT_IDX, 2 INDIRECT_DESC,
///          bits 3-4 memory layout (`GuestRAM.layouts`), bit 5 split: take
///          the used index from the ring (vhost-user restart)
///     u16  queue size                 (maximum 256)
///     u32  descriptor table, driver area, device area (guest addresses)
///     u16  avail state, used state    (vhost-user base encoding)
///     u8   chunks in the first batch
///     then chunks: u16 RAM offset, u8 length, bytes
public struct VirtqueueFuzzCase {
    public var packed = false, eventIndex = false, indirect = false, adoptUsedIndex = false
    public var layout: UInt8 = 0
    public var size: UInt16 = 0
    public var descriptorTable: UInt32 = 0, driverArea: UInt32 = 0, deviceArea: UInt32 = 0
    public var availState: UInt16 = 0, usedState: UInt16 = 0
    public var first: [(offset: UInt16, bytes: [UInt8])] = []
    public var second: [(offset: UInt16, bytes: [UInt8])] = []

    public init() {}

    public init(_ input: inout FuzzInput) {
        let flags = input.u8()
        packed = flags & 1 != 0
        eventIndex = flags & 2 != 0
        indirect = flags & 4 != 0
        layout = (flags >> 3) & 3
        adoptUsedIndex = flags & 32 != 0
        size = input.u16()
        descriptorTable = input.u32()
        driverArea = input.u32()
        deviceArea = input.u32()
        availState = input.u16()
        usedState = input.u16()
        let firstCount = Int(input.u8())
        var chunks: [(UInt16, [UInt8])] = []
        while !input.isAtEnd {
            let offset = input.u16()
            let length = Int(input.u8())
            chunks.append((offset, input.take(length)))
        }
        first = Array(chunks.prefix(firstCount))
        second = Array(chunks.dropFirst(firstCount))
    }

    public var encoded: [UInt8] {
        var w = FuzzInputWriter()
        w.u8((packed ? 1 : 0) | (eventIndex ? 2 : 0) | (indirect ? 4 : 0) | (layout & 3) << 3 | (adoptUsedIndex ? 32 : 0))
        w.u16(size)
        w.u32(descriptorTable)
        w.u32(driverArea)
        w.u32(deviceArea)
        w.u16(availState)
        w.u16(usedState)
        w.u8(UInt8(min(first.count, 255)))
        for (offset, bytes) in first + second {
            w.u16(offset)
            w.u8(UInt8(bytes.count))
            w.append(bytes)
        }
        return w.bytes
    }

    /// Chunks covering the non-zero bytes of `memory`'s RAM (runs of at
    /// most 255 bytes), for seeds taken from a mock driver's rings.
    public static func chunks(of memory: GuestMemory) throws -> [(offset: UInt16, bytes: [UInt8])] {
        var out: [(UInt16, [UInt8])] = []
        var offset = 0
        for region in memory.regions {
            let bytes = try memory.readBytes(at: region.start, count: Int(region.size))
            var i = 0
            while i < bytes.count {
                if bytes[i] == 0 { i += 1; continue }
                var j = i
                while j < bytes.count, j - i < 255, bytes[j] != 0 || (j + 1 < bytes.count && bytes[j + 1] != 0) { j += 1 }
                out.append((UInt16(offset + i), Array(bytes[i..<j])))
                i = j
            }
            offset += bytes.count
        }
        return out
    }
}

/// 64 KiB of guest RAM in one of four layouts, made once per process and
/// cleared for each input.
public enum GuestRAM {
    public static let size = 64 << 10

    /// (start, size) of each region: one region at 0; two adjacent regions;
    /// two regions with a gap; one region at 1 MiB.
    public static let layouts: [[(UInt64, Int)]] = [
        [(0, size)],
        [(0, size / 2), (UInt64(size / 2), size / 2)],
        [(0, size / 2), (UInt64(size) * 3 / 2, size / 2)],
        [(1 << 20, size)],
    ]

    nonisolated(unsafe) private static var made: [GuestMemory?] = [nil, nil, nil, nil]

    /// The memory of `layout`, zeroed, with `chunks` written at RAM offsets
    /// (counted across regions in order; a chunk is cut at the end of RAM).
    public static func memory(layout: UInt8, chunks: [(offset: UInt16, bytes: [UInt8])]) throws -> GuestMemory {
        let index = Int(layout & 3)
        let memory: GuestMemory
        if let m = made[index] {
            memory = m
        } else {
            memory = try GuestMemory(regions: layouts[index].map { try GuestRegion.memfd(at: GuestAddress($0.0), size: $0.1) })
            made[index] = memory
        }
        for region in memory.regions { try memory.fill(0, at: region.start, count: Int(region.size)) }
        try write(chunks, into: memory)
        return memory
    }

    public static func write(_ chunks: [(offset: UInt16, bytes: [UInt8])], into memory: GuestMemory) throws {
        for (offset, bytes) in chunks {
            var ramOffset = Int(offset)
            var rest = bytes[...]
            for region in memory.regions where !rest.isEmpty {
                let size = Int(region.size)
                if ramOffset >= size { ramOffset -= size; continue }
                let n = min(rest.count, size - ramOffset)
                try memory.writeBytes(Array(rest.prefix(n)), at: region.start.unchecked(plus: UInt64(ramOffset)))
                rest = rest.dropFirst(n)
                ramOffset = 0
            }
        }
    }
}
