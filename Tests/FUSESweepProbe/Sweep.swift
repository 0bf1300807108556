// vfsvm-fuse-sweep: every request, on a writable share (see main.swift).
import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmSys

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
    // An INTERRUPT for a request not waiting here: no reply (review4).
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
    // mount points (`options`, --announce-submounts; off by default).
    let marked = check("LOOKUP mnt again", client.lookup(root, "mnt"), .ok).body.dropFirst(40 + 84).first.map { $0 & 1 != 0 }
    if marked != (variant == "options") {
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
