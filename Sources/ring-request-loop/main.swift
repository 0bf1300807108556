import Glibc
import Synchronization
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys
import VfsvmTestSupport
import VfsvmVirtio
import VfsvmVirtioFS

// The whole request path of `vfsvm serve` below the kick, for counting
// instructions per request with `valgrind --tool=callgrind
// --toggle-collect='*processAvailable*'` (Benchmarks/callgrind-ring.sh):
// a virtqueue (split or packed, a mock driver posting the chains), the
// queue runner draining it inline as its thread does after a kick, the
// virtio-fs device's chain handler, FUSEServer and PassthroughFileSystem
// on a scratch directory. No eventfd, no poll: those are the kernel's.
//
//   ring-request-loop getattr|lookup|read|read-linux BATCH PASSES [split|packed]
//
// Each pass finds BATCH chains available (the same chains, re-posted by
// the driver between passes), handles them and completes them as one
// batch. Collected instructions / (BATCH * PASSES) is the device side's
// cost per request (read: READ of 4 KiB at offset 0 of a 4 KiB file, the
// reply in one buffer; read-linux: the same READ with the out-header and
// the data in two buffers, as Linux's virtio-fs and bench-backend post it).

let args = CommandLine.arguments
guard args.count == 4 || args.count == 5, ["getattr", "lookup", "read", "read-linux"].contains(args[1]),
      let batch = Int(args[2]), (1...256).contains(batch), let passes = Int(args[3]), passes >= 0,
      let layout = args.count == 5 ? RingLayout(rawValue: args[4]) : .split else {
    logLine("usage: ring-request-loop getattr|lookup|read|read-linux BATCH(1-256) PASSES [split|packed]")
    exit(2)
}

@Sendable func fail(_ s: String) -> Never {
    logLine("ring-request-loop: " + s)
    exit(1)
}

var template = Array("/tmp/vfsvm-ringloop-XXXXXX".utf8CString)
guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { fail("mkdtemp failed") }
let dir = String(cString: made)
defer { _ = system("rm -rf '\(dir)'") }
let fd = open(dir + "/f", O_CREAT | O_WRONLY, 0o644)
guard fd >= 0, [UInt8](repeating: 0x5a, count: 4096).withUnsafeBytes({ write(fd, $0.baseAddress, 4096) }) == 4096 else {
    fail("cannot write \(dir)/f")
}
close(fd)

let fs: PassthroughFileSystem
do { fs = try PassthroughFileSystem(root: dir) } catch { fail("cannot share \(dir): \(error)") }
let server = FUSEServer(fileSystem: fs, options: FUSEServerOptions())
let client = Client(server)
guard client.initSession().ok else { fail("INIT failed") }
let file = client.lookup(1, "f")
guard file.ok else { fail("LOOKUP f failed") }

let body = Bytes()
let opcode: FUSEOpcode
let node: UInt64
var replyCapacity: UInt32 = 4096 + 16
/// The reply's writable buffers: one, or (read-linux) the out-header's and the data's.
var replyBuffers: [UInt32] { args[1] == "read-linux" ? [16, 4096] : [replyCapacity] }
switch args[1] {
case "getattr":
    body.u32(0).u32(0).u64(0)
    opcode = .getattr
    node = file.nodeID
    replyCapacity = 128
case "read", "read-linux":
    let opened = client.open(file.nodeID, flags: UInt32(O_RDONLY))
    guard opened.ok else { fail("OPEN f failed") }
    var fh: UInt64 = 0
    for k in 0..<8 { fh |= UInt64(opened.body[k]) << (8 * UInt64(k)) }
    body.u64(fh).u64(0).u32(4096).u32(0).u64(0).u32(0).u32(0)
    opcode = .read
    node = file.nodeID
default:
    body.name("f")
    opcode = .lookup
    node = 1
    replyCapacity = 256
}
let request = client.header(opcode.rawValue, node: node, bodyLength: body.b.count) + body.b

/// Counts interrupts and does nothing else (serve writes the call eventfd
/// here: a system call, which is the kernel's cost, not counted).
final class CountingInterrupt: VirtioInterrupt {
    let count = Atomic(0)
    func signalQueue(_ index: Int) throws { count.add(1, ordering: .relaxed) }
    func signalConfigChange() throws {}
}

let interrupt = CountingInterrupt()
let driver: MockDriver
let runner: QueueRunner
do {
    driver = try MockDriver(layout: layout, queueSize: 256, features: [.version1, .eventIndex], memorySize: 8 << 20)
    runner = try QueueRunner(
        index: 1, queue: try driver.makeQueue(), memory: driver.memory, kick: try EventFD(nonBlocking: true),
        interrupt: interrupt, requestHandler: { VirtioFSDevice.handle($0, server) },
        onFatal: { fail("queue failed: \($0)") })
    for _ in 0..<batch { _ = try driver.add(readable: [request], writable: replyBuffers) }
} catch {
    fail("cannot set up the ring: \(error)")
}
var completed = 0
for pass in 0..<passes {
    runner.processAvailable()
    do {
        if pass == 0 {
            for c in try driver.collect() {
                let error = c.reply.count >= 8 ? Int32(bitPattern: UInt32(c.reply[4]) | UInt32(c.reply[5]) << 8
                    | UInt32(c.reply[6]) << 16 | UInt32(c.reply[7]) << 24) : -1
                guard error == 0, opcode != .read || c.length == 4096 + 16 else {
                    fail("chain \(c.id): reply of \(c.length) bytes, error \(error)")
                }
                completed += 1
            }
            for _ in 0..<batch { _ = try driver.add(readable: [request], writable: replyBuffers) }
        } else {
            completed += try driver.recycle()
        }
    } catch {
        fail("driver: \(error)")
    }
}
guard completed == batch * passes else { fail("\(completed) of \(batch * passes) requests completed") }
if opcode == .lookup { _ = client.forget(file.nodeID, UInt64(completed)) }
