import Glibc
import Synchronization
import VfsvmSys
import VfsvmMemory

/// FUSE_* flags of INIT (linux/fuse.h), low 32 bits in `flags`, high in `flags2`.
public enum FUSEInitFlag {
    public static let asyncRead: UInt64 = 1 << 0
    public static let posixLocks: UInt64 = 1 << 1
    public static let atomicOTrunc: UInt64 = 1 << 3
    public static let exportSupport: UInt64 = 1 << 4
    public static let bigWrites: UInt64 = 1 << 5
    public static let dontMask: UInt64 = 1 << 6
    public static let flockLocks: UInt64 = 1 << 10
    public static let autoInvalData: UInt64 = 1 << 12
    public static let doReaddirplus: UInt64 = 1 << 13
    public static let readdirplusAuto: UInt64 = 1 << 14
    public static let asyncDIO: UInt64 = 1 << 15
    public static let writebackCache: UInt64 = 1 << 16
    public static let parallelDirops: UInt64 = 1 << 18
    public static let handleKillpriv: UInt64 = 1 << 19
    public static let maxPages: UInt64 = 1 << 22
    public static let cacheSymlinks: UInt64 = 1 << 23
    public static let handleKillprivV2: UInt64 = 1 << 28
    public static let setxattrExt: UInt64 = 1 << 29
    public static let initExt: UInt64 = 1 << 30
}

/// Server-side settings.
public struct FUSEServerOptions: Sendable, Equatable {
    /// Largest WRITE payload accepted (max_write in INIT); 1 MiB by default.
    public var maxWrite: UInt32 = 1 << 20
    /// Ask the kernel to use its writeback cache (FUSE_WRITEBACK_CACHE).
    public var writeback = false
    /// Refuse every mutating request with EROFS.
    public var readOnly = false
    /// Offer POSIX (fcntl) locks to the client (FUSE_POSIX_LOCKS).
    public var posixLocks = true
    /// Offer BSD (flock) locks to the client (FUSE_FLOCK_LOCKS).
    public var flockLocks = true
    /// Both kinds of lock on or off.
    public var locks: Bool { posixLocks || flockLocks }
    public init(maxWrite: UInt32 = 1 << 20, writeback: Bool = false, readOnly: Bool = false, locks: Bool = true) {
        self.init(maxWrite: maxWrite, writeback: writeback, readOnly: readOnly, posixLocks: locks, flockLocks: locks)
    }
    public init(maxWrite: UInt32 = 1 << 20, writeback: Bool = false, readOnly: Bool = false, posixLocks: Bool, flockLocks: Bool) {
        self.maxWrite = maxWrite; self.writeback = writeback; self.readOnly = readOnly
        self.posixLocks = posixLocks; self.flockLocks = flockLocks
    }
}

/// Our protocol version (linux/fuse.h 7.38) and the oldest minor accepted.
public enum FUSEProtocol {
    public static let major: UInt32 = 7
    public static let minor: UInt32 = 38
    public static let oldestMinor: UInt32 = 27
    public static let maxNameLength = 255
}

/// Serves FUSE requests against a `FileSystem`: parses each request
/// (bounds-checked against the bytes received), dispatches it and writes
/// the reply. Thread-safe: requests may be handled concurrently.
/// Anything that answers FUSE requests: bytes in, reply bytes out (0 when
/// the request has no reply, e.g. FORGET). `FUSEServer` is the real one;
/// `FUSETracer` wraps one and logs every request.
public protocol FUSERequestHandler: Sendable {
    func handle(request: some ScatterGatherList, reply: some ScatterGatherList) -> Int
}

public final class FUSEServer: FUSERequestHandler {
    public let fileSystem: any FileSystem
    public let options: FUSEServerOptions
    private let session = Mutex<FUSESession?>(nil)

    public init(fileSystem: any FileSystem, options: FUSEServerOptions) {
        self.fileSystem = fileSystem
        self.options = options
    }

    /// The settled session, nil before INIT / after DESTROY.
    public var currentSession: FUSESession? { session.withLock { $0 } }

    /// Handles one request. `request` holds fuse_in_header + op struct +
    /// payload (possibly scattered); the reply (fuse_out_header + body) is
    /// written into `reply` from offset 0. Returns the reply length, 0 when
    /// the opcode has no reply (FORGET, BATCH_FORGET, INTERRUPT) or when
    /// `reply` cannot hold even a fuse_out_header.
    ///
    /// The request is `in.len` bytes long: `in.len` below the header size or
    /// above `request.byteCount` is malformed (EINVAL; with a short header
    /// the reply's `unique` is whatever could be read, else 0). A reply
    /// body that does not fit `reply` becomes an EIO reply (ERANGE for
    /// xattr values, as the kernel expects there).
    public func handle(request: some ScatterGatherList, reply: some ScatterGatherList) -> Int {
        // Header.
        var headerBytes = [UInt8](repeating: 0, count: FUSEWireSize.inHeader)
        let got = headerBytes.withUnsafeMutableBytes { request.copy(from: 0, into: $0) }
        var h = WireReader(headerBytes, what: "header")
        // These reads cannot fail: headerBytes is exactly 40 bytes.
        let len = (try? h.u32()) ?? 0
        let opcodeRaw = (try? h.u32()) ?? 0
        let unique = got >= 16 ? ((try? h.u64()) ?? 0) : 0
        if got < FUSEWireSize.inHeader || Int(len) < FUSEWireSize.inHeader || Int(len) > request.byteCount {
            return sendError(reply: reply, unique: unique, .EINVAL)
        }
        let nodeID = (try? h.u64()) ?? 0
        let uid = (try? h.u32()) ?? 0
        let gid = (try? h.u32()) ?? 0
        let pid = (try? h.u32()) ?? 0
        let ctx = FUSERequestContext(unique: unique, nodeID: nodeID, uid: uid, gid: gid, pid: pid)
        let length = Int(len)

        guard let opcode = FUSEOpcode(rawValue: opcodeRaw) else {
            return sendError(reply: reply, unique: unique, .ENOSYS)
        }
        // Requests without a reply.
        switch opcode {
        case .forget, .batchForget, .interrupt:
            if currentSession != nil { noReply(opcode, ctx: ctx, request: request, length: length) }
            return 0
        default: break
        }
        if opcode != .`init`, currentSession == nil {
            return sendError(reply: reply, unique: unique, .EIO)
        }
        do throws(FUSEErrno) {
            let body = try dispatch(opcode, ctx: ctx, request: request, length: length, reply: reply)
            switch body {
            case let .bytes(b):
                return sendOK(reply: reply, unique: unique, body: b)
            case let .written(count):
                // Data already at reply[16...]; write the header.
                return finish(reply: reply, unique: unique, error: 0, bodyLength: count)
            }
        } catch {
            return sendError(reply: reply, unique: unique, error.errno)
        }
    }

    // MARK: - Replies

    private enum Body { case bytes([UInt8]), written(Int) }

    private func header(unique: UInt64, error: Int32, totalLength: Int) -> [UInt8] {
        var w = WireWriter(capacity: 16)
        w.u32(UInt32(totalLength)); w.i32(error); w.u64(unique)
        return w.bytes
    }

    /// Largest READ served in one reply (16 MiB; kernels ask for ≤ 1 MiB).
    public static let maxReadSize = 16 << 20

    private func finish(reply: some ScatterGatherList, unique: UInt64, error: Int32, bodyLength: Int) -> Int {
        let total = FUSEWireSize.outHeader + bodyLength
        guard total <= reply.byteCount, total <= Int(UInt32.max) else { return sendError(reply: reply, unique: unique, .EIO) }
        let put = header(unique: unique, error: error, totalLength: total).withUnsafeBytes { reply.copy($0, to: 0) }
        return put == FUSEWireSize.outHeader ? total : 0
    }

    private func sendOK(reply: some ScatterGatherList, unique: UInt64, body: [UInt8]) -> Int {
        let total = FUSEWireSize.outHeader + body.count
        guard total <= reply.byteCount, total <= Int(UInt32.max) else { return sendError(reply: reply, unique: unique, .EIO) }
        var out = header(unique: unique, error: 0, totalLength: total)
        out.append(contentsOf: body)
        _ = out.withUnsafeBytes { reply.copy($0, to: 0) }
        return total
    }

    private func sendError(reply: some ScatterGatherList, unique: UInt64, _ errno: Errno) -> Int {
        guard reply.byteCount >= FUSEWireSize.outHeader else { return 0 }
        let out = header(unique: unique, error: -errno.rawValue, totalLength: FUSEWireSize.outHeader)
        _ = out.withUnsafeBytes { reply.copy($0, to: 0) }
        return FUSEWireSize.outHeader
    }

    /// Answers `request` with just an error, without running it: for a
    /// transport that cannot take the request now (too many waiting lock
    /// requests). Returns the reply length (0 if `reply` is too small).
    public static func refuse(_ request: some ScatterGatherList, with errno: Errno, reply: some ScatterGatherList) -> Int {
        guard reply.byteCount >= FUSEWireSize.outHeader,
              let h = try? request.bytes(at: 8, count: 8) else { return 0 }
        var r = WireReader(h, what: "unique")
        let unique = (try? r.u64()) ?? 0
        var w = WireWriter(capacity: 16)
        w.u32(UInt32(FUSEWireSize.outHeader)); w.i32(-errno.rawValue); w.u64(unique)
        _ = w.bytes.withUnsafeBytes { reply.copy($0, to: 0) }
        return FUSEWireSize.outHeader
    }

    // MARK: - Parsing helpers

    /// The request bytes after the header (at most `length`, and at most
    /// `limit`): used by every opcode except WRITE, whose payload is left in
    /// place. No legitimate body is longer than `maxBodySize` (SETXATTR:
    /// 64 KiB value + name; SYMLINK: two names of at most 4 KiB), so a
    /// hostile `len` (up to 4 GiB of aliased descriptors) cannot make the
    /// host allocate more.
    static let maxBodySize = 128 << 10

    private func bodyReader(_ request: some ScatterGatherList, length: Int, what: String, limit: Int = maxBodySize) -> WireReader {
        let count = min(length - FUSEWireSize.inHeader, limit, Self.maxBodySize)
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { request.copy(from: FUSEWireSize.inHeader, into: $0) }
        return WireReader(Array(bytes.prefix(got)), what: what)
    }

    /// A name for create/unlink/rename-like operations: no '/', not empty,
    /// at most 255 bytes, not "." or "..".
    private func checkName(_ name: [UInt8], allowDots: Bool = false) throws(FUSEErrno) {
        if name.isEmpty { throw FUSEErrno(.EINVAL, "FUSE: empty name") }
        if name.count > FUSEProtocol.maxNameLength { throw FUSEErrno(.ENAMETOOLONG, "FUSE: name longer than 255 bytes") }
        if name.contains(UInt8(ascii: "/")) { throw FUSEErrno(.EINVAL, "FUSE: name contains '/'") }
        if !allowDots, name == [0x2e] || name == [0x2e, 0x2e] { throw FUSEErrno(.EINVAL, "FUSE: name is . or ..") }
    }

    private func readOnlyCheck(_ what: String) throws(FUSEErrno) {
        if options.readOnly { throw FUSEErrno(.EROFS, "read-only share") }
    }

    private func writesAccess(_ flags: UInt32) -> Bool {
        let acc = flags & 3
        return acc == 1 || acc == 2 || flags & 0o1000 != 0  // O_WRONLY, O_RDWR, O_TRUNC
    }

    // MARK: - No-reply opcodes

    private func noReply(_ opcode: FUSEOpcode, ctx: FUSERequestContext, request: some ScatterGatherList, length: Int) {
        switch opcode {
        case .forget:
            var r = bodyReader(request, length: length, what: "FORGET")
            if let n = try? r.u64() { fileSystem.forget(nodeID: ctx.nodeID, count: n) }
        case .batchForget:
            var r = bodyReader(request, length: length, what: "BATCH_FORGET")
            guard let count = try? r.u32(), (try? r.u32()) != nil else { return }
            // Never trust `count`: stop at the end of the request.
            var left = count
            while left > 0, r.remaining >= 16 {
                guard let node = try? r.u64(), let n = try? r.u64() else { break }
                fileSystem.forget(nodeID: node, count: n)
                left -= 1
            }
        default:
            // INTERRUPT: requests run to completion synchronously; there is
            // nothing in flight to interrupt, and the kernel expects no reply.
            break
        }
    }

    // MARK: - Dispatch

    private func dispatch(_ op: FUSEOpcode, ctx: FUSERequestContext, request: some ScatterGatherList, length: Int, reply: some ScatterGatherList) throws(FUSEErrno) -> Body {
        let fs = fileSystem
        let node = ctx.nodeID
        var w = WireWriter()
        switch op {
        case .`init`:
            var r = bodyReader(request, length: length, what: "INIT")
            return .bytes(try negotiate(&r))

        case .destroy:
            fs.destroy()
            session.withLock { $0 = nil }
            return .bytes([])

        case .lookup:
            var r = bodyReader(request, length: length, what: "LOOKUP")
            let name = try r.cString()
            try checkName(name, allowDots: true)
            try fs.lookup(ctx, parent: node, name: name).encode(into: &w)

        case .getattr:
            var r = bodyReader(request, length: length, what: "GETATTR")
            let flags = try r.u32(); try r.skip(4)
            let fh = try r.u64()
            let (attr, timeout) = try fs.getattr(ctx, node: node, handle: flags & 1 != 0 ? fh : nil)
            encodeAttrOut(attr, timeout, &w)

        case .setattr:
            try readOnlyCheck("SETATTR")
            var r = bodyReader(request, length: length, what: "SETATTR")
            let valid = try r.u32(); try r.skip(4)
            let fh = try r.u64(), size = try r.u64(), lockOwner = try r.u64()
            let atime = try r.u64(), mtime = try r.u64()
            _ = try r.u64()  // ctime
            let atimens = try r.u32(), mtimens = try r.u32()
            _ = try r.u32()  // ctimensec
            let mode = try r.u32(); try r.skip(4)
            let uid = try r.u32(), gid = try r.u32()
            var c = FUSESetAttributes()
            if valid & (1 << 6) != 0 { c.handle = fh }
            if valid & (1 << 0) != 0 { c.mode = mode }
            if valid & (1 << 1) != 0 { c.uid = uid }
            if valid & (1 << 2) != 0 { c.gid = gid }
            if valid & (1 << 3) != 0 { c.size = size }
            if valid & (1 << 9) != 0 { c.lockOwner = lockOwner }
            if valid & (1 << 7) != 0 { c.atime = .now } else if valid & (1 << 4) != 0 { c.atime = try timeChange(atime, atimens) }
            if valid & (1 << 8) != 0 { c.mtime = .now } else if valid & (1 << 5) != 0 { c.mtime = try timeChange(mtime, mtimens) }
            c.ctimeRequested = valid & (1 << 10) != 0
            c.killSUIDGID = valid & (1 << 11) != 0
            let (attr, timeout) = try fs.setattr(ctx, node: node, c)
            encodeAttrOut(attr, timeout, &w)

        case .readlink:
            let target = try fs.readlink(ctx, node: node)
            return .bytes(target)

        case .symlink:
            try readOnlyCheck("SYMLINK")
            var r = bodyReader(request, length: length, what: "SYMLINK")
            let name = try r.cString()
            let target = try r.cString()
            try checkName(name)
            if target.isEmpty { throw FUSEErrno(.ENOENT, "FUSE SYMLINK: empty target") }
            if target.count >= 4096 { throw FUSEErrno(.ENAMETOOLONG, "FUSE SYMLINK: target too long") }
            try fs.symlink(ctx, parent: node, name: name, target: target).encode(into: &w)

        case .mknod:
            try readOnlyCheck("MKNOD")
            var r = bodyReader(request, length: length, what: "MKNOD")
            let mode = try r.u32(), rdev = try r.u32(), umask = try r.u32(); try r.skip(4)
            let name = try r.cString()
            try checkName(name)
            try fs.mknod(ctx, parent: node, name: name, mode: mode, rdev: rdev, umask: umask).encode(into: &w)

        case .mkdir:
            try readOnlyCheck("MKDIR")
            var r = bodyReader(request, length: length, what: "MKDIR")
            let mode = try r.u32(), umask = try r.u32()
            let name = try r.cString()
            try checkName(name)
            try fs.mkdir(ctx, parent: node, name: name, mode: mode, umask: umask).encode(into: &w)

        case .unlink, .rmdir:
            try readOnlyCheck(op == .unlink ? "UNLINK" : "RMDIR")
            var r = bodyReader(request, length: length, what: op == .unlink ? "UNLINK" : "RMDIR")
            let name = try r.cString()
            try checkName(name)
            if op == .unlink { try fs.unlink(ctx, parent: node, name: name) } else { try fs.rmdir(ctx, parent: node, name: name) }

        case .rename, .rename2:
            try readOnlyCheck("RENAME")
            var r = bodyReader(request, length: length, what: "RENAME")
            let newDir = try r.u64()
            var flags: UInt32 = 0
            if op == .rename2 { flags = try r.u32(); try r.skip(4) }
            let old = try r.cString(), new = try r.cString()
            try checkName(old); try checkName(new)
            try fs.rename(ctx, parent: node, name: old, newParent: newDir, newName: new, flags: flags)

        case .link:
            try readOnlyCheck("LINK")
            var r = bodyReader(request, length: length, what: "LINK")
            let oldNode = try r.u64()
            let name = try r.cString()
            try checkName(name)
            try fs.link(ctx, node: oldNode, newParent: node, newName: name).encode(into: &w)

        case .open:
            var r = bodyReader(request, length: length, what: "OPEN")
            let flags = try r.u32(), openFlags = try r.u32()
            if writesAccess(flags) { try readOnlyCheck("OPEN for writing") }
            try fs.open(ctx, node: node, flags: flags, openFlags: openFlags).encode(into: &w)

        case .create, .tmpfile:
            try readOnlyCheck(op == .create ? "CREATE" : "TMPFILE")
            var r = bodyReader(request, length: length, what: "CREATE")
            let flags = try r.u32(), mode = try r.u32(), umask = try r.u32()
            _ = try r.u32()  // open_flags
            let entry: FUSEEntry, open: FUSEOpenReply
            if op == .create {
                let name = try r.cString()
                try checkName(name)
                (entry, open) = try fs.create(ctx, parent: node, name: name, mode: mode, umask: umask, flags: flags)
            } else {
                (entry, open) = try fs.tmpfile(ctx, parent: node, mode: mode, umask: umask, flags: flags)
            }
            entry.encode(into: &w)
            open.encode(into: &w)

        case .read:
            var r = bodyReader(request, length: length, what: "READ", limit: 40)
            let fh = try r.u64(), offset = try r.u64(), size = try r.u32()
            guard offset <= UInt64(Int64.max) - UInt64(size) else { throw FUSEErrno(.EINVAL, "FUSE READ: offset + size overflows") }
            // Never more than the reply can hold: the kernel sizes the reply
            // buffer to `size`, so a smaller buffer only shortens the read.
            let room = max(reply.byteCount - FUSEWireSize.outHeader, 0)
            // A kernel never asks for more than max_pages pages (≤ 1 MiB);
            // the cap keeps a hostile size + a huge reply chain from making
            // a reply whose length does not fit fuse_out_header.len.
            let count = min(Int(size), room, FUSEServer.maxReadSize)
            let n = try fs.read(ctx, node: node, handle: fh, offset: offset, size: count, into: reply, at: FUSEWireSize.outHeader)
            return .written(min(n, count))

        case .write:
            try readOnlyCheck("WRITE")
            var r = bodyReader(request, length: length, what: "WRITE", limit: 40)
            let fh = try r.u64(), offset = try r.u64(), size = try r.u32(), writeFlags = try r.u32()
            _ = try r.u64(); _ = try r.u32(); try r.skip(4)
            let payloadStart = FUSEWireSize.inHeader + 40
            guard Int(size) <= length - payloadStart else {
                throw FUSEErrno(.EINVAL, "WRITE: size exceeds the payload")
            }
            guard size <= options.maxWrite else { throw FUSEErrno(.EINVAL, "FUSE WRITE: size above max_write") }
            guard offset <= UInt64(Int64.max) - UInt64(size) else { throw FUSEErrno(.EINVAL, "FUSE WRITE: offset + size overflows") }
            let n = try fs.write(ctx, node: node, handle: fh, offset: offset, size: Int(size), writeFlags: writeFlags, from: request, at: payloadStart)
            w.u32(UInt32(clamping: min(n, Int(size)))); w.u32(0)

        case .statfs:
            let s = try fs.statfs(ctx, node: node)
            w.u64(s.blocks); w.u64(s.bfree); w.u64(s.bavail); w.u64(s.files); w.u64(s.ffree)
            w.u32(s.bsize); w.u32(s.namelen); w.u32(s.frsize); w.u32(0); w.zeros(24)

        case .release, .releasedir:
            var r = bodyReader(request, length: length, what: "RELEASE")
            let fh = try r.u64(), flags = try r.u32(), releaseFlags = try r.u32(), owner = try r.u64()
            if op == .release {
                try fs.release(ctx, node: node, handle: fh, flags: flags, releaseFlags: releaseFlags, lockOwner: owner)
            } else {
                try fs.releasedir(ctx, node: node, handle: fh)
            }

        case .fsync, .fsyncdir:
            var r = bodyReader(request, length: length, what: "FSYNC")
            let fh = try r.u64(), flags = try r.u32()
            if op == .fsync { try fs.fsync(ctx, node: node, handle: fh, dataOnly: flags & 1 != 0) } else { try fs.fsyncdir(ctx, node: node, handle: fh, dataOnly: flags & 1 != 0) }

        case .setxattr:
            try readOnlyCheck("SETXATTR")
            var r = bodyReader(request, length: length, what: "SETXATTR")
            let size = try r.u32(), flags = try r.u32()
            if currentSession?.has(FUSEInitFlag.setxattrExt) == true { _ = try r.u32(); try r.skip(4) }
            let name = try r.cString()
            try checkXattrName(name)
            guard size <= 65536 else { throw FUSEErrno(Errno(rawValue: E2BIG), "FUSE SETXATTR: value above 64 KiB") }
            let value = try r.take(Int(size))
            try fs.setxattr(ctx, node: node, name: name, value: value, flags: flags)

        case .getxattr, .listxattr:
            var r = bodyReader(request, length: length, what: op == .getxattr ? "GETXATTR" : "LISTXATTR")
            let size = try r.u32(); try r.skip(4)
            let result: FUSEXattrReply
            if op == .getxattr {
                let name = try r.cString()
                try checkXattrName(name)
                result = try fs.getxattr(ctx, node: node, name: name, size: Int(min(size, 65536)))
            } else {
                result = try fs.listxattr(ctx, node: node, size: Int(min(size, 65536)))
            }
            switch result {
            case let .size(n): w.u32(UInt32(clamping: n)); w.u32(0)
            case let .data(d):
                guard d.count <= Int(size) else { throw FUSEErrno(.ERANGE, "FUSE xattr: value larger than the request's size") }
                guard d.count + FUSEWireSize.outHeader <= reply.byteCount else { throw FUSEErrno(.ERANGE, "FUSE xattr: reply buffer too small") }
                return .bytes(d)
            }

        case .removexattr:
            try readOnlyCheck("REMOVEXATTR")
            var r = bodyReader(request, length: length, what: "REMOVEXATTR")
            let name = try r.cString()
            try checkXattrName(name)
            try fs.removexattr(ctx, node: node, name: name)

        case .flush:
            var r = bodyReader(request, length: length, what: "FLUSH")
            let fh = try r.u64(); try r.skip(8)
            let owner = try r.u64()
            try fs.flush(ctx, node: node, handle: fh, lockOwner: owner)

        case .opendir:
            var r = bodyReader(request, length: length, what: "OPENDIR")
            let flags = try r.u32()
            try fs.opendir(ctx, node: node, flags: flags).encode(into: &w)

        case .readdir, .readdirplus:
            var r = bodyReader(request, length: length, what: "READDIR", limit: 40)
            let fh = try r.u64(), offset = try r.u64(), size = try r.u32()
            let limit = min(Int(size), max(reply.byteCount - FUSEWireSize.outHeader, 0), 1 << 20)
            var buffer = FUSEDirectoryBuffer(limit: limit, plus: op == .readdirplus)
            try fs.readdir(ctx, node: node, handle: fh, offset: offset, into: &buffer)
            return .bytes(buffer.writer.bytes)

        case .getlk, .setlk, .setlkw:
            var r = bodyReader(request, length: length, what: "LK")
            let fh = try r.u64(), owner = try r.u64()
            let start = try r.u64(), end = try r.u64(), type = try r.u32(), pid = try r.u32()
            let lkFlags = try r.u32()
            // FUSE_LK_FLOCK (bit 0) marks a flock(2) request.
            guard lkFlags & 1 != 0 ? options.flockLocks : options.posixLocks else {
                throw FUSEErrno(.ENOSYS, "FUSE LK: this kind of lock is off")
            }
            let lock = FUSEFileLock(start: start, end: end, type: type, pid: pid)
            guard start <= end || type == 2 else { throw FUSEErrno(.EINVAL, "FUSE LK: start after end") }
            if op == .getlk {
                let l = try fs.getlk(ctx, node: node, handle: fh, owner: owner, lock: lock)
                w.u64(l.start); w.u64(l.end); w.u32(l.type); w.u32(l.pid)
            } else {
                try fs.setlk(ctx, node: node, handle: fh, owner: owner, lock: lock, wait: op == .setlkw, flock: lkFlags & 1 != 0)
            }

        case .access:
            var r = bodyReader(request, length: length, what: "ACCESS")
            let mask = try r.u32()
            if mask & 2 != 0 { try readOnlyCheck("ACCESS(W_OK)") }
            try fs.access(ctx, node: node, mask: mask)

        case .fallocate:
            try readOnlyCheck("FALLOCATE")
            var r = bodyReader(request, length: length, what: "FALLOCATE")
            let fh = try r.u64(), offset = try r.u64(), len = try r.u64(), mode = try r.u32()
            guard offset <= UInt64(Int64.max), len <= UInt64(Int64.max) else { throw FUSEErrno(.EINVAL, "FUSE FALLOCATE: range") }
            try fs.fallocate(ctx, node: node, handle: fh, offset: offset, length: len, mode: mode)

        case .lseek:
            var r = bodyReader(request, length: length, what: "LSEEK")
            let fh = try r.u64(), offset = try r.u64(), whence = try r.u32()
            guard offset <= UInt64(Int64.max) else { throw FUSEErrno(.EINVAL, "FUSE LSEEK: offset") }
            w.u64(try fs.lseek(ctx, node: node, handle: fh, offset: offset, whence: whence))

        case .copyFileRange:
            try readOnlyCheck("COPY_FILE_RANGE")
            var r = bodyReader(request, length: length, what: "COPY_FILE_RANGE")
            let fhIn = try r.u64(), offIn = try r.u64(), nodeOut = try r.u64(), fhOut = try r.u64()
            let offOut = try r.u64(), len = try r.u64(), flags = try r.u64()
            guard offIn <= UInt64(Int64.max), offOut <= UInt64(Int64.max) else { throw FUSEErrno(.EINVAL, "FUSE COPY_FILE_RANGE: offset") }
            let n = try fs.copyFileRange(ctx, node: node, handleIn: fhIn, offsetIn: offIn, nodeOut: nodeOut, handleOut: fhOut, offsetOut: offOut, length: len, flags: flags)
            w.u32(UInt32(clamping: n)); w.u32(0)

        case .syncfs:
            try fs.syncfs(ctx, node: node)

        case .forget, .batchForget, .interrupt:
            return .bytes([])  // handled before dispatch

        case .bmap, .ioctl, .poll, .notifyReply, .setupMapping, .removeMapping:
            throw FUSEErrno(.ENOSYS, "opcode not supported")
        }
        return .bytes(w.bytes)
    }

    private func checkXattrName(_ name: [UInt8]) throws(FUSEErrno) {
        if name.isEmpty { throw FUSEErrno(.EINVAL, "FUSE xattr: empty name") }
        if name.count > 255 { throw FUSEErrno(.ERANGE, "FUSE xattr: name too long") }
    }

    private func timeChange(_ seconds: UInt64, _ nanoseconds: UInt32) throws(FUSEErrno) -> TimeChange {
        guard nanoseconds < 1_000_000_000 else { throw FUSEErrno(.EINVAL, "FUSE SETATTR: nanoseconds out of range") }
        return .set(seconds: Int64(bitPattern: seconds), nanoseconds: Int64(nanoseconds))
    }

    private func encodeAttrOut(_ attr: FUSEAttributes, _ timeout: FUSETimeout, _ w: inout WireWriter) {
        w.u64(timeout.seconds); w.u32(timeout.nanoseconds); w.u32(0)
        attr.encode(into: &w)
    }

    // MARK: - INIT

    private func negotiate(_ r: inout WireReader) throws(FUSEErrno) -> [UInt8] {
        let major = try r.u32(), minor = try r.u32(), maxReadahead = try r.u32(), flags = try r.u32()
        var w = WireWriter(capacity: 64)
        if major > FUSEProtocol.major {
            // Newer major: answer with ours only; the client may retry with 7.
            w.u32(FUSEProtocol.major); w.u32(FUSEProtocol.minor); w.zeros(56)
            return w.bytes
        }
        if major < FUSEProtocol.major || minor < FUSEProtocol.oldestMinor {
            throw FUSEErrno(.EPROTO, "INIT: unsupported protocol version")
        }
        if currentSession != nil {
            // A new INIT while a session is open: the client rebooted or
            // crashed without DESTROY (a virtio-fs guest's rings are reset
            // but the backend stays connected). Drop the old session as
            // DESTROY would (inodes, handles, locks), then start anew.
            fileSystem.destroy()
            session.withLock { $0 = nil }
        }
        var clientFlags = UInt64(flags)
        if minor >= 36, flags & UInt32(FUSEInitFlag.initExt) != 0, let flags2 = try? r.u32() {
            clientFlags |= UInt64(flags2) << 32
        }
        var ours: UInt64 = FUSEInitFlag.asyncRead | FUSEInitFlag.atomicOTrunc | FUSEInitFlag.bigWrites
            | FUSEInitFlag.dontMask | FUSEInitFlag.doReaddirplus | FUSEInitFlag.readdirplusAuto
            | FUSEInitFlag.parallelDirops | FUSEInitFlag.handleKillprivV2 | FUSEInitFlag.maxPages
            | FUSEInitFlag.cacheSymlinks | FUSEInitFlag.setxattrExt | FUSEInitFlag.autoInvalData
            | FUSEInitFlag.asyncDIO
        if options.posixLocks { ours |= FUSEInitFlag.posixLocks }
        if options.flockLocks { ours |= FUSEInitFlag.flockLocks }
        if options.writeback { ours |= FUSEInitFlag.writebackCache }
        ours &= fileSystem.supportedInitFlags
        var negotiated = ours & clientFlags
        if clientFlags & FUSEInitFlag.initExt != 0 { negotiated |= FUSEInitFlag.initExt }
        let agreedMinor = min(minor, FUSEProtocol.minor)
        let maxWrite = max(options.maxWrite, 4096)
        let s = FUSESession(minor: agreedMinor, flags: negotiated, maxWrite: maxWrite)
        fileSystem.initialize(s)
        session.withLock { $0 = s }
        w.u32(FUSEProtocol.major); w.u32(agreedMinor); w.u32(maxReadahead)
        w.u32(UInt32(truncatingIfNeeded: negotiated))
        w.u16(64); w.u16(48)  // max_background, congestion_threshold
        w.u32(maxWrite)
        w.u32(1)  // time_gran: nanoseconds
        w.u16(UInt16(min((UInt64(maxWrite) + 4095) / 4096, 256)))  // max_pages
        w.u16(0)  // map_alignment
        w.u32(UInt32(truncatingIfNeeded: negotiated >> 32))  // flags2
        w.zeros(28)
        return w.bytes
    }
}
