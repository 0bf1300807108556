import CVfsvmLinux
import Glibc
import Testing
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
@testable import VfsvmVirtioBlk

/// A virtio-blk device over a fresh image file, with one mock driver per
/// request queue in one guest memory.
final class BlockFixture {
    static let sector = 512

    let path: String
    let image: BlockImage
    let device: VirtioBlockDevice
    let memory: GuestMemory
    let features: VirtioFeatures
    let drivers: [MockDriver]
    let kicks: [EventFD]
    let interrupt = RecordingInterrupt()

    /// - Parameters:
    ///   - sectors: the image size; the file is sparse unless `fill`.
    ///   - dir: where the image goes (/tmp is ext4 here, /dev/shm tmpfs).
    init(layout: RingLayout, sectors: Int = 2048, fill: UInt8? = nil, readOnly: Bool = false, queues: Int = 1,
         engine: BlockEngineKind = .ioURing, direct: Bool = true, dir: String = "/tmp", serial: String? = nil) throws {
        var template = Array("\(dir)/vfsvm-blk-test.XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0, "mkstemp in \(dir) failed: errno \(errno)")
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let owned = FileDescriptor(owning: fd)
        if let fill {
            try owned.writeAll([UInt8](repeating: fill, count: sectors * Self.sector))
        } else {
            try #require(ftruncate(fd, off_t(sectors * Self.sector)) == 0)
        }
        image = try BlockImage(path: path, readOnly: readOnly, direct: direct, engine: engine)
        device = try VirtioBlockDevice(image: image, requestQueues: queues, queueSize: 64, serial: serial)
        memory = try GuestMemory.anonymous(size: (1 + 4 * queues) << 20)
        var features: VirtioFeatures = [.version1, .eventIndex, .indirectDescriptors]
        if layout == .packed { features.insert(.ringPacked) }
        self.features = features
        var drivers: [MockDriver] = []
        for i in 0..<UInt64(queues) {
            let ring = GuestAddress(0x1000 + i * 0x4000)
            let arena: Range<UInt64> = (1 + 4 * i) << 20 ..< (5 + 4 * i) << 20
            drivers.append(try MockDriver(memory: memory, layout: layout, queueSize: 64, features: features, ringBase: ring, arena: arena))
        }
        self.drivers = drivers
        kicks = try (0..<queues).map { _ in try EventFD(nonBlocking: true) }
        try device.activate(ActivationContext(
            memory: memory, features: features,
            queues: try (0..<queues).map { i in ActivatedQueue(index: i, queue: try drivers[i].makeQueue(), kick: kicks[i]) },
            interrupt: interrupt) { index, error in Issue.record("queue \(index) failed: \(error)") })
    }

    deinit {
        device.reset()
        unlink(path)
    }

    /// Posts one request on `queue`, kicks and waits for its completion.
    func roundTrip(queue: Int = 0, _ type: BlockRequestType, sector: UInt64 = 0, out: [UInt8] = [], inLength: Int = 0,
                   aligned: Bool = true) throws -> BlockCompletion {
        try raw(queue: queue, type.rawValue, sector: sector, out: out, inLength: inLength, aligned: aligned)
    }

    func raw(queue: Int = 0, _ type: UInt32, sector: UInt64 = 0, out: [UInt8] = [], inLength: Int = 0,
             aligned: Bool = true) throws -> BlockCompletion {
        try drivers[queue].postBlock(type, sector: sector, out: out, inLength: inLength, aligned: aligned)
        return BlockCompletion(try wait(queue: queue))
    }

    /// Kicks `queue` and waits (up to 5 s) for one completion.
    func wait(queue: Int = 0) throws -> MockCompletion {
        try kicks[queue].signal()
        for _ in 0..<1000 {
            if let c = try drivers[queue].collect().first { return c }
            usleep(5000)
        }
        throw MockDriverError.other("no completion within 5 s")
    }

    /// `count` bytes of the image file at `offset`, read with pread.
    func fileBytes(at offset: Int, count: Int) throws -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY)
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { try fd.pread(into: $0, at: Int64(offset)) }
        return Array(out[0..<n])
    }

    func writeFile(_ bytes: [UInt8], at offset: Int) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY)
        let n = try bytes.withUnsafeBytes { try fd.pwrite($0, at: Int64(offset)) }
        #expect(n == bytes.count)
    }

    var fileSize: Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : -1
    }

    /// The first hole at or after `offset` (SEEK_HOLE), -1 on error.
    func firstHole(from offset: Int) -> Int {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY) else { return -1 }
        return Int(lseek(fd.rawValue, off_t(offset), vfsvm_seek_hole()))
    }

    /// Bytes the file occupies on disk (st_blocks * 512).
    var allocatedBytes: Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_blocks) * 512 : -1
    }
}

/// `count` bytes of a pattern that differs per sector and per `seed`.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { i in UInt8(truncatingIfNeeded: i &* 7 &+ i / 512 &+ Int(seed) &* 31) }
}

let OK: UInt8 = 0, IOERR: UInt8 = 1, UNSUPP: UInt8 = 2
