// vfsvm-blk-probe IMAGE SECTOR BYTE: writes 8 sectors of BYTE at SECTOR
// through a virtio-blk device (a mock driver on a split ring, the io_uring
// engine, O_DIRECT where the file system allows), flushes, prints
// "flushed" on stdout and waits to be killed. VfsvmVirtioBlkTests kills it
// with SIGKILL and reads the image.
import Glibc
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
