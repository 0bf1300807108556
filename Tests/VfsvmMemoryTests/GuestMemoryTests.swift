import Testing
import Glibc
@testable import VfsvmMemory

@Suite struct GuestMemoryTests {
    /// Two adjacent regions [0, 64K) and [64K, 128K), and a third after a hole
    /// at [1M, 1M+64K).
    func layout() throws -> GuestMemory {
        try GuestMemory(regions: [
            .memfd(at: GuestAddress(0), size: 0x10000),
            .memfd(at: GuestAddress(0x10000), size: 0x10000),
            .memfd(at: GuestAddress(0x100000), size: 0x10000),
        ])
    }

    @Test func valuesRoundTripLittleEndian() throws {
        let m = try layout()
        try m.store(UInt32(0x1122_3344), at: GuestAddress(0x100))
        #expect(try m.readBytes(at: GuestAddress(0x100), count: 4) == [0x44, 0x33, 0x22, 0x11])
        #expect(try m.load(UInt32.self, at: GuestAddress(0x100)) == 0x1122_3344)
        try m.store(UInt64.max, at: GuestAddress(0x100003))  // unaligned is fine for plain values
        #expect(try m.load(UInt64.self, at: GuestAddress(0x100003)) == .max)
    }

    @Test func copiesSpanAdjacentRegions() throws {
        let m = try layout()
        let bytes = (0..<32).map { UInt8($0) }
        try m.writeBytes(bytes, at: GuestAddress(0x10000 - 16))
        #expect(try m.readBytes(at: GuestAddress(0x10000 - 16), count: 32) == bytes)
        #expect(try m.segments(at: GuestAddress(0x10000 - 16), length: 32).map(\.count) == [16, 16])
    }

    @Test func valuesMustNotSpanRegions() throws {
        let m = try layout()
        #expect(throws: GuestMemoryError.crossesRegion(address: GuestAddress(0xfffe), length: 4)) {
            _ = try m.load(UInt32.self, at: GuestAddress(0xfffe))
        }
    }

    /// The first bytes of a region that directly follows another (two
    /// adjacent vhost-user ADD_MEM_REG regions) belong to that region alone:
    /// values, ring atomics and contiguity checks there are not "crossing".
    @Test func theFirstByteOfAnAdjacentRegionIsItsOwn() throws {
        let m = try layout()
        try m.store(UInt32(0xCAFE_F00D), at: GuestAddress(0x10000))
        #expect(try m.load(UInt32.self, at: GuestAddress(0x10000)) == 0xCAFE_F00D)
        try m.storeReleaseUInt16(7, at: GuestAddress(0x10000))
        #expect(try m.loadAcquireUInt16(at: GuestAddress(0x10000)) == 7)
        try m.checkContiguous(GuestAddress(0x10000), length: 0x10000)
        // A zero-length check exactly at the end of the first region is fine too.
        try m.checkContiguous(GuestAddress(0x10000), length: 0)
        #expect(throws: GuestMemoryError.crossesRegion(address: GuestAddress(0xffff), length: 2)) {
            try m.checkContiguous(GuestAddress(0xffff), length: 2)
        }
    }

    @Test func holesAndTheEndAreRefused() throws {
        let m = try layout()
        #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0x20000), length: 1)) {
            _ = try m.readBytes(at: GuestAddress(0x20000), count: 1)
        }
        // Runs off the end of the second region into the hole.
        #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0x1fff0), length: 32)) {
            _ = try m.readBytes(at: GuestAddress(0x1fff0), count: 32)
        }
        #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0x110000), length: 2)) {
            try m.store(UInt16(1), at: GuestAddress(0x110000))
        }
    }

    @Test func overflowingRangesAreRefused() throws {
        let m = try layout()
        #expect(throws: GuestMemoryError.overflow(address: GuestAddress(.max - 1), length: 4)) {
            _ = try m.load(UInt32.self, at: GuestAddress(.max - 1))
        }
        #expect(throws: GuestMemoryError.overflow(address: GuestAddress(0x10), length: .max)) {
            try m.checkRange(GuestAddress(0x10), length: .max)
        }
    }

    @Test func ringAtomicsNeedNaturalAlignment() throws {
        let m = try layout()
        try m.storeReleaseUInt16(0xabcd, at: GuestAddress(0x200))
        #expect(try m.loadAcquireUInt16(at: GuestAddress(0x200)) == 0xabcd)
        #expect(throws: GuestMemoryError.misaligned(address: GuestAddress(0x201), alignment: 2)) {
            _ = try m.loadAcquireUInt16(at: GuestAddress(0x201))
        }
    }

    @Test func overlappingRegionsAreRejected() throws {
        #expect(throws: GuestMemoryError.self) {
            _ = try GuestMemory(regions: [.memfd(at: GuestAddress(0), size: 0x2000), .memfd(at: GuestAddress(0x1000), size: 0x1000)])
        }
    }

    @Test func scatterGatherCopiesAndIOVecs() throws {
        let m = try layout()
        let list = try GuestBufferList(memory: m, ranges: [
            (GuestAddress(0x1000), 4), (GuestAddress(0x2000), 0), (GuestAddress(0xfffe), 4), (GuestAddress(0x100000), 8),
        ])
        #expect(list.byteCount == 16)
        try list.write(Array(0..<16), at: 0)
        #expect(try m.readBytes(at: GuestAddress(0xfffe), count: 4) == [4, 5, 6, 7])
        #expect(try list.bytes(at: 3, count: 6) == [3, 4, 5, 6, 7, 8])
        #expect(throws: GuestMemoryError.partialBuffer(expected: 4, completed: 2)) { try list.write([1, 2, 3, 4], at: 14) }
        let lengths = list.withIOVecs(offset: 2, length: 100) { $0.map(\.iov_len) }
        #expect(lengths == [2, 2, 2, 8])
    }

    @Test func guestBufferRangesAreValidated() throws {
        let m = try layout()
        #expect(throws: GuestMemoryError.outOfRange(address: GuestAddress(0x30000), length: 16)) {
            _ = try GuestBufferList(memory: m, ranges: [(GuestAddress(0x30000), 16)])
        }
        #expect(throws: GuestMemoryError.overflow(address: GuestAddress(.max), length: 16)) {
            _ = try GuestBufferList(memory: m, ranges: [(GuestAddress(.max), 16)])
        }
    }
}

@Suite struct RegisterBytesTests {
    @Test func storeAndLoadAreLittleEndianAndSizedByTheBuffer() {
        var b = [UInt8](repeating: 0xAA, count: 2)
        b.withUnsafeMutableBytes { RegisterBytes.store(0x1234_5678, into: $0) }
        #expect(b == [0x78, 0x56], "a 2-byte read gets the low half")
        var wide = [UInt8](repeating: 0xAA, count: 10)
        wide.withUnsafeMutableBytes { RegisterBytes.store(0x0102_0304_0506_0708, into: $0) }
        #expect(wide == [8, 7, 6, 5, 4, 3, 2, 1, 0, 0])
        #expect(([0x78, 0x56, 0x34, 0x12] as [UInt8]).withUnsafeBytes { RegisterBytes.load($0) } == 0x1234_5678)
    }

    @Test func copyReadsZeroOutsideTheSource() {
        var b = [UInt8](repeating: 0xAA, count: 4)
        b.withUnsafeMutableBytes { RegisterBytes.copy([1, 2, 3], from: 1, into: $0) }
        #expect(b == [2, 3, 0, 0])
        b.withUnsafeMutableBytes { RegisterBytes.copy([1, 2, 3], from: -1, into: $0) }
        #expect(b == [0, 1, 2, 3])
        b.withUnsafeMutableBytes { RegisterBytes.copy([1, 2, 3], from: Int.max, into: $0) }
        #expect(b == [0, 0, 0, 0])
    }
}
