import Glibc
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
@testable import VfsvmVirtioBlk

/// Chains a driver must not build, or builds oddly: each gets IOERR or is
/// refused (used length 0), the image is not touched, nothing crashes, and
/// the queue goes on serving the next request.
@Suite struct HostileBlockDriverTests {
    /// A readable segment holding `bytes`, or a writable one of `length`.
    static func readable(_ f: BlockFixture, _ bytes: [UInt8]) throws -> MockSegment {
        let a = try f.drivers[0].allocate(bytes.count)
        try f.memory.writeBytes(bytes, at: a)
        return MockSegment(address: a, length: UInt32(bytes.count), writable: false)
    }

    static func writable(_ f: BlockFixture, _ length: Int) throws -> MockSegment {
        let a = try f.drivers[0].allocate(length, alignment: 512)
        try f.memory.fill(0xEE, at: a, count: length)
        return MockSegment(address: a, length: UInt32(length), writable: true)
    }

    static func post(_ f: BlockFixture, _ segments: [MockSegment]) throws -> MockCompletion {
        try f.drivers[0].addChain(segments)
        return try f.wait()
    }

    static func header(_ type: BlockRequestType, _ sector: UInt64 = 0) -> [UInt8] { MockDriver.blockHeader(type.rawValue, sector: sector) }

    /// The queue still works and never failed.
    static func stillServes(_ f: BlockFixture) throws {
        let r = try f.roundTrip(.read, sector: 0, inLength: 512)
        #expect(r.status == OK)
        #expect(f.device.fatalError == nil)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func shortHeadersAndMissingStatusBytes(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, fill: 0x77)
        // 8 bytes of header, then a status byte.
        let short = try Self.post(f, [try Self.readable(f, Array(Self.header(.write).prefix(8))), try Self.writable(f, 1)])
        #expect(short.reply == [IOERR])
        // A write whose header and data come without any writable byte:
        // nowhere for a status, completed empty, nothing written.
        let noStatus = try Self.post(f, [try Self.readable(f, Self.header(.write)), try Self.readable(f, [UInt8](repeating: 1, count: 512))])
        #expect(noStatus.length == 0)
        #expect(try f.fileBytes(at: 0, count: 512) == [UInt8](repeating: 0x77, count: 512))
        // Only a header, not even data.
        #expect(try Self.post(f, [try Self.readable(f, Self.header(.flush))]).length == 0)
        try Self.stillServes(f)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func dataInTheWrongDirectionIsAnIOError(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, fill: 0x77)
        // IN with device-readable data after the header.
        let readIn = try Self.post(f, [try Self.readable(f, Self.header(.read)), try Self.readable(f, [UInt8](repeating: 0, count: 512)),
                                       try Self.writable(f, 1)])
        #expect(readIn.reply == [IOERR])
        // OUT with device-writable room besides the status byte.
        let writeOut = try Self.post(f, [try Self.readable(f, Self.header(.write)), try Self.readable(f, [UInt8](repeating: 1, count: 512)),
                                         try Self.writable(f, 512), try Self.writable(f, 1)])
        #expect(writeOut.reply.last == IOERR)
        #expect(writeOut.reply.dropLast().allSatisfy { $0 == 0xEE }, "nothing but the status byte is written")
        // GET_ID with readable bytes after the header.
        let id = try Self.post(f, [try Self.readable(f, Self.header(.getID)), try Self.readable(f, [1, 2, 3, 4]), try Self.writable(f, 21)])
        #expect(id.reply.last == IOERR)
        #expect(try f.fileBytes(at: 0, count: 1024) == [UInt8](repeating: 0x77, count: 1024))
        // A readable descriptor after a writable one: the ring refuses the chain.
        let refused = try Self.post(f, [try Self.readable(f, Self.header(.read)), try Self.writable(f, 512), try Self.readable(f, [0])])
        #expect(refused.length == 0)
        try Self.stillServes(f)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func oddButLawfulLayoutsWork(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout)
        let data = pattern(1024, seed: 11)
        // The header split over two descriptors, the data over three, the
        // status byte sharing the last data descriptor on the read.
        let h = Self.header(.write, 9)
        let w = try Self.post(f, [try Self.readable(f, Array(h[0..<5])), try Self.readable(f, Array(h[5...])),
                                  try Self.readable(f, Array(data[0..<100])), try Self.readable(f, Array(data[100..<612])),
                                  try Self.readable(f, Array(data[612...])), try Self.writable(f, 1)])
        #expect(w.reply == [OK])
        #expect(try f.fileBytes(at: 9 * 512, count: 1024) == data)
        let r = try Self.post(f, [try Self.readable(f, Self.header(.read, 9)), try Self.writable(f, 1000), try Self.writable(f, 25)])
        #expect(r.length == 1025)
        #expect(r.reply == data + [OK])
        // Through an indirect table too.
        try f.drivers[0].postBlock(BlockRequestType.read.rawValue, sector: 9, inLength: 1024, indirect: true)
        let c = try f.wait()
        #expect(c.reply == data + [OK])
    }

    @Test(arguments: [RingLayout.split, .packed])
    func hugeLengthsAreRefusedOrIOErrors(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, sectors: 64)
        // A writable buffer far past guest memory: the ring refuses it.
        let bogus = MockSegment(address: GuestAddress(0x20_0000), length: 0xFFFF_FF00, writable: true)
        let refused = try Self.post(f, [try Self.readable(f, Self.header(.read)), bogus])
        #expect(refused.length == 0)
        // 3 MiB of real buffers to read from a 32 KiB disk.
        let big = try Self.post(f, [try Self.readable(f, Self.header(.read)), try Self.writable(f, 3 << 20), try Self.writable(f, 1)])
        #expect(big.reply.last == IOERR)
        // A discard list of 2 GiB sectors as many times as allowed.
        let seg = MockDriver.blockSegment(sector: 0, sectors: UInt32.max)
        #expect(try f.raw(BlockRequestType.discard.rawValue, out: (0..<32).flatMap { _ in seg }).status == IOERR)
        // Sector numbers that overflow when turned into bytes.
        #expect(try f.roundTrip(.read, sector: UInt64.max - 1, inLength: 1024).status == IOERR)
        #expect(try f.roundTrip(.read, sector: 1 << 55, inLength: 512).status == IOERR)
        #expect(f.fileSize == 64 * 512)
        try Self.stillServes(f)
    }

    @Test func aStormOfBadRequestsLeavesTheDeviceServing() throws {
        let f = try BlockFixture(layout: .split, sectors: 128, fill: 0x42)
        var rng = SplitMix(seed: 10)
        for _ in 0..<200 {
            let type = [0, 1, 4, 8, 11, 13, 99, 0xFFFF_FFFF][Int(rng.next() % 8)]
            let sector = rng.next() % 3 == 0 ? rng.next() : rng.next() % 200
            var out = [UInt8](repeating: 0, count: Int(rng.next() % 3) * 512 + (rng.next() % 4 == 0 ? 16 : 0))
            for i in out.indices { out[i] = UInt8(truncatingIfNeeded: rng.next()) }
            let inLength = Int(rng.next() % 3) * 512 + (rng.next() % 5 == 0 ? 7 : 0)
            _ = try f.raw(UInt32(truncatingIfNeeded: type), sector: sector, out: out, inLength: inLength)
        }
        #expect(f.fileSize == 128 * 512)
        try Self.stillServes(f)
    }
}
