// Test helper for the virtio-blk device (not a product):
//
// vfsvm-blk-probe IMAGE SECTOR BYTE: writes 8 sectors of BYTE at SECTOR
// through a virtio-blk device (a mock driver on a split ring, the io_uring
// engine, O_DIRECT where the file system allows), flushes, prints
// "flushed" on stdout and waits to be killed. VfsvmVirtioBlkTests kills it
// with SIGKILL and reads the image.
//
// vfsvm-blk-probe bench IMAGE: requests per second through the device (a
// mock driver, 16 in flight on one queue) for each engine (io_uring, sync)
// with and without O_DIRECT: 4 KiB random reads and writes, 1 MiB
// sequential writes, each write pass followed by a FLUSH. IMAGE must exist
// (its size is the disk; write it full first so reads hit data).
//
// vfsvm-blk-probe serve SOCKET IMAGE[:ro] QUEUES: serves the image as a
// virtio-blk device with QUEUES request queues over vhost-user on SOCKET
// (one connection: QEMU's vhost-user-blk-pci), for
// Tests/Integration/blk-test.sh; exits 0 when the front-end disconnects.
import Glibc
import VfsvmConfig
import VfsvmVhostUser
import VfsvmMemory
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
import VfsvmVirtioBlk

func fail(_ why: String) -> Never {
    writeStandardError("vfsvm-blk-probe: \(why)\n")
    exit(1)
}

let args = CommandLine.arguments
if args.count == 3, args[1] == "bench" {
    bench(path: args[2])
    exit(0)
}
if args.count == 5, args[1] == "serve" {
    do {
        let spec = try DiskSpec(parsing: args[3])
        guard let queues = Int(args[4]) else { fail("QUEUES must be a number, got '\(args[4])'") }
        let image = try BlockImage(path: spec.path, readOnly: spec.readOnly)
        let device = try VirtioBlockDevice(image: image, requestQueues: queues, serial: "vfsvm-blk-test")
        let server = try VhostUserBackendServer(device: VhostUserVirtioBackend(device: device), socketPath: args[2])
        writeStandardError("vfsvm-blk-probe: serving \(spec.path)\(spec.readOnly ? " read-only" : ""), \(image.capacitySectors) sectors, \(queues) queues, O_DIRECT \(image.usesDirectIO), \(image.engine.rawValue)\n")
        _ = try server.run(.oneConnection)
        let counts = image.transferCounts
        writeStandardError("vfsvm-blk-probe: done; \(counts.all) reads and writes, \(counts.direct) through O_DIRECT\n")
        exit(0)
    } catch {
        fail("\(error)")
    }
}
guard args.count == 4, let sector = UInt64(args[2]), let byte = UInt8(args[3]) else {
    fail("usage: vfsvm-blk-probe IMAGE SECTOR BYTE")
}
do {
    let image = try BlockImage(path: args[1], readOnly: false)
    let device = try VirtioBlockDevice(image: image, queueSize: 16)
    let memory = try GuestMemory.anonymous(size: 4 << 20)
    let driver = try MockDriver(memory: memory, layout: .split, queueSize: 16, features: [.version1])
    let kick = try EventFD(nonBlocking: true)
    try device.activate(ActivationContext(memory: memory, features: [.version1], queues: [
        ActivatedQueue(index: 0, queue: try driver.makeQueue(), kick: kick),
    ], interrupt: RecordingInterrupt()) { _, error in fail("queue failed: \(error)") })

    func roundTrip(_ type: BlockRequestType, out: [UInt8] = []) throws -> UInt8? {
        try driver.postBlock(type.rawValue, sector: sector, out: out)
        try kick.signal()
        for _ in 0..<1000 {
            if let c = try driver.collect().first { return BlockCompletion(c).status }
            usleep(5000)
        }
        fail("no completion")
    }
    guard try roundTrip(.write, out: [UInt8](repeating: byte, count: 8 * 512)) == 0 else { fail("write failed") }
    guard try roundTrip(.flush) == 0 else { fail("flush failed") }
    let line = Array("flushed direct=\(image.usesDirectIO) engine=\(image.engine.rawValue)\n".utf8)
    _ = line.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
    while true { pause() }
} catch {
    fail("\(error)")
}

/// One bench pass: `count` requests of `size` bytes, 16 in flight.
func bench(path: String) {
    do {
        for engine in [BlockEngineKind.ioURing, .sync] {
            for direct in [true, false] {
                let image = try BlockImage(path: path, readOnly: false, direct: direct, engine: engine)
                let device = try VirtioBlockDevice(image: image, queueSize: 64)
                let memory = try GuestMemory.anonymous(size: 40 << 20)
                let driver = try MockDriver(memory: memory, layout: .split, queueSize: 64, features: [.version1])
                let kick = try EventFD(nonBlocking: true)
                try device.activate(ActivationContext(memory: memory, features: [.version1], queues: [
                    ActivatedQueue(index: 0, queue: try driver.makeQueue(), kick: kick),
                ], interrupt: RecordingInterrupt()) { _, error in fail("queue failed: \(error)") })
                var rng = SplitMix(seed: 1)
                let sectors = image.capacitySectors
                func run(_ label: String, _ type: BlockRequestType, size: Int, count: Int, sequential: Bool) throws {
                    let data = [UInt8](repeating: 0xA7, count: size)
                    let span = UInt64(size / 512)
                    var next: UInt64 = 0
                    let start = ContinuousClock.now
                    var done = 0
                    while done < count {
                        let batch = min(16, count - done)
                        for _ in 0..<batch {
                            let sector: UInt64
                            if sequential {
                                sector = next
                                next = (next + span) % (sectors - span)
                            } else {
                                sector = (rng.next() % (sectors / span)) * span
                            }
                            if type == .read {
                                try driver.postBlock(type.rawValue, sector: sector, inLength: size, publish: false)
                            } else {
                                try driver.postBlock(type.rawValue, sector: sector, out: data, publish: false)
                            }
                        }
                        try driver.publish()
                        try kick.signal()
                        var got = 0
                        while got < batch {
                            let c = try driver.collect()
                            for x in c where x.reply.last != 0 { fail("\(label): status \(x.reply.last ?? 255)") }
                            got += c.count
                            if c.isEmpty { sched_yield() }
                        }
                        done += batch
                    }
                    if type == .write {
                        try driver.postBlock(BlockRequestType.flush.rawValue)
                        try kick.signal()
                        while try driver.collect().isEmpty { sched_yield() }
                    }
                    let seconds = Double((ContinuousClock.now - start).components.attoseconds) / 1e18 + Double((ContinuousClock.now - start).components.seconds)
                    let mib = Double(size * count) / Double(1 << 20) / seconds
                    let line = "\(engine.rawValue.padding(8)) \((image.usesDirectIO ? "O_DIRECT" : "buffered").padding(9)) \(label.padding(22)) \(String(Int(Double(count) / seconds)).padding(8, left: true)) req/s \(String(Int(mib)).padding(6, left: true)) MiB/s\n"
                    writeStandardError(line)
                }
                try run("4 KiB random read", .read, size: 4096, count: 4000, sequential: false)
                try run("4 KiB random write", .write, size: 4096, count: 4000, sequential: false)
                try run("1 MiB sequential write", .write, size: 1 << 20, count: 128, sequential: true)
                device.reset()
            }
        }
    } catch {
        fail("\(error)")
    }
}

extension String {
    func padding(_ n: Int, left: Bool = false) -> String {
        count >= n ? self : (left ? String(repeating: " ", count: n - count) + self : self + String(repeating: " ", count: n - count))
    }
}
