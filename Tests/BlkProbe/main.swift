// Test helper for the virtio-blk device (not a product):
//
// vfsvm-blk-probe IMAGE SECTOR BYTE: writes 8 sectors of BYTE at SECTOR
// through a virtio-blk device (a mock driver on a split ring, the io_uring
// engine, O_DIRECT where the file system allows), flushes, prints
// "flushed" on stdout and waits to be killed. VfsvmVirtioBlkTests kills it
// with SIGKILL and reads the image.
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
