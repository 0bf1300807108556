// vfsvm-fuse-sweep ENGINE VARIANT SHARE [kill|log|none]: every FUSE request
// a guest can send, through the file server `vfsvm serve` builds, under the
// seccomp filter `vfsvm serve` installs.
//
// Before the filter, as serve does it: prepares SHARE (an empty directory:
// files, a directory, a fifo, a symlink, a setuid file, xattrs), gives
// itself supplementary groups, enters
// the namespace sandbox on it, builds the file server with
// `makeFileServer` (ENGINE uring or sync; VARIANT `default` is serve's
// defaults, `options` turns on xattr, writeback, direct I/O, noatime,
// cache=always, uid/gid translation and serve's -d request log; `plain` names inodes by O_PATH fds
// only, with cache=never, no READDIRPLUS, no killpriv-v2 and no submount
// marks; `readonly` is a read-only share with xattrs, where every write
// must come back EROFS), drops capabilities and applies
// the filter (default kill) with `applySeccomp` (`kill-without:N`: the
// same list less call N). Then it sends each
// request through the in-process FUSE client and prints one line per
// request with what came back. A system call missing from the allow-list
// ends the process by SIGSYS with the reporter's line naming it
// ("... is not on the sandbox's allow-list"); a reply other than the one
// expected is an "UNEXPECTED" line and exit 1 (so the sweep cannot pass by
// answering everything with an error before reaching the host). Exit 0:
// every request was answered as expected. Run by
// VfsvmSandboxTests/FUSESweepTests.
import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmConfig
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmFileServer
import VfsvmMemory
import VfsvmSys

let arguments = CommandLine.arguments
let modeArgument = arguments.count == 5 ? arguments[4] : "kill"
/// `kill-without:N`: the filter lacks call N (for the test that shows the
/// sweep notices a missing call).
let withoutCall = modeArgument.hasPrefix("kill-without:") ? Int32(modeArgument.dropFirst("kill-without:".count)) : nil
guard arguments.count == 4 || arguments.count == 5,
      let engine = IOEngineChoice(rawValue: arguments[1]),
      ["default", "options", "plain", "readonly"].contains(arguments[2]),
      let mode = withoutCall != nil ? .kill : SeccompMode(named: modeArgument) else {
    logLine("usage: vfsvm-fuse-sweep uring|sync default|options|plain|readonly SHARE [kill|log|none|kill-without:N]")
    exit(2)
}
let variant = arguments[2]
let shareDir = arguments[3]
let optionsVariant = variant == "options"

@Sendable func fail(_ line: String) -> Never {
    logLine("vfsvm-fuse-sweep: \(line)")
    exit(1)
}

// MARK: - The share, before the sandbox

/// A file of `bytes` at `path` (relative to the share).
func makeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) {
    let fd = Glibc.open(shareDir + "/" + path, O_WRONLY | O_CREAT | O_TRUNC, mode)
    guard fd >= 0 else { fail("cannot create \(path): errno \(errno)") }
    guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else { fail("cannot write \(path)") }
    fchmod(fd, mode)
    close(fd)
}

func prepare() {
    var st = stat()
    guard stat(shareDir, &st) == 0, st.st_mode & 0o170000 == 0o040000 else { fail("\(shareDir) is not a directory") }
    // Requests from a non-root guest user create files here too.
    chmod(shareDir, 0o777)
    makeFile("file", [UInt8](repeating: 0x61, count: 65536))
    // Data, a hole, data: for SEEK_DATA/SEEK_HOLE.
    makeFile("sparse", Array("start".utf8))
    let sparse = Glibc.open(shareDir + "/sparse", O_WRONLY)
    _ = Array("end".utf8).withUnsafeBytes { pwrite(sparse, $0.baseAddress, 3, 4 << 20) }
    close(sparse)
    makeFile("suid", Array("setuid".utf8), mode: 0o6755)
    makeFile("victim", Array("victim".utf8))
    makeFile("other", Array("other".utf8))
    guard mkdir(shareDir + "/dir", 0o755) == 0 else { fail("mkdir dir: errno \(errno)") }
    makeFile("dir/inner", Array("inner".utf8))
    guard mkfifo(shareDir + "/fifo", 0o644) == 0 else { fail("mkfifo: errno \(errno)") }
    guard mkdir(shareDir + "/mnt", 0o755) == 0 else { fail("mkdir mnt: errno \(errno)") }
    guard symlink("file", shareDir + "/link") == 0 else { fail("symlink: errno \(errno)") }
    let value = Array("sweep".utf8)
    guard setxattr(shareDir + "/file", "user.sweep", value, value.count, 0) == 0 else { fail("setxattr: errno \(errno)") }
    guard lsetxattr(shareDir + "/fifo", "trusted.sweep", value, value.count, 0) == 0 else { fail("lsetxattr: errno \(errno)") }
}

prepare()
// A serve started from a login with supplementary groups: each request
// that takes the caller's ids then saves, clears and restores them
// (getgroups/setgroups, FSCredentials).
let groups: [gid_t] = [0, 27, 100]
guard setgroups(groups.count, groups) == 0 else { fail("setgroups: errno \(errno)") }

// MARK: - The file server, as `vfsvm serve` builds and confines it

nonisolated(unsafe) var settings = ServeSettings()
settings.sharedDir = shareDir
if optionsVariant {
    settings.xattr = true
    settings.writeback = true
    settings.allowDirectIO = true
    settings.preserveNoatime = true
    settings.cache = .always
    do {
        settings.uidTranslation = [try IDTranslationRule(parsing: "map:1000:1000:100", option: "--translate-uid"),
                                   try IDTranslationRule(parsing: "forbid-guest:5000:1", option: "--translate-uid")]
        settings.gidTranslation = [try IDTranslationRule(parsing: "map:1000:1000:100", option: "--translate-gid")]
    } catch { fail("\(error)") }
}
let readOnlyVariant = variant == "readonly"
if readOnlyVariant {
    settings.readOnly = true
    settings.xattr = true
}
if variant == "plain" {
    settings.inodeFileHandles = .never
    settings.cache = .never
    settings.killprivV2 = false
    settings.announceSubmounts = false
}
let confined: Sandbox.Share
do { confined = try Sandbox.enterNamespace(root: shareDir, readOnly: readOnlyVariant) } catch { fail("\(error)") }
// A file system mounted inside the share (in the sandbox's own mount
// namespace, so it goes away with the process): submount marks, file
// handles of another mount, EXDEV.
// (Not in `readonly`, whose sweep does not go there.)
if !readOnlyVariant, mount("vfsvm-sweep", "/mnt", "tmpfs", 0, "size=4m") != 0 { fail("mount tmpfs on the share's mnt: errno \(errno)") }
let server: FUSEServer
// `options` also logs every request, as serve's -d does.
do {
    server = try makeFileServer(settings: settings, engine: engine, trace: optionsVariant, confined: confined)
} catch { fail("\(error)") }
do { try Sandbox.dropCapabilities(keeping: settings.capabilities, procSelfFD: confined.procSelfFD) } catch { fail("\(error)") }
do {
    if let withoutCall {
        try Seccomp.install(allowing: SeccompAllowList.fileServer(ioURing: engine == .uring).filter { $0 != withoutCall }, onViolation: .kill)
    } else {
        try applySeccomp(mode, ioURing: engine == .uring)
    }
} catch { fail("\(error)") }
logLine("vfsvm-fuse-sweep: \(engine.rawValue) engine, \(variant) options, seccomp \(mode.rawValue): filter in place")

// MARK: - Requests

// Linux values (x86_64) the Swift importer does not give as plain names.
let oNoatime: Int32 = 0o1000000, oDirect: Int32 = 0o40000
let seekData: Int32 = 3, seekHole: Int32 = 4
let renameNoreplace: UInt32 = 1, renameExchange: UInt32 = 2, renameWhiteout: UInt32 = 4
let sIFIFO: UInt32 = 0o010000, sIFCHR: UInt32 = 0o020000, sIFBLK: UInt32 = 0o060000
let sIFREG: UInt32 = 0o100000, sIFSOCK: UInt32 = 0o140000

/// What a request must get back.
enum Expect {
    /// A reply with error 0.
    case ok
    /// This errno.
    case errno(Int32)
    /// Success or one of these errnos (where the host's file system decides).
    case okOr([Int32])
    /// No reply at all (FORGET, BATCH_FORGET, INTERRUPT).
    case noReply
}

nonisolated(unsafe) let client = Client(server)
nonisolated(unsafe) var requests = 0
nonisolated(unsafe) var unexpected = 0

@discardableResult
@Sendable func check(_ label: String, _ reply: Reply, _ expect: Expect) -> Reply {
    requests += 1
    let got = reply.length == 0 ? "no reply" : reply.error == 0 ? "ok" : "errno \(reply.errno)"
    let fine: Bool
    switch expect {
    case .ok: fine = reply.length >= 16 && reply.error == 0
    case let .errno(e): fine = reply.length >= 16 && reply.errno == e
    case let .okOr(es): fine = reply.length >= 16 && (reply.error == 0 || es.contains(reply.errno))
    case .noReply: fine = reply.length == 0
    }
    if fine {
        logLine("vfsvm-fuse-sweep: \(label): \(got)")
    } else {
        unexpected += 1
        logLine("vfsvm-fuse-sweep: UNEXPECTED \(label): \(got), expected \(expect)")
    }
    return reply
}

/// `expect` in the `options` variant, ENOSYS/EOPNOTSUPP-like refusals in
/// the default one (xattr off).
@Sendable func xattrExpect(_ e: Expect) -> Expect { optionsVariant || readOnlyVariant ? e : .errno(ENOSYS) }

let root: UInt64 = 1

@Sendable func initSession(_ label: String) {
    // Every flag the server knows, as a client that wants everything.
    check(label, client.initSession(minor: 38, flags: 0xffff_ffff, flags2: 0xffff_ffff), .ok)
}

@Sendable func lookup(_ parent: UInt64, _ name: String) -> UInt64 {
    check("LOOKUP \(name)", client.lookup(parent, name), .ok).nodeID
}

@Sendable func setattr(_ label: String, _ node: UInt64, valid: Int32, fh: UInt64 = 0, size: UInt64 = 0, atime: UInt64 = 0, mtime: UInt64 = 0,
             mode: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0, _ expect: Expect = .ok) {
    check("SETATTR \(label)", client.setattr(node, valid: UInt32(valid), fh: fh, size: size, atime: atime, mtime: mtime, mode: mode, uid: uid, gid: gid), expect)
}

@Sendable func fallocate(_ node: UInt64, fh: UInt64, offset: UInt64, length: UInt64, mode: Int32, _ label: String, _ expect: Expect) {
    let b = Bytes(); b.u64(fh).u64(offset).u64(length).u32(UInt32(mode)).u32(0)
    check("FALLOCATE \(label)", client.call(.fallocate, node: node, b), expect)
}

@Sendable func lseek(_ node: UInt64, fh: UInt64, offset: UInt64, whence: Int32, _ label: String, _ expect: Expect) {
    let b = Bytes(); b.u64(fh).u64(offset).u32(UInt32(whence)).u32(0)
    check("LSEEK \(label)", client.call(.lseek, node: node, b), expect)
}

@Sendable func xattrs(_ label: String, _ node: UInt64, name: String, setExpect: Expect) {
    let ext = server.currentSession?.has(FUSEInitFlag.setxattrExt) == true
    let value = Array("value".utf8)
    let set = Bytes(); set.u32(UInt32(value.count)).u32(0)
    if ext { set.u32(0).u32(0) }
    set.name(name).raw(value)
    check("SETXATTR \(label) \(name)", client.call(.setxattr, node: node, set), xattrExpect(setExpect))
    let ok = { () -> Expect in if case .ok = setExpect { return .ok } else { return .okOr([ENODATA, EPERM]) } }()
    let size = Bytes(); size.u32(0).u32(0).name(name)
    check("GETXATTR \(label) \(name) (size query)", client.call(.getxattr, node: node, size), xattrExpect(ok))
    let get = Bytes(); get.u32(4096).u32(0).name(name)
    check("GETXATTR \(label) \(name)", client.call(.getxattr, node: node, get), xattrExpect(ok))
    let small = Bytes(); small.u32(1).u32(0).name(name)
    check("GETXATTR \(label) \(name) (1-byte buffer)", client.call(.getxattr, node: node, small), xattrExpect(.okOr([ERANGE, ENODATA, EPERM])))
    let list0 = Bytes(); list0.u32(0).u32(0)
    check("LISTXATTR \(label) (size query)", client.call(.listxattr, node: node, list0), xattrExpect(.ok))
    let list = Bytes(); list.u32(4096).u32(0)
    check("LISTXATTR \(label)", client.call(.listxattr, node: node, list), xattrExpect(.ok))
    let rm = Bytes(); rm.name(name)
    check("REMOVEXATTR \(label) \(name)", client.call(.removexattr, node: node, rm), readOnlyVariant ? .errno(EROFS) : xattrExpect(ok))
    let rm2 = Bytes(); rm2.name(name)
    check("REMOVEXATTR \(label) \(name) again", client.call(.removexattr, node: node, rm2),
          readOnlyVariant ? .errno(EROFS) : xattrExpect(.okOr([ENODATA, EPERM])))
}

/// A request that waits for a lock, through the deferred entry point (a
/// thread of its own, as the virtio-fs queues run it). Returns a function
/// that waits for the late reply.
@Sendable func waitingLock(_ label: String, node: UInt64, fh: UInt64, owner: UInt64, flock: Bool) -> () -> Void {
    let b = Bytes(); b.u64(fh).u64(owner).u64(0).u64(UInt64(Int64.max)).u32(UInt32(F_WRLCK)).u32(1).u32(flock ? 1 : 0).u32(0)
    let raw = client.header(FUSEOpcode.setlkw.rawValue, node: node, bodyLength: b.b.count) + b.b
    let late = Mutex<[UInt8]?>(nil)
    let handling = server.handle(request: HostBuffer(raw), reply: HostBuffer(count: 4096),
                                 deferral: FUSEClosureDeferral { bytes in late.withLock { $0 = bytes } })
    guard case .deferred = handling else { fail("\(label): not deferred to a waiter thread") }
    requests += 1
    logLine("vfsvm-fuse-sweep: \(label): waiting on its own thread")
    return {
        for _ in 0..<5000 {
            if let bytes = late.withLock({ $0 }) {
                var d = Decoder(bytes)
                _ = d.u32()
                let error = Int32(bitPattern: d.u32())
                if error == 0 {
                    logLine("vfsvm-fuse-sweep: \(label): ok (late reply)")
                } else {
                    unexpected += 1
                    logLine("vfsvm-fuse-sweep: UNEXPECTED \(label): errno \(-error) (late reply)")
                }
                return
            }
            usleep(1000)
        }
        unexpected += 1
        logLine("vfsvm-fuse-sweep: UNEXPECTED \(label): no late reply within 5 s")
    }
}

@Sendable func sweep() {
    // Malformed before any session.
    check("short header", client.send(raw: [1, 2, 3]), .errno(EINVAL))
    check("GETATTR before INIT", client.getattr(root), .errno(EIO))
    initSession("INIT")
    check("INIT again", client.initSession(), .okOr([EINVAL, EPROTO, EIO]))
    check("unknown opcode 99", client.send(raw: client.header(99, node: root, bodyLength: 0)), .errno(ENOSYS))

    // Names and attributes.
    let file = lookup(root, "file")
    let dir = lookup(root, "dir")
    let fifo = lookup(root, "fifo")
    let link = lookup(root, "link")
    let suid = lookup(root, "suid")
    let sparse = lookup(root, "sparse")
    _ = lookup(dir, "inner")
    _ = lookup(dir, "..")
    _ = lookup(root, ".")
    check("LOOKUP missing", client.lookup(root, "missing"), .errno(ENOENT))
    check("LOOKUP 256-byte name", client.lookup(root, String(repeating: "n", count: 256)), .errno(ENAMETOOLONG))
    check("LOOKUP under a file", client.lookup(file, "x"), .errno(ENOTDIR))
    for (name, node) in [("root", root), ("file", file), ("dir", dir), ("fifo", fifo), ("link", link)] {
        check("GETATTR \(name)", client.getattr(node), .ok)
    }
    check("GETATTR unknown node", client.getattr(999_999), .okOr([ENOENT, ESTALE, EINVAL, EBADF]))
    for (name, node, mask) in [("file", file, R_OK | W_OK), ("dir", dir, X_OK), ("fifo", fifo, F_OK), ("root", root, R_OK | X_OK)] {
        let b = Bytes(); b.u32(UInt32(mask)).u32(0)
        check("ACCESS \(name) \(mask)", client.call(.access, node: node, b), .ok)
    }
    check("STATFS", client.call(.statfs, node: root), .ok)
    check("READLINK link", client.call(.readlink, node: link), .ok)
    check("READLINK file", client.call(.readlink, node: file), .errno(EINVAL))

    // Open files: data, sync, space, seeking.
    let fh = check("OPEN file O_RDWR", client.open(file), .ok).openHandle
    check("OPEN file O_RDONLY|oNoatime", client.open(file, flags: UInt32(O_RDONLY | oNoatime)), .ok)
    check("OPEN file O_WRONLY|O_APPEND", client.open(file, flags: UInt32(O_WRONLY | O_APPEND)), .ok)
    check("OPEN file O_RDWR|O_DIRECT", client.open(file, flags: UInt32(O_RDWR | oDirect)), .ok)
    check("OPEN file O_RDWR|O_SYNC|O_DSYNC", client.open(file, flags: UInt32(O_RDWR | O_SYNC)), .ok)
    check("OPEN dir as a file", client.open(dir), .errno(EISDIR))
    check("OPEN fifo O_RDWR|O_NONBLOCK", client.open(fifo, flags: UInt32(O_RDWR | O_NONBLOCK)), .okOr([ENXIO, EPERM, EINVAL]))
    check("GETATTR file with FH", client.call(.getattr, node: file, { let b = Bytes(); b.u32(UInt32(FUSE_GETATTR_FH)).u32(0).u64(fh); return b }()), .ok)
    check("READ 4 KiB", client.read(file, fh: fh, offset: 0, size: 4096), .ok)
    check("READ 1 MiB", client.read(file, fh: fh, offset: 0, size: 1 << 20), .ok)
    check("READ past the end", client.read(file, fh: fh, offset: 1 << 30, size: 4096), .ok)
    check("READ bad handle", client.read(file, fh: 77_777, offset: 0, size: 16), .errno(EBADF))
    check("WRITE 5 bytes", client.write(file, fh: fh, offset: 0, Array("hello".utf8)), .ok)
    check("WRITE 256 KiB", client.write(file, fh: fh, offset: 8192, [UInt8](repeating: 0x62, count: 256 << 10)), .ok)
    check("WRITE bad handle", client.write(file, fh: 77_777, offset: 0, [1]), .errno(EBADF))
    let flushBody = Bytes(); flushBody.u64(fh).u32(0).u32(0).u64(0x1234)
    check("FLUSH", client.call(.flush, node: file, flushBody), .ok)
    for (label, flags) in [("FSYNC", UInt32(0)), ("FSYNC datasync", UInt32(1))] {
        let b = Bytes(); b.u64(fh).u32(flags).u32(0)
        check(label, client.call(.fsync, node: file, b), .ok)
    }
    fallocate(file, fh: fh, offset: 0, length: 1 << 20, mode: 0, "allocate (grows)", .ok)
    fallocate(file, fh: fh, offset: 2 << 20, length: 4096, mode: FALLOC_FL_KEEP_SIZE, "KEEP_SIZE", .ok)
    fallocate(file, fh: fh, offset: 4096, length: 4096, mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "PUNCH_HOLE", .ok)
    fallocate(file, fh: fh, offset: 0, length: 4096, mode: FALLOC_FL_ZERO_RANGE, "ZERO_RANGE", .okOr([EOPNOTSUPP]))
    fallocate(file, fh: fh, offset: 0, length: 4096, mode: FALLOC_FL_COLLAPSE_RANGE, "COLLAPSE_RANGE", .okOr([EOPNOTSUPP, EINVAL]))
    fallocate(file, fh: fh, offset: 0, length: 4096, mode: FALLOC_FL_INSERT_RANGE, "INSERT_RANGE", .okOr([EOPNOTSUPP, EINVAL]))
    fallocate(file, fh: fh, offset: 0, length: 4096, mode: 0x4000_0000, "unknown mode", .okOr([EOPNOTSUPP, EINVAL]))
    let sfh = check("OPEN sparse", client.open(sparse, flags: UInt32(O_RDONLY)), .ok).openHandle
    lseek(sparse, fh: sfh, offset: 0, whence: SEEK_SET, "SEEK_SET", .ok)
    lseek(sparse, fh: sfh, offset: 0, whence: SEEK_CUR, "SEEK_CUR (not served)", .errno(EINVAL))
    lseek(sparse, fh: sfh, offset: 0, whence: SEEK_END, "SEEK_END", .ok)
    lseek(sparse, fh: sfh, offset: 0, whence: seekData, "SEEK_DATA", .ok)
    lseek(sparse, fh: sfh, offset: 0, whence: seekHole, "SEEK_HOLE", .ok)
    lseek(sparse, fh: sfh, offset: 64 << 20, whence: seekData, "SEEK_DATA past the end", .errno(ENXIO))
    lseek(sparse, fh: sfh, offset: 0, whence: 9, "whence 9", .errno(EINVAL))
    let copy = check("CREATE copy", client.create(root, "copy"), .ok)
    let copyNode = copy.nodeID, copyFH = copy.createHandle
    for (label, length, flags, expect) in [("COPY_FILE_RANGE", UInt64(65536), UInt64(0), Expect.ok),
                                           ("COPY_FILE_RANGE flags 1", UInt64(16), UInt64(1), Expect.errno(EINVAL))] {
        let b = Bytes(); b.u64(fh).u64(0).u64(copyNode).u64(copyFH).u64(0).u64(length).u64(flags)
        check(label, client.call(.copyFileRange, node: file, b), expect)
    }

    // Every SETATTR field, on an open handle and by node.
    setattr("mode", file, valid: FATTR_MODE, mode: 0o640)
    setattr("size by node", file, valid: FATTR_SIZE, size: 100_000)
    setattr("size by handle", file, valid: FATTR_SIZE | FATTR_FH, fh: fh, size: 90_000)
    setattr("size by handle, lock owner", file, valid: FATTR_SIZE | FATTR_FH | FATTR_LOCKOWNER, fh: fh, size: 80_000)
    setattr("atime+mtime", file, valid: FATTR_ATIME | FATTR_MTIME, atime: 1_000_000, mtime: 2_000_000)
    setattr("atime only", file, valid: FATTR_ATIME, atime: 3_000_000)
    setattr("ATIME_NOW+MTIME_NOW", file, valid: FATTR_ATIME | FATTR_ATIME_NOW | FATTR_MTIME | FATTR_MTIME_NOW)
    setattr("MTIME_NOW by handle", file, valid: FATTR_MTIME | FATTR_MTIME_NOW | FATTR_FH, fh: fh)
    setattr("ctime", file, valid: FATTR_CTIME)
    setattr("uid+gid", file, valid: FATTR_UID | FATTR_GID, uid: 1000, gid: 1000)
    setattr("uid back", file, valid: FATTR_UID, uid: 0)
    setattr("gid back", file, valid: FATTR_GID, gid: 0)
    setattr("uid by handle", file, valid: FATTR_UID | FATTR_FH, fh: fh, uid: 0)
    if optionsVariant { setattr("forbidden uid", file, valid: FATTR_UID, uid: 5000, .errno(EPERM)) }
    setattr("KILL_SUIDGID+mode", suid, valid: FATTR_MODE | FATTR_KILL_SUIDGID, mode: 0o6755)
    setattr("KILL_SUIDGID+uid", suid, valid: FATTR_UID | FATTR_KILL_SUIDGID, uid: 0)
    setattr("KILL_SUIDGID+size", suid, valid: FATTR_SIZE | FATTR_KILL_SUIDGID, size: 3)
    setattr("symlink owner", link, valid: FATTR_UID | FATTR_GID, uid: 0, gid: 0)
    setattr("symlink times", link, valid: FATTR_ATIME | FATTR_MTIME, atime: 1, mtime: 2)
    setattr("symlink mode", link, valid: FATTR_MODE, mode: 0o777, .okOr([EOPNOTSUPP, EPERM]))
    setattr("fifo mode", fifo, valid: FATTR_MODE, mode: 0o600)
    setattr("fifo owner", fifo, valid: FATTR_UID | FATTR_GID, uid: 0, gid: 0)
    setattr("fifo times", fifo, valid: FATTR_ATIME_NOW | FATTR_ATIME | FATTR_MTIME, mtime: 5)
    setattr("dir mode", dir, valid: FATTR_MODE, mode: 0o755)
    setattr("dir size", dir, valid: FATTR_SIZE, size: 0, .errno(EISDIR))
    setattr("bad nanoseconds", file, valid: FATTR_ATIME, .ok)
    check("SETATTR nanoseconds 1e9", client.call(.setattr, node: file, {
        let b = Bytes(); b.u32(UInt32(FATTR_MTIME)).u32(0).u64(0).u64(0).u64(0).u64(0).u64(1).u64(0)
        b.u32(0).u32(1_000_000_000).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0); return b
    }()), .errno(EINVAL))

    // killpriv-v2: a write and a truncating open that clear setuid/setgid.
    setattr("suid mode again", suid, valid: FATTR_MODE, mode: 0o6755)
    let suidFH = check("OPEN suid", client.open(suid), .ok).openHandle
    check("WRITE with KILL_SUIDGID", client.write(suid, fh: suidFH, offset: 0, Array("x".utf8), flags: 1 << 2), .ok)
    setattr("suid mode again", suid, valid: FATTR_MODE, mode: 0o6755)
    check("OPEN suid O_TRUNC with KILL_SUIDGID", client.call(.open, node: suid, {
        let b = Bytes(); b.u32(UInt32(O_RDWR | O_TRUNC)).u32(1 << 0); return b
    }()), .ok)

    // Extended attributes: a file (fgetxattr on an fd), a directory, a
    // symlink and a fifo (through the share's fds and /proc, not opened).
    xattrs("file", file, name: "user.sweep", setExpect: .ok)
    xattrs("dir", dir, name: "user.sweep", setExpect: .ok)
    // trusted.* needs CAP_SYS_ADMIN, which serve drops: EPERM, and reads
    // find nothing; the calls are made all the same.
    xattrs("fifo", fifo, name: "trusted.sweep", setExpect: .okOr([EPERM]))
    xattrs("fifo", fifo, name: "user.sweep", setExpect: .okOr([EPERM]))
    xattrs("symlink", link, name: "trusted.sweep", setExpect: .okOr([EPERM, EOPNOTSUPP]))
    xattrs("file", file, name: "security.sweep", setExpect: .okOr([EOPNOTSUPP, EPERM]))
    xattrs("file", file, name: "system.posix_acl_access", setExpect: .okOr([EINVAL, EOPNOTSUPP]))
    let createFlag = Bytes(); createFlag.u32(1).u32(UInt32(XATTR_REPLACE))
    if server.currentSession?.has(FUSEInitFlag.setxattrExt) == true { createFlag.u32(0).u32(0) }
    createFlag.name("user.none").raw([1])
    check("SETXATTR XATTR_REPLACE of a missing name", client.call(.setxattr, node: file, createFlag), xattrExpect(.errno(ENODATA)))

    // Making and removing names.
    check("MKDIR", client.mkdir(root, "newdir"), .ok)
    check("MKDIR existing", client.mkdir(root, "newdir"), .errno(EEXIST))
    let mknod = { (name: String, mode: UInt32, rdev: UInt32, expect: Expect) in
        let b = Bytes(); b.u32(mode).u32(rdev).u32(0o022).u32(0).name(name)
        check("MKNOD \(name)", client.call(.mknod, node: root, b), expect)
    }
    mknod("newfifo", sIFIFO | 0o644, 0, .ok)
    mknod("newsock", sIFSOCK | 0o644, 0, .ok)
    mknod("newreg", sIFREG | 0o644, 0, .ok)
    mknod("newchr", sIFCHR | 0o644, 1 << 8 | 3, .okOr([EPERM]))
    mknod("newblk", sIFBLK | 0o644, 7 << 8, .okOr([EPERM]))
    mknod("bad type", 0o170000 | 0o644, 0, .okOr([EINVAL, EPERM]))
    let sym = Bytes(); sym.name("newlink").name("file")
    check("SYMLINK", client.call(.symlink, node: root, sym), .ok)
    let hard = Bytes(); hard.u64(file).name("hardlink")
    check("LINK", client.call(.link, node: root, hard), .ok)
    let hardDir = Bytes(); hardDir.u64(dir).name("dirlink")
    check("LINK of a directory", client.call(.link, node: root, hardDir), .errno(EPERM))
    let created = check("CREATE O_EXCL", client.create(root, "created", flags: UInt32(O_RDWR | O_EXCL)), .ok)
    check("CREATE O_EXCL existing", client.create(root, "created", flags: UInt32(O_RDWR | O_EXCL)), .errno(EEXIST))
    check("CREATE O_WRONLY|O_TRUNC existing", client.create(root, "created", flags: UInt32(O_WRONLY | O_TRUNC)), .ok)
    check("RELEASE created", client.release(created.nodeID, fh: created.createHandle), .ok)
    let tmp = Bytes(); tmp.u32(UInt32(O_RDWR)).u32(0o600).u32(0).u32(0)
    check("TMPFILE", client.call(.tmpfile, node: dir, tmp), .okOr([EOPNOTSUPP]))
    check("RENAME", client.rename(root, "newreg", root, "renamed"), .ok)
    check("RENAME2 NOREPLACE onto existing", client.rename(root, "renamed", root, "other", flags: renameNoreplace), .errno(EEXIST))
    check("RENAME2 NOREPLACE", client.rename(root, "renamed", dir, "moved", flags: renameNoreplace), .ok)
    check("RENAME2 EXCHANGE", client.rename(root, "victim", root, "other", flags: renameExchange), .ok)
    // Whiteouts are overlayfs's business: refused before any host call.
    check("RENAME2 WHITEOUT", client.rename(root, "victim", root, "whited", flags: renameWhiteout), .errno(EINVAL))
    check("RENAME2 unknown flag", client.rename(root, "other", root, "x", flags: 1 << 7), .errno(EINVAL))
    check("RENAME missing", client.rename(root, "missing", root, "x"), .errno(ENOENT))
    check("UNLINK", client.unlink(root, "newsock"), .ok)
    check("UNLINK missing", client.unlink(root, "missing"), .errno(ENOENT))
    check("UNLINK a directory", client.unlink(root, "newdir"), .errno(EISDIR))
    check("RMDIR", client.rmdir(root, "newdir"), .ok)
    check("RMDIR not empty", client.rmdir(root, "dir"), .errno(ENOTEMPTY))

    // As a guest user that is not root: the per-request fs uid/gid and
    // groups of the thread.
    client.uid = 1000; client.gid = 1000
    let mine = check("CREATE as uid 1000", client.create(root, "mine"), .ok)
    check("MKDIR as uid 1000", client.mkdir(root, "minedir"), .ok)
    setattr("chmod own file as uid 1000", mine.nodeID, valid: FATTR_MODE, mode: 0o600)
    // The guest kernel checks permissions (default_permissions); like
    // virtiofsd, the server takes the caller's ids only for new files
    // (and ACCESS).
    setattr("chown to root as uid 1000", mine.nodeID, valid: FATTR_UID, uid: 0, .ok)
    check("OPEN root's 0640 file as uid 1000", client.open(file, flags: UInt32(O_RDWR)), .ok)
    let deny = Bytes(); deny.u32(UInt32(W_OK)).u32(0)
    check("ACCESS W_OK of root's 0640 file as uid 1000", client.call(.access, node: file, deny), .errno(EACCES))
    if optionsVariant {
        client.uid = 5000
        check("CREATE as a forbidden uid", client.create(root, "forbidden"), .errno(EPERM))
    }
    client.uid = 0; client.gid = 0

    // Directories.
    let dfh = check("OPENDIR root", client.opendir(root), .ok).openHandle
    let listing = check("READDIR", client.readdir(root, fh: dfh, offset: 0), .ok)
    let entries = parseDirents(listing.body, plus: false)
    if entries.count < 10 { unexpected += 1; logLine("vfsvm-fuse-sweep: UNEXPECTED READDIR: \(entries.count) entries") }
    if let second = entries.dropFirst().first {
        check("READDIR from an offset", client.readdir(root, fh: dfh, offset: second.off), .ok)
    }
    check("READDIR small buffer", client.readdir(root, fh: dfh, offset: 0, size: 64), .ok)
    check("READDIRPLUS", client.readdir(root, fh: dfh, offset: 0, plus: true), .ok)
    check("READDIRPLUS 200 bytes", client.readdir(root, fh: dfh, offset: 0, size: 200, plus: true), .ok)
    for (label, flags) in [("FSYNCDIR", UInt32(0)), ("FSYNCDIR datasync", UInt32(1))] {
        let b = Bytes(); b.u64(dfh).u32(flags).u32(0)
        check(label, client.call(.fsyncdir, node: root, b), .ok)
    }
    check("RELEASEDIR", client.release(root, fh: dfh, dir: true), .ok)
    check("READDIR released handle", client.readdir(root, fh: dfh, offset: 0), .errno(EBADF))
    check("OPENDIR a file", client.opendir(file), .errno(ENOTDIR))

    // Locks: POSIX (OFD) and flock, a conflict, and a waiter of each kind
    // on a thread of its own until the holder lets go.
    let lfh = check("OPEN file for locks", client.open(file, flags: UInt32(O_RDWR)), .ok).openHandle
    let lfh2 = check("OPEN file for locks again", client.open(file, flags: UInt32(O_RDWR)), .ok).openHandle
    let end = UInt64(Int64.max)
    check("GETLK free", client.lk(.getlk, node: file, fh: lfh, owner: 1, start: 0, end: end, type: UInt32(F_WRLCK)), .ok)
    check("SETLK owner 1 write lock", client.lk(.setlk, node: file, fh: lfh, owner: 1, start: 0, end: end, type: UInt32(F_WRLCK)), .ok)
    check("GETLK owner 2 sees owner 1", client.lk(.getlk, node: file, fh: lfh2, owner: 2, start: 0, end: 100, type: UInt32(F_RDLCK)), .ok)
    check("SETLK owner 2 conflicts", client.lk(.setlk, node: file, fh: lfh2, owner: 2, start: 0, end: 100, type: UInt32(F_RDLCK)), .errno(EAGAIN))
    check("SETLK bad type", client.lk(.setlk, node: file, fh: lfh, owner: 1, start: 0, end: 1, type: 7), .errno(EINVAL))
    let posixWaiter = waitingLock("SETLKW owner 2 (waits)", node: file, fh: lfh2, owner: 2, flock: false)
    usleep(20_000)
    check("SETLK owner 1 unlock", client.lk(.setlk, node: file, fh: lfh, owner: 1, start: 0, end: end, type: UInt32(F_UNLCK)), .ok)
    posixWaiter()
    check("SETLK owner 2 unlock", client.lk(.setlk, node: file, fh: lfh2, owner: 2, start: 0, end: end, type: UInt32(F_UNLCK)), .ok)
    check("SETLK flock exclusive", client.lk(.setlk, node: file, fh: lfh, owner: 1, start: 0, end: 0, type: UInt32(F_WRLCK), flock: true), .ok)
    check("SETLK flock conflicts", client.lk(.setlk, node: file, fh: lfh2, owner: 2, start: 0, end: 0, type: UInt32(F_WRLCK), flock: true), .errno(EAGAIN))
    let flockWaiter = waitingLock("SETLKW flock (waits)", node: file, fh: lfh2, owner: 2, flock: true)
    usleep(20_000)
    check("RELEASE with FLOCK_UNLOCK", client.release(file, fh: lfh, releaseFlags: 1 << 1, owner: 1), .ok)
    flockWaiter()
    let flushOwner = Bytes(); flushOwner.u64(lfh2).u32(0).u32(0).u64(2)
    check("FLUSH lock owner 2", client.call(.flush, node: file, flushOwner), .ok)
    check("RELEASE lock handle", client.release(file, fh: lfh2, releaseFlags: 1 << 1, owner: 2), .ok)

    // Opcodes the server does not serve (a share without a DAX window, as
    // `vfsvm serve`'s), and the ones that get no reply.
    check("BMAP", client.call(.bmap, node: file, { let b = Bytes(); b.u64(0).u32(4096).u32(0); return b }()), .errno(ENOSYS))
    check("IOCTL", client.call(.ioctl, node: file, { let b = Bytes(); b.u64(fh).u32(0).u32(0x5401).u64(0).u32(0).u32(0); return b }()), .errno(ENOSYS))
    check("POLL", client.call(.poll, node: file, { let b = Bytes(); b.u64(fh).u64(0).u32(0).u32(0); return b }()), .errno(ENOSYS))
    check("NOTIFY_REPLY", client.call(.notifyReply, node: file), .errno(ENOSYS))
    check("SETUPMAPPING", client.setupMapping(file, fh: fh, fileOffset: 0, length: 1 << 21, flags: 1, windowOffset: 0), .errno(ENOSYS))
    check("REMOVEMAPPING", client.removeMapping(file, [(0, 1 << 21)]), .errno(ENOSYS))
    check("INTERRUPT", client.call(.interrupt, node: 0, { let b = Bytes(); b.u64(12345); return b }()), .noReply)
    check("SYNCFS", client.call(.syncfs, node: root, { let b = Bytes(); b.u64(0); return b }()), .ok)
    check("RELEASE file", client.release(file, fh: fh), .ok)
    check("RELEASE sparse", client.release(sparse, fh: sfh), .ok)
    check("RELEASE bad handle", client.release(file, fh: 77_777), .okOr([EBADF]))
    check("FORGET", client.forget(link, 1), .noReply)
    let batch = Bytes(); batch.u32(3).u32(0).u64(fifo).u64(1).u64(sparse).u64(1).u64(999_999).u64(1)
    check("BATCH_FORGET", client.call(.batchForget, node: 0, batch), .noReply)

    // Across the mount point inside the share.
    let mnt = lookup(root, "mnt")
    check("GETATTR mnt", client.getattr(mnt), .ok)
    // fuse_attr.flags of the entry: FUSE_ATTR_SUBMOUNT where serve marks
    // mount points (not in `plain`, --no-announce-submounts).
    let marked = check("LOOKUP mnt again", client.lookup(root, "mnt"), .ok).body.dropFirst(40 + 84).first.map { $0 & 1 != 0 }
    if marked != (variant != "plain") {
        unexpected += 1
        logLine("vfsvm-fuse-sweep: UNEXPECTED LOOKUP mnt: FUSE_ATTR_SUBMOUNT \(String(describing: marked))")
    }
    let inner = check("CREATE on the submount", client.create(mnt, "tmpfile-inner"), .ok)
    check("WRITE on the submount", client.write(inner.nodeID, fh: inner.createHandle, offset: 0, Array("tmpfs".utf8)), .ok)
    check("READ on the submount", client.read(inner.nodeID, fh: inner.createHandle, offset: 0, size: 4096), .ok)
    check("FSYNC on the submount", client.call(.fsync, node: inner.nodeID, { let b = Bytes(); b.u64(inner.createHandle).u32(0).u32(0); return b }()), .ok)
    xattrs("submount file", inner.nodeID, name: "user.sweep", setExpect: .ok)
    check("COPY_FILE_RANGE across mounts", client.call(.copyFileRange, node: inner.nodeID, {
        let b = Bytes(); b.u64(inner.createHandle).u64(0).u64(copyNode).u64(copyFH).u64(0).u64(5).u64(0); return b
    }()), .okOr([EXDEV]))
    check("RENAME across mounts", client.rename(mnt, "tmpfile-inner", root, "escaped"), .errno(EXDEV))
    let cross = Bytes(); cross.u64(inner.nodeID).name("crosslink")
    check("LINK across mounts", client.call(.link, node: root, cross), .errno(EXDEV))
    check("STATFS of the submount", client.call(.statfs, node: mnt), .ok)
    let mfh = check("OPENDIR mnt", client.opendir(mnt), .ok).openHandle
    check("READDIRPLUS mnt", client.readdir(mnt, fh: mfh, offset: 0, plus: true), .ok)
    check("RELEASEDIR mnt", client.release(mnt, fh: mfh, dir: true), .ok)
    check("RELEASE on the submount", client.release(inner.nodeID, fh: inner.createHandle), .ok)
    // Forgotten, then found again (by its file handle where there is one).
    check("FORGET the submount's file", client.forget(inner.nodeID, 1), .noReply)
    let again2 = lookup(mnt, "tmpfile-inner")
    check("GETATTR the submount's file again", client.getattr(again2), .ok)
    check("UNLINK on the submount", client.unlink(mnt, "tmpfile-inner"), .ok)

    // A guest that reboots: DESTROY, then a new session.
    check("DESTROY", client.call(.destroy, node: 0), .ok)
    check("LOOKUP after DESTROY", client.lookup(root, "file"), .errno(EIO))
    initSession("INIT after DESTROY")
    let again = lookup(root, "file")
    check("GETATTR after the new INIT", client.getattr(again), .ok)
    let afh = check("OPEN after the new INIT", client.open(again, flags: UInt32(O_RDONLY)), .ok).openHandle
    check("READ after the new INIT", client.read(again, fh: afh, offset: 0, size: 4096), .ok)
    check("DESTROY with a file open", client.call(.destroy, node: 0), .ok)
    initSession("INIT after the second DESTROY")
}

/// A read-only share: what reads runs as on a writable one, every write is
/// EROFS (most refused before any host call, the rest by the read-only
/// mount).
@Sendable func sweepReadOnly() {
    initSession("INIT")
    let file = lookup(root, "file"), dir = lookup(root, "dir"), link = lookup(root, "link"), sparse = lookup(root, "sparse")
    let fifo = lookup(root, "fifo")
    check("GETATTR file", client.getattr(file), .ok)
    let r = Bytes(); r.u32(UInt32(R_OK)).u32(0)
    // EPERM, not success: a read-only share drops CAP_SETUID/CAP_SETGID,
    // and ACCESS runs under the caller's credentials (FSCredentials), whose
    // setgroups(0) for a server with supplementary groups needs CAP_SETGID.
    // A Linux guest never sends ACCESS on virtio-fs (default_permissions);
    // the call is made all the same, which is what this sweep is about.
    check("ACCESS R_OK", client.call(.access, node: file, r), .okOr([EPERM]))
    let w = Bytes(); w.u32(UInt32(W_OK)).u32(0)
    check("ACCESS W_OK", client.call(.access, node: file, w), .errno(EROFS))
    check("STATFS", client.call(.statfs, node: root), .ok)
    check("READLINK", client.call(.readlink, node: link), .ok)
    let fh = check("OPEN O_RDONLY", client.open(file, flags: UInt32(O_RDONLY)), .ok).openHandle
    check("OPEN O_RDWR", client.open(file, flags: UInt32(O_RDWR)), .errno(EROFS))
    check("OPEN O_RDONLY|O_TRUNC", client.open(file, flags: UInt32(O_RDONLY | O_TRUNC)), .errno(EROFS))
    check("CREATE", client.create(root, "new"), .errno(EROFS))
    check("READ", client.read(file, fh: fh, offset: 0, size: 65536), .ok)
    check("WRITE on a read-only handle", client.write(file, fh: fh, offset: 0, [1]), .errno(EROFS))
    let sfh = check("OPEN sparse", client.open(sparse, flags: UInt32(O_RDONLY)), .ok).openHandle
    lseek(sparse, fh: sfh, offset: 0, whence: seekData, "SEEK_DATA", .ok)
    lseek(sparse, fh: sfh, offset: 0, whence: seekHole, "SEEK_HOLE", .ok)
    fallocate(file, fh: fh, offset: 0, length: 4096, mode: 0, "", .errno(EROFS))
    let fsync = Bytes(); fsync.u64(fh).u32(0).u32(0)
    check("FSYNC", client.call(.fsync, node: file, fsync), .ok)
    let flush = Bytes(); flush.u64(fh).u32(0).u32(0).u64(1)
    check("FLUSH", client.call(.flush, node: file, flush), .ok)
    xattrs("file", file, name: "user.sweep", setExpect: .errno(EROFS))
    check("GETXATTR of the share's own", client.call(.getxattr, node: file, { let b = Bytes(); b.u32(64).u32(0).name("user.sweep"); return b }()), .ok)
    xattrs("fifo", fifo, name: "trusted.sweep", setExpect: .errno(EROFS))
    check("GETLK", client.lk(.getlk, node: file, fh: fh, owner: 1, start: 0, end: 10, type: UInt32(F_RDLCK)), .ok)
    check("SETLK read lock", client.lk(.setlk, node: file, fh: fh, owner: 1, start: 0, end: 10, type: UInt32(F_RDLCK)), .ok)
    check("SETLK unlock", client.lk(.setlk, node: file, fh: fh, owner: 1, start: 0, end: 10, type: UInt32(F_UNLCK)), .ok)
    check("SETLK flock shared", client.lk(.setlk, node: file, fh: fh, owner: 1, start: 0, end: 0, type: UInt32(F_RDLCK), flock: true), .ok)
    setattr("mode", file, valid: FATTR_MODE, mode: 0o600, .errno(EROFS))
    setattr("ATIME_NOW", file, valid: FATTR_ATIME | FATTR_ATIME_NOW, .errno(EROFS))
    check("MKDIR", client.mkdir(root, "x"), .errno(EROFS))
    let mk = Bytes(); mk.u32(UInt32(sIFIFO) | 0o644).u32(0).u32(0).u32(0).name("f")
    check("MKNOD", client.call(.mknod, node: root, mk), .errno(EROFS))
    let sym = Bytes(); sym.name("s").name("file")
    check("SYMLINK", client.call(.symlink, node: root, sym), .errno(EROFS))
    let hard = Bytes(); hard.u64(file).name("h")
    check("LINK", client.call(.link, node: root, hard), .errno(EROFS))
    check("UNLINK", client.unlink(root, "file"), .errno(EROFS))
    check("RMDIR", client.rmdir(root, "dir"), .errno(EROFS))
    check("RENAME", client.rename(root, "file", root, "moved"), .errno(EROFS))
    check("RENAME2 EXCHANGE", client.rename(root, "file", root, "sparse", flags: renameExchange), .errno(EROFS))
    let tmp = Bytes(); tmp.u32(UInt32(O_RDWR)).u32(0o600).u32(0).u32(0)
    check("TMPFILE", client.call(.tmpfile, node: dir, tmp), .errno(EROFS))
    let cfr = Bytes(); cfr.u64(fh).u64(0).u64(sparse).u64(sfh).u64(0).u64(5).u64(0)
    check("COPY_FILE_RANGE", client.call(.copyFileRange, node: file, cfr), .errno(EROFS))
    let dfh = check("OPENDIR", client.opendir(root), .ok).openHandle
    check("READDIRPLUS", client.readdir(root, fh: dfh, offset: 0, plus: true), .ok)
    check("READDIR", client.readdir(root, fh: dfh, offset: 0), .ok)
    check("FSYNCDIR", client.call(.fsyncdir, node: root, { let b = Bytes(); b.u64(dfh).u32(0).u32(0); return b }()), .ok)
    check("RELEASEDIR", client.release(root, fh: dfh, dir: true), .ok)
    check("SYNCFS", client.call(.syncfs, node: root, { let b = Bytes(); b.u64(0); return b }()), .okOr([EROFS]))
    check("RELEASE", client.release(file, fh: fh, releaseFlags: 1 << 1, owner: 1), .ok)
    check("RELEASE sparse", client.release(sparse, fh: sfh), .ok)
    check("FORGET", client.forget(link, 1), .noReply)
    check("DESTROY", client.call(.destroy, node: 0), .ok)
    initSession("INIT after the second DESTROY")
}

// The requests run on a thread started after the filter (as the virtio-fs
// queue threads are), which also covers thread creation and exit.
do {
    let thread = try OSThread(name: "vfsvm-sweep") { readOnlyVariant ? sweepReadOnly() : sweep() }
    thread.join()
} catch { fail("cannot start a thread: \(error)") }
if unexpected > 0 { fail("\(unexpected) of \(requests) requests answered unexpectedly") }
logLine("vfsvm-fuse-sweep: \(requests) requests, every one answered as expected")
exit(0)
