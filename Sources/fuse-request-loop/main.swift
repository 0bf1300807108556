import Glibc
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmPassthroughFS
import VfsvmSys

// A fixed loop of FUSE requests against a PassthroughFileSystem on a
// scratch directory, for counting instructions per request with
// `valgrind --tool=callgrind` (exact, whatever else the machine runs):
//
//   fuse-request-loop getattr|lookup|lookup-miss|read|write|readdirplus N
//
// (lookup-miss: LOOKUP of a name the root does not hold (ENOENT);
// read: READ of 4 KiB at offset 0 of a 4 KiB file opened once;
// write: WRITE of 4 KiB at offset 0 of that file, opened read-write once;
// readdirplus: READDIRPLUS of a directory of 200 empty files, opened once,
// the whole directory in one 64 KiB reply.)
//
// Run it with two values of N; the difference in instructions divided by
// the difference in N is the cost of one request (set-up cancels out).
// Request and reply buffers are made once, as a transport's are.
//
// Kernel file handles are off, as in `vfsvm serve` (whose default is
// `--inode-file-handles never`): the loop counts the path a served guest
// takes. FUSE_LOOP_FILE_HANDLES=prefer counts the file-handle path instead.

let args = CommandLine.arguments
guard args.count == 3, let count = Int(args[2]), count >= 0, ["getattr", "lookup", "lookup-miss", "read", "write", "readdirplus"].contains(args[1]) else {
    logError("usage: fuse-request-loop getattr|lookup|lookup-miss|read|write|readdirplus N")
    exit(2)
}

func logError(_ s: String) { logLine("fuse-request-loop: " + s) }

var template = Array("/tmp/vfsvm-loop-XXXXXX".utf8CString)
guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
    logError("mkdtemp failed")
    exit(1)
}
let dir = String(cString: made)
defer { _ = system("rm -rf '\(dir)'") }
let made4k = open(dir + "/f", O_CREAT | O_WRONLY, 0o644)
guard made4k >= 0, [UInt8](repeating: 0x5a, count: 4096).withUnsafeBytes({ write(made4k, $0.baseAddress, 4096) }) == 4096 else {
    logError("cannot write \(dir)/f")
    exit(1)
}
close(made4k)
let directoryEntries = 200
guard mkdir(dir + "/d", 0o755) == 0 else { logError("cannot make \(dir)/d"); exit(1) }
for i in 0..<directoryEntries {
    let fd = open(dir + "/d/entry-\(i)", O_CREAT | O_WRONLY, 0o644)
    guard fd >= 0 else { logError("cannot create \(dir)/d/entry-\(i)"); exit(1) }
    close(fd)
}

let fs: PassthroughFileSystem
let fileHandles = getenv("FUSE_LOOP_FILE_HANDLES").map { String(cString: $0) == "prefer" } ?? false
do { fs = try PassthroughFileSystem(root: dir, options: PassthroughOptions(fileHandles: fileHandles)) } catch {
    logError("cannot share \(dir): \(error)")
    exit(1)
}
let server = FUSEServer(fileSystem: fs, options: FUSEServerOptions())
let client = Client(server)
guard client.initSession().ok else { logError("INIT failed"); exit(1) }
let file = client.lookup(1, "f")
guard file.ok else { logError("LOOKUP f failed"); exit(1) }

let body = Bytes()
let opcode: FUSEOpcode
let node: UInt64
if args[1] == "getattr" {
    body.u32(0).u32(0).u64(0)
    opcode = .getattr
    node = file.nodeID
} else if args[1] == "read" {
    let opened = client.open(file.nodeID, flags: UInt32(O_RDONLY))
    guard opened.ok else { logError("OPEN f failed"); exit(1) }
    var fh: UInt64 = 0
    for k in 0..<8 { fh |= UInt64(opened.body[k]) << (8 * UInt64(k)) }
    body.u64(fh).u64(0).u32(4096).u32(0).u64(0).u32(0).u32(0)
    opcode = .read
    node = file.nodeID
} else if args[1] == "write" {
    let opened = client.open(file.nodeID, flags: UInt32(O_RDWR))
    guard opened.ok else { logError("OPEN f read-write failed"); exit(1) }
    var fh: UInt64 = 0
    for k in 0..<8 { fh |= UInt64(opened.body[k]) << (8 * UInt64(k)) }
    // fuse_write_in (fh, offset, size, write_flags, lock_owner, flags, padding), then the data.
    body.u64(fh).u64(0).u32(4096).u32(0).u64(0).u32(0).u32(0)
    body.b += [UInt8](repeating: 0xa5, count: 4096)
    opcode = .write
    node = file.nodeID
} else if args[1] == "lookup-miss" {
    body.name("missing")
    opcode = .lookup
    node = 1
} else if args[1] == "readdirplus" {
    let d = client.lookup(1, "d")
    guard d.ok else { logError("LOOKUP d failed"); exit(1) }
    let opened = client.opendir(d.nodeID)
    guard opened.ok else { logError("OPENDIR d failed"); exit(1) }
    var fh: UInt64 = 0
    for k in 0..<8 { fh |= UInt64(opened.body[k]) << (8 * UInt64(k)) }
    body.u64(fh).u64(0).u32(65536).u32(0).u64(0).u32(0).u32(0)
    opcode = .readdirplus
    node = d.nodeID
} else {
    body.name("f")
    opcode = .lookup
    node = 1
}
let request = HostBuffer(client.header(opcode.rawValue, node: node, bodyLength: body.b.count) + body.b)
let reply = HostBuffer(count: opcode == .readdirplus ? 65536 + 16 : 4096 + 16)
var failures = 0
// The reply length each request must get (0: any of at least a header).
// Decided once: a String compare per request would be counted too.
let wanted = switch args[1] {
case "read": 4096 + 16
case "write": 8 + 16  // fuse_write_out, size 4096
case "lookup-miss": 16  // ENOENT, header only
default: 0
}
let miss = args[1] == "lookup-miss"
for k in 0..<count {
    let n = server.handle(request: request, reply: reply)
    if n < 16 || (wanted != 0 && n != wanted) { failures += 1 }
    if miss, k == 0, reply.array[4..<8] != [0xfe, 0xff, 0xff, 0xff] {  // -ENOENT
        logError("LOOKUP of a missing name did not give ENOENT"); exit(1)
    }
    if opcode == .readdirplus, k == 0 {
        // Every entry came back with its entry_out (a node id), once.
        let bytes = Array(reply.array.prefix(n))
        let named = parseDirents(Array(bytes.dropFirst(16)), plus: true).filter { $0.name.hasPrefix("entry-") && $0.nodeID != 0 }
        if named.count != directoryEntries { logError("READDIRPLUS gave \(named.count) entries with nodes, not \(directoryEntries)"); exit(1) }
    }
}
if args[1] == "lookup" {
    // Give back the lookups the loop took.
    _ = client.forget(file.nodeID, UInt64(count))
}
guard failures == 0 else { logError("\(failures) requests failed"); exit(1) }
