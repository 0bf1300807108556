import Glibc
import Testing
import VfsvmSys
import VfsvmTestSupport
@testable import VfsvmVirtioBlk

/// WRITE_ZEROES and DISCARD name up to 32 segments of up to 2 GiB each,
/// overlapping if the driver likes. On a file system without
/// FALLOC_FL_ZERO_RANGE (tmpfs) the zeros used to be written with pwrite,
/// segment after segment, on the queue's thread: one request kept it busy
/// for as long as writing 64 GiB takes, and a device reset waited for it.
@Suite(.serialized) struct HostileZeroingTests {
    static let gib = 1 << 30

    /// 32 copies of one 1 GiB range, without UNMAP, on a tmpfs image: one
    /// request zeroes the range once (1 GiB of work, not 32), and the range
    /// reads as zeros and stays allocated.
    @Test func repeatedSegmentsOnTmpfsAreZeroedOnce() throws {
        let sectors = Self.gib / BlockFixture.sector
        let f = try BlockFixture(layout: .split, sectors: sectors, dir: "/dev/shm")
        try f.writeFile([UInt8](repeating: 0xAB, count: 4096), at: 0)
        try f.writeFile([UInt8](repeating: 0xCD, count: 4096), at: Self.gib - 4096)
        let one = MockDriver.blockSegment(sector: 0, sectors: UInt32(sectors))
        let before = f.image.zeroedBytes
        let r = try f.raw(BlockRequestType.writeZeroes.rawValue, out: Array((0..<32).map { _ in one }.joined()))
        #expect(r.status == OK)
        #expect(f.image.zeroedBytes - before == Self.gib, "one write-zeroes request zeroed \(f.image.zeroedBytes - before) bytes")
        #expect(try f.fileBytes(at: 0, count: 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(try f.fileBytes(at: Self.gib - 4096, count: 4096) == [UInt8](repeating: 0, count: 4096))
        // Without UNMAP the range stays allocated (tmpfs reports allocated,
        // unwritten pages as holes to SEEK_HOLE, so st_blocks tells).
        #expect(f.allocatedBytes >= Self.gib, "\(f.allocatedBytes) bytes allocated")
        try HostileBlockDriverTests.stillServes(f)
    }

    /// A stop request between steps ends the zeroing with ECANCELED after
    /// one step (64 MiB), so QueueRunner.stop() never waits for the rest.
    @Test func zeroingStopsBetweenSteps() throws {
        let step = Int(BlockImage.zeroingStep)
        let f = try BlockFixture(layout: .split, sectors: 4 * step / BlockFixture.sector, dir: "/dev/shm")
        try f.writeFile([UInt8](repeating: 0x5A, count: 1024), at: step - 512)
        var checks = 0
        #expect(throws: SystemError.self) {
            try f.image.zeroRange(offset: 0, length: Int64(4 * step)) { checks += 1; return checks > 1 }
        }
        #expect(checks == 2)
        #expect(try f.fileBytes(at: step - 512, count: 512) == [UInt8](repeating: 0, count: 512))
        #expect(try f.fileBytes(at: step, count: 512) == [UInt8](repeating: 0x5A, count: 512))
        let error = #expect(throws: SystemError.self) { try f.image.zeroRange(offset: 0, length: Int64(4 * step)) { true } }
        #expect(error?.errno == Errno(rawValue: ECANCELED))
    }

    /// Overlapping and touching segments merge; UNMAP survives only where
    /// every part asked for it.
    @Test func segmentsCoalesce() {
        typealias S = BlockRequest.Segment
        let merged = BlockRequest.coalesce([S(offset: 4096, length: 512, unmap: true), S(offset: 0, length: 4096, unmap: true),
                                            S(offset: 0, length: 1024, unmap: false), S(offset: 8192, length: 512, unmap: true)])
        #expect(merged.map(\.offset) == [0, 8192])
        #expect(merged.map(\.length) == [4608, 512])
        #expect(merged.map(\.unmap) == [false, true])
    }
}

/// The O_DIRECT fd is the image the buffered fd opened, even when the path
/// names another file by the time of the second open (renamed, replaced
/// by a symlink): it is reopened through /proc/self/fd, not by name.
@Test func theDirectFDIsTheSameInodeEvenIfThePathChanged() throws {
    let a = try BlockFixture(layout: .split, sectors: 8)
    let b = try BlockFixture(layout: .split, sectors: 8)
    let fd = try FileDescriptor.open(a.path, O_RDWR)
    var st = stat()
    try #require(fstat(fd.rawValue, &st) == 0)
    let direct = try #require(BlockImage.reopenDirect(fd, path: b.path, mode: O_RDWR, st), "ext4 /tmp takes O_DIRECT")
    var again = stat()
    try #require(fstat(direct.rawValue, &again) == 0)
    #expect(again.st_ino == st.st_ino)
}
