// vfsvm-fuse-sweep: the requests on a read-only share (see main.swift).
import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmMemory
import VfsvmSys

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
