// libFuzzer target: FUSE requests through FUSEServer.handle(request:reply:)
// into a PassthroughFileSystem over a scratch share (FUSEFuzzCase).
//
// The scratch tree is a tmpfs (64 MiB, nodev, nosuid) mounted in a mount
// namespace of the fuzzer's own, so nothing persists on the host and a
// device node the input makes cannot be opened as a device:
//
//     <scratch>/share    the shared directory, reset before every input
//     <scratch>/canary   a sibling tree that must never change
//
// Invariants checked after every input: no crash; each reply is well-formed
// (length within the buffer, fuse_out_header.len equal to it, error 0 or a
// negative errno, unique echoed); the canary tree (names, types, modes,
// sizes, contents, times) is unchanged and <scratch> holds nothing but
// share and canary: nothing outside the share changed; and no entry or
// attribute reply names an inode of the scratch root or the canary: nothing
// outside the share was even looked up.
//
// Requests that would stall the single fuzzing thread are defused: SETLKW
// becomes SETLK (a blocking lock against another owner's would wait for
// ever; the queue runner gives such waiters threads of their own). Lengths
// of FALLOCATE and COPY_FILE_RANGE are capped at 1 MiB (the tmpfs bounds
// them anyway; this keeps inputs fast).
import FuzzSupport
import Glibc
import VfsvmFUSE
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys

@_cdecl("LLVMFuzzerInitialize")
public func fuzzFUSEInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    Scratch.setUp()
    writeSeedsIfAsked(FUSESeeds.all)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFUSE(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    runFUSECase(FUSEFuzzCase(&input))
    return 0
}

let replyBuffer = HostBuffer(count: (1 << 20) + 4096)

func runFUSECase(_ c: FUSEFuzzCase) {
    Scratch.resetShare()
    let fs: PassthroughFileSystem
    do {
        fs = try PassthroughFileSystem(root: Scratch.share,
                                       options: PassthroughOptions(cache: .auto, xattr: !c.noXattr, fileHandles: !c.noFileHandles),
                                       engine: SyncIOEngine())
    } catch { fatalError("fuzz setup: \(error)") }
    var serverOptions = FUSEServerOptions(writeback: c.writeback, readOnly: c.readOnly, locks: true)
    serverOptions.securityLabel = c.securityLabel
    let server = FUSEServer(fileSystem: fs, options: serverOptions)
    var builder = FUSERequestBuilder()
    if !c.skipInit { send(server, builder.initRequest(flags2: c.securityLabel ? 1 : 0)) }
    for r in c.requests {
        var bytes = r.bytes
        if r.fixLength, bytes.count >= 4 {
            withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { for i in 0..<4 { bytes[i] = $0[i] } }
        }
        defuse(&bytes)
        send(server, bytes)
    }
    fs.destroy()
    Scratch.checkCanary()
}

func field(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<n where at + i < b.count { v |= UInt64(b[at + i]) << (8 * UInt64(i)) }
    return v
}

func setField(_ b: inout [UInt8], _ at: Int, _ n: Int, _ v: UInt64) {
    for i in 0..<n where at + i < b.count { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
}

func defuse(_ b: inout [UInt8]) {
    guard b.count >= 8 else { return }
    switch field(b, 4, 4) {
    case 33: setField(&b, 4, 4, 32)  // SETLKW → SETLK
    case 43: setField(&b, 56, 8, min(field(b, 56, 8), 1 << 20))  // fuse_fallocate_in.length
    case 47: setField(&b, 80, 8, min(field(b, 80, 8), 1 << 20))  // fuse_copy_file_range_in.len
    default: break
    }
}

func send(_ server: FUSEServer, _ bytes: [UInt8]) {
    let request = HostBuffer(bytes)
    let n = server.handle(request: request, reply: replyBuffer)
    invariant(n >= 0 && n <= replyBuffer.byteCount, "reply length \(n)")
    guard n > 0 else { return }
    let reply = replyBuffer.withUnsafeMutableBytes { Array($0.prefix(16)) }
    invariant(n >= 16, "a reply shorter than fuse_out_header: \(n) bytes")
    let length = field(reply, 0, 4), error = Int32(bitPattern: UInt32(field(reply, 4, 4))), unique = field(reply, 8, 8)
    invariant(length == UInt64(n), "fuse_out_header.len \(length) but \(n) bytes returned")
    invariant(error <= 0 && error >= -4095, "error field \(error) is not 0 or a negative errno")
    invariant(error == 0 || n == 16, "an error reply carries a body (\(n) bytes)")
    if bytes.count >= 16 { invariant(unique == field(bytes, 8, 8), "unique \(unique) not echoed") }
    if error == 0 { checkInodes(opcode: field(bytes, 4, 4), length: n) }
}

/// Entry and attribute replies name host inodes (attr.ino is st_ino): none
/// may be an inode outside the share (the scratch root, the canary tree),
/// which would mean a name was resolved outside it.
func checkInodes(opcode: UInt64, length: Int) {
    let body = replyBuffer.withUnsafeMutableBytes { Array($0.prefix(length)) }
    func check(_ inoAt: Int, _ what: String) {
        guard inoAt + 8 <= body.count else { return }
        let ino = field(body, inoAt, 8)
        invariant(!Scratch.outsideInodes.contains(ino), "\(what) reply names inode \(ino), which lies outside the share")
    }
    switch opcode {
    case 1, 6, 8, 9, 13, 35, 51: check(16 + 40, "entry")  // fuse_entry_out.attr.ino
    case 3, 4: check(16 + 16, "attr")  // fuse_attr_out.attr.ino
    case 44:
        var p = 16
        while p + 152 <= body.count {
            if field(body, p, 8) != 0 { check(p + 40, "READDIRPLUS entry") }
            let nameLength = Int(field(body, p + 128 + 16, 4))
            p += (128 + 24 + nameLength + 7) & ~7
        }
    default: break
    }
}
