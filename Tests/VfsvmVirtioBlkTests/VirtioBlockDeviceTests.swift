import Glibc
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
@testable import VfsvmVirtioBlk

/// virtio-blk through mock drivers over split and packed rings: what lands
/// in the image file, what the driver reads back, and the status bytes.
@Suite struct VirtioBlockDeviceTests {
    static let layouts: [RingLayout] = [.split, .packed]

    @Test(arguments: layouts, [BlockEngineKind.ioURing, .sync])
    func writtenSectorsLandInTheFileAndReadBack(layout: RingLayout, engine: BlockEngineKind) throws {
        let f = try BlockFixture(layout: layout, engine: engine)
        if engine == .ioURing { #expect(f.image.engine == .ioURing, "io_uring should be available here") }
        #expect(f.image.usesDirectIO, "/tmp is ext4 here: O_DIRECT expected")
        let data = pattern(8 * 512, seed: 1)
        let w = try f.roundTrip(.write, sector: 5, out: data)
        #expect(w.status == OK)
        #expect(w.length == 1)
        #expect(try f.fileBytes(at: 5 * 512, count: data.count) == data)
        #expect(try f.fileBytes(at: 4 * 512, count: 512) == [UInt8](repeating: 0, count: 512))
        #expect(try f.fileBytes(at: 13 * 512, count: 512) == [UInt8](repeating: 0, count: 512))

        let r = try f.roundTrip(.read, sector: 5, inLength: data.count)
        #expect(r.status == OK)
        #expect(r.length == UInt32(data.count + 1))
        #expect(r.data == data)
        // Bytes written by the host behind the device are read too.
        try f.writeFile(pattern(512, seed: 9), at: 100 * 512)
        #expect(try f.roundTrip(.read, sector: 100, inLength: 512).data == pattern(512, seed: 9))
        #expect(f.fileSize == 2048 * 512)
        #expect(f.image.transferCounts == (3, 3), "4096-aligned guest buffers go through O_DIRECT")
    }

    @Test(arguments: layouts)
    func unalignedGuestBuffersGoThroughTheBufferedPath(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout)
        let data = pattern(3 * 512, seed: 2)
        #expect(try f.roundTrip(.write, sector: 7, out: data, aligned: false).status == OK)
        #expect(try f.fileBytes(at: 7 * 512, count: data.count) == data)
        let r = try f.roundTrip(.read, sector: 7, inLength: data.count, aligned: false)
        #expect(r.status == OK)
        #expect(r.data == data)
        #expect(f.image.transferCounts == (2, 0), "buffers at odd guest addresses cannot go through O_DIRECT")
    }

    @Test func anImageOnTmpfsWorksWithOrWithoutDirectIO() throws {
        guard access("/dev/shm", W_OK) == 0 else {
            Issue.record("/dev/shm is not writable here; the tmpfs case cannot run")
            return
        }
        let f = try BlockFixture(layout: .split, dir: "/dev/shm")
        print("tmpfs image: O_DIRECT \(f.image.usesDirectIO ? "used" : "not available, buffered"), engine \(f.image.engine.rawValue)")
        let data = pattern(4096, seed: 3)
        #expect(try f.roundTrip(.write, sector: 1, out: data).status == OK)
        #expect(try f.fileBytes(at: 512, count: 4096) == data)
        #expect(try f.roundTrip(.read, sector: 1, inLength: 4096).data == data)
        #expect(try f.roundTrip(.flush).status == OK)
    }

    @Test(arguments: layouts)
    func aReadOnlyImageRefusesEveryWriteAndStaysUntouched(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, fill: 0x5A, readOnly: true)
        #expect(f.device.offeredFeatures.contains(.blkReadOnly))
        #expect(try f.roundTrip(.write, sector: 0, out: pattern(512, seed: 4)).status == IOERR)
        #expect(try f.raw(BlockRequestType.discard.rawValue, out: MockDriver.blockSegment(sector: 0, sectors: 8)).status == IOERR)
        #expect(try f.raw(BlockRequestType.writeZeroes.rawValue, out: MockDriver.blockSegment(sector: 0, sectors: 8)).status == IOERR)
        #expect(try f.fileBytes(at: 0, count: 2048 * 512) == [UInt8](repeating: 0x5A, count: 2048 * 512))
        let r = try f.roundTrip(.read, sector: 0, inLength: 512)
        #expect(r.status == OK)
        #expect(r.data == [UInt8](repeating: 0x5A, count: 512))
        #expect(try f.roundTrip(.flush).status == OK)
    }

    @Test(arguments: layouts)
    func sectorRangesPastTheCapacityAreIOErrorsAndTheFileDoesNotGrow(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, sectors: 64)
        #expect(try f.roundTrip(.read, sector: 63, inLength: 512).status == OK)
        #expect(try f.roundTrip(.write, sector: 63, out: pattern(512, seed: 5)).status == OK)
        #expect(try f.roundTrip(.read, sector: 64, inLength: 512).status == IOERR)
        #expect(try f.roundTrip(.read, sector: 63, inLength: 1024).status == IOERR)
        #expect(try f.roundTrip(.write, sector: 64, out: pattern(512, seed: 6)).status == IOERR)
        #expect(try f.roundTrip(.write, sector: 60, out: pattern(8 * 512, seed: 6)).status == IOERR)
        #expect(try f.roundTrip(.write, sector: UInt64.max, out: pattern(512, seed: 6)).status == IOERR)
        #expect(try f.roundTrip(.write, sector: UInt64.max / 512, out: pattern(512, seed: 6)).status == IOERR)
        #expect(try f.raw(BlockRequestType.discard.rawValue, out: MockDriver.blockSegment(sector: 60, sectors: 5)).status == IOERR)
        #expect(try f.raw(BlockRequestType.writeZeroes.rawValue, out: MockDriver.blockSegment(sector: UInt64.max, sectors: 2)).status == IOERR)
        #expect(f.fileSize == 64 * 512)
        // The refused write at 60...67 left sectors 60...62 alone.
        #expect(try f.fileBytes(at: 60 * 512, count: 3 * 512) == [UInt8](repeating: 0, count: 3 * 512))
        #expect(try f.fileBytes(at: 63 * 512, count: 512) == pattern(512, seed: 5))
    }

    @Test(arguments: layouts)
    func dataThatIsNotWholeSectorsIsAnIOError(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout)
        #expect(try f.roundTrip(.read, sector: 0, inLength: 100).status == IOERR)
        #expect(try f.roundTrip(.write, sector: 0, out: [UInt8](repeating: 1, count: 513)).status == IOERR)
        #expect(try f.fileBytes(at: 0, count: 1024) == [UInt8](repeating: 0, count: 1024))
    }

    @Test(arguments: layouts)
    func getIDAnswersTheSerialInTwentyBytes(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, serial: "disk-one")
        let r = try f.roundTrip(.getID, inLength: 20)
        #expect(r.status == OK)
        #expect(r.data == Array("disk-one".utf8) + [UInt8](repeating: 0, count: 12))
        // A shorter buffer gets the first bytes.
        #expect(try f.roundTrip(.getID, inLength: 4).data == Array("disk".utf8))
        // No buffer for the id at all.
        #expect(try f.roundTrip(.getID).status == IOERR)
        #expect(throws: VirtioBlockError.self) { try VirtioBlockDevice(image: f.image, serial: "twenty-one-bytes-long") }
    }

    @Test(arguments: layouts)
    func discardPunchesAHoleThatReadsAsZeros(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, sectors: 1024, fill: 0xA5)
        #expect(f.firstHole(from: 0) == 1024 * 512, "a filled image has no hole before its end")
        let before = f.allocatedBytes
        #expect(try f.raw(BlockRequestType.discard.rawValue, out: MockDriver.blockSegment(sector: 128, sectors: 256)).status == OK)
        #expect(f.firstHole(from: 0) == 128 * 512)
        #expect(f.allocatedBytes <= before - 256 * 512)
        #expect(try f.fileBytes(at: 128 * 512, count: 256 * 512) == [UInt8](repeating: 0, count: 256 * 512))
        #expect(try f.fileBytes(at: 127 * 512, count: 512) == [UInt8](repeating: 0xA5, count: 512))
        #expect(try f.fileBytes(at: 384 * 512, count: 512) == [UInt8](repeating: 0xA5, count: 512))
        #expect(try f.roundTrip(.read, sector: 200, inLength: 512).data == [UInt8](repeating: 0, count: 512))
        #expect(f.fileSize == 1024 * 512)
        // UNMAP is not a discard flag (5.2.6.2), reserved bits neither.
        #expect(try f.raw(BlockRequestType.discard.rawValue, out: MockDriver.blockSegment(sector: 0, sectors: 8, flags: 1)).status == UNSUPP)
        #expect(try f.raw(BlockRequestType.discard.rawValue, out: MockDriver.blockSegment(sector: 0, sectors: 8, flags: 4)).status == UNSUPP)
        #expect(try f.fileBytes(at: 0, count: 8 * 512) == [UInt8](repeating: 0xA5, count: 8 * 512))
    }

    @Test(arguments: layouts)
    func writeZeroesZerosTheRangeAndUnmapMakesItAHole(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, sectors: 1024, fill: 0xC3)
        let segments = MockDriver.blockSegment(sector: 16, sectors: 16) + MockDriver.blockSegment(sector: 512, sectors: 256, flags: 1)
        #expect(try f.raw(BlockRequestType.writeZeroes.rawValue, out: segments).status == OK)
        #expect(try f.fileBytes(at: 16 * 512, count: 16 * 512) == [UInt8](repeating: 0, count: 16 * 512))
        #expect(try f.fileBytes(at: 512 * 512, count: 256 * 512) == [UInt8](repeating: 0, count: 256 * 512))
        #expect(try f.fileBytes(at: 15 * 512, count: 512) == [UInt8](repeating: 0xC3, count: 512))
        #expect(try f.fileBytes(at: 32 * 512, count: 512) == [UInt8](repeating: 0xC3, count: 512))
        #expect(try f.fileBytes(at: 768 * 512, count: 512) == [UInt8](repeating: 0xC3, count: 512))
        // Without UNMAP the range stays allocated; with it, a hole.
        #expect(f.firstHole(from: 0) == 512 * 512)
        #expect(f.fileSize == 1024 * 512)
        // Reserved flag bits.
        #expect(try f.raw(BlockRequestType.writeZeroes.rawValue, out: MockDriver.blockSegment(sector: 0, sectors: 1, flags: 2)).status == UNSUPP)
        #expect(try f.fileBytes(at: 0, count: 512) == [UInt8](repeating: 0xC3, count: 512))
    }

    @Test(arguments: layouts)
    func discardSegmentListsAreChecked(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, sectors: 1024, fill: 0x11)
        let discard = BlockRequestType.discard.rawValue
        // A partial segment, too many segments, a segment over max_discard_sectors.
        #expect(try f.raw(discard, out: [UInt8](repeating: 0, count: 8)).status == IOERR)
        let many = (0..<33).flatMap { MockDriver.blockSegment(sector: UInt64($0), sectors: 1) }
        #expect(try f.raw(discard, out: many).status == IOERR)
        #expect(try f.raw(discard, out: MockDriver.blockSegment(sector: 0, sectors: VirtioBlockDevice.maxDiscardSectors + 1)).status == IOERR)
        // One good segment and one out of range: nothing is done.
        let mixed = MockDriver.blockSegment(sector: 0, sectors: 8) + MockDriver.blockSegment(sector: 1020, sectors: 8)
        #expect(try f.raw(discard, out: mixed).status == IOERR)
        #expect(try f.fileBytes(at: 0, count: 1024 * 512) == [UInt8](repeating: 0x11, count: 1024 * 512))
    }

    @Test(arguments: layouts)
    func flushSucceedsAndUnknownTypesAreUnsupported(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout)
        #expect(try f.roundTrip(.write, sector: 0, out: pattern(512, seed: 7)).status == OK)
        #expect(try f.roundTrip(.flush).status == OK)
        #expect(try f.raw(99, inLength: 512).status == UNSUPP)
        #expect(try f.raw(2 /* SCSI_CMD */, inLength: 512).status == UNSUPP)
        #expect(try f.raw(0x8000_0001 /* legacy barrier bit */, out: pattern(512, seed: 8)).status == UNSUPP)
        #expect(try f.fileBytes(at: 0, count: 512) == pattern(512, seed: 7))
        // FLUSH with data in either direction.
        #expect(try f.raw(BlockRequestType.flush.rawValue, inLength: 512).status == IOERR)
    }

    @Test(arguments: layouts)
    func severalRequestQueuesEachReachTheImage(layout: RingLayout) throws {
        let f = try BlockFixture(layout: layout, queues: 4)
        #expect(f.device.offeredFeatures.contains(.blkMultiQueue))
        #expect(f.device.queueMaxSizes.count == 4)
        #expect(f.device.readConfig(offset: 34, count: 2) == [4, 0])
        // Several requests posted on every queue before any kick.
        for q in 0..<4 {
            for i in 0..<8 {
                try f.drivers[q].postBlock(BlockRequestType.write.rawValue, sector: UInt64(q * 64 + i * 8),
                                           out: pattern(8 * 512, seed: UInt8(q * 8 + i)))
            }
        }
        for q in 0..<4 { try f.kicks[q].signal() }
        for q in 0..<4 {
            var done: [MockCompletion] = []
            for _ in 0..<1000 where done.count < 8 {
                done += try f.drivers[q].collect()
                if done.count < 8 { usleep(5000) }
            }
            #expect(done.count == 8)
            #expect(done.allSatisfy { $0.reply.last == OK })
            #expect(f.interrupt.queueSignals(q) > 0)
        }
        for q in 0..<4 {
            for i in 0..<8 {
                #expect(try f.fileBytes(at: (q * 64 + i * 8) * 512, count: 8 * 512) == pattern(8 * 512, seed: UInt8(q * 8 + i)))
            }
        }
        // And reads on a queue other than the first.
        #expect(try f.roundTrip(queue: 3, .read, sector: 3 * 64, inLength: 8 * 512).data == pattern(8 * 512, seed: 24))
    }

    @Test func theConfigurationSpaceDescribesTheImage() throws {
        let f = try BlockFixture(layout: .split, sectors: 3000)
        func u32(_ o: Int) -> UInt32 { f.device.readConfig(offset: o, count: 4).enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) } }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
        #expect(u64(0) == 3000)  // capacity
        #expect(u32(12) == 62)  // seg_max: queue size 64 - header - status
        #expect(u32(20) == 512)  // blk_size
        #expect(u32(36) == VirtioBlockDevice.maxDiscardSectors)
        #expect(u32(40) == VirtioBlockDevice.maxDiscardSegments)
        #expect(u32(48) == VirtioBlockDevice.maxDiscardSectors)
        #expect(f.device.readConfig(offset: 56, count: 1) == [1])  // write_zeroes_may_unmap
        #expect(f.device.deviceType == 2)
        let offered = f.device.offeredFeatures
        for feature: VirtioFeatures in [.version1, .ringPacked, .eventIndex, .blkFlush, .blkBlockSize, .blkSegMax, .blkDiscard, .blkWriteZeroes] {
            #expect(offered.contains(feature))
        }
        #expect(!offered.contains(.blkReadOnly))
        #expect(!offered.contains(.blkMultiQueue))
        // A partial last sector is not part of the disk.
        try f.writeFile([1, 2, 3], at: 3000 * 512)
        let odd = try BlockImage(path: f.path, readOnly: true)
        #expect(odd.capacitySectors == 3000)
    }

    @Test func imagesThatCannotBeDisksAreRefusedWithOneSentence() throws {
        #expect(throws: BlockImageError.self) { try BlockImage(path: "/nonexistent/disk.img", readOnly: false) }
        do {
            _ = try BlockImage(path: "/nonexistent/disk.img", readOnly: false)
        } catch {
            #expect("\(error)" == "cannot open disk image /nonexistent/disk.img: No such file or directory")
        }
        do {
            _ = try BlockImage(path: "/tmp", readOnly: true)
            Issue.record("a directory was accepted as a disk")
        } catch {
            #expect("\(error)" == "disk image /tmp is not a regular file")
        }
        let f = try BlockFixture(layout: .split)
        let fd = try FileDescriptor.open(f.path, O_RDWR)
        #expect(ftruncate(fd.rawValue, 100) == 0)
        withExtendedLifetime(fd) {}
        do {
            _ = try BlockImage(path: f.path, readOnly: false)
            Issue.record("a 100-byte file was accepted as a disk")
        } catch {
            #expect("\(error)" == "disk image \(f.path) holds 100 bytes, less than one 512-byte sector")
        }
    }
}
