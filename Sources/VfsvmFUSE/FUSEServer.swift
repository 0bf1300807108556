import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmMemory
import VfsvmSys

/// Serves FUSE requests against a `FileSystem`. Each request is decoded
/// once (`FUSERequestDecoder`), then run from that copy; the reply is
/// written into the caller's buffer. Thread-safe: requests may be handled
/// concurrently.
///
/// Requests that wait for a lock (SETLKW) must not hold the thread that
/// reads requests: the unlock they wait for may come behind them. The
/// deferred entry point gives each its own thread, at most
/// `options.maxLockWaiters` per server, counted until the thread ends.
public final class FUSEServer: FUSERequestHandler {
    public let fileSystem: any FileSystem
    public let options: FUSEServerOptions
    /// Logs one line per request when set (`-d`).
    public let tracer: FUSETracer?
    /// The DAX window's mapping table, when the share has a window
    /// (`dax=`): SETUPMAPPING and REMOVEMAPPING are served and INIT offers
    /// FUSE_MAP_ALIGNMENT. Without one both opcodes get ENOSYS.
    public let dax: DAXMappings?
    /// Where OPEN and CREATE register files for FUSE passthrough; nil
    /// (virtio-fs) means passthrough is never offered.
    public let backingFiles: (any FUSEBackingFiles)?
    /// The session, read by every request without a lock: set at INIT,
    /// cleared at DESTROY (see `SessionWords`).
    let session = SessionWords()
    let waiters = Mutex(0)
    /// The deferred requests still waiting, by unique, for INTERRUPT, and
    /// INTERRUPTs that came for requests not (yet) among them.
    let waiting = Mutex(Waits())

    public init(fileSystem: any FileSystem, options: FUSEServerOptions, tracer: FUSETracer? = nil,
                dax: DAXMappings? = nil, backingFiles: (any FUSEBackingFiles)? = nil) {
        self.fileSystem = fileSystem
        self.options = options
        self.tracer = tracer
        self.dax = dax
        self.backingFiles = backingFiles
        if let dax { fileSystem.attachMappings(dax) }
        Interruption.installHandler()
    }

    /// The settled session, nil before INIT / after DESTROY.
    public var currentSession: FUSESession? { session.load() }

    /// Requests waiting for a lock on threads of their own now.
    public var lockWaiters: Int { waiters.withLock { $0 } }

    /// Largest READ served in one reply (16 MiB; kernels ask for ≤ 1 MiB).
    public static let maxReadSize = 16 << 20

    // MARK: - Entry points

    /// Handles one request inline. `request` holds fuse_in_header + op
    /// struct + payload (possibly scattered); `in.len` below the header
    /// size or above `request.byteCount` is malformed (EINVAL; with a short
    /// header the reply's `unique` is whatever could be read, else 0). A
    /// reply body that does not fit `reply` becomes an EIO reply (ERANGE
    /// for xattr values, as the kernel expects there).
    public func handle(request: some ScatterGatherList, reply: some ScatterGatherList) -> Int {
        let s = currentSession
        let r = decoder(s).decode(request)
        return run(r, session: s, payload: request, reply: reply)
    }

    public func handle(request: some ScatterGatherList, reply: some ScatterGatherList,
                       deferral: some FUSEReplyDeferral) -> FUSEHandling {
        switch answer(request, reply) {
        case let .replied(length): return .replied(length)
        case let .waitsForLock(waiter):
            guard deferral.admitsWait() else {
                // The caller has no room for another held request: "too
                // many locks", as past the server's own budget.
                waiters.withLock { $0 -= 1 }
                return .replied(refuse(waiter.request, with: .ENOLCK, reply: reply))
            }
            wait(waiter, late: deferral.deferReply())
            return .deferred
        }
    }

    /// Guest memory's concrete types: the generic `answer` below is
    /// compiled for them here (virtio-fs calls this from another module).
    public func answer(request: GuestBufferList, reply: GuestBufferList) -> FUSEAnswer {
        answer(request, reply)
    }

    /// Replies inline, or admits a request that waits for a lock (ENOLCK
    /// past the budget) for `wait`.
    private func answer(_ request: some ScatterGatherList, _ reply: some ScatterGatherList) -> FUSEAnswer {
        let s = currentSession
        let r = decoder(s).decode(request)
        guard r.waitsForALock, s != nil, lockKindServed(r) else {
            return .replied(run(r, session: s, payload: request, reply: reply))
        }
        guard admitWaiter() else {
            // Too many waiters: "too many locks", never a stalled caller.
            return .replied(refuse(r, with: .ENOLCK, reply: reply))
        }
        return .waitsForLock(FUSELockWaiter(request: r, room: min(reply.byteCount, 4096)))
    }

    /// Answers a decoded request with just `errno`, without running it.
    /// Returns the reply length (0 if `reply` is too small).
    public func refuse(_ request: FUSERequest, with errno: Errno, reply: some ScatterGatherList) -> Int {
        let n = sendError(reply: reply, unique: request.header.unique, errno)
        tracer?.record(request, length: n, error: FUSEErrno(errno, "refused"))
        return n
    }

    /// Answers `request` with just an error, reading only its header: for a
    /// transport that cannot take the request now. Returns the reply length
    /// (0 if `reply` is too small).
    public static func refuse(_ request: some ScatterGatherList, with errno: Errno, reply: some ScatterGatherList) -> Int {
        sendError(reply: reply, unique: FUSERequestDecoder.header(request).unique, errno)
    }

    private func decoder(_ s: FUSESession?) -> FUSERequestDecoder {
        FUSERequestDecoder(setxattrExt: s?.has(FUSEInitFlag.setxattrExt) == true,
                           securityContext: s?.has(FUSEInitFlag.securityContext) == true)
    }

    private func lockKindServed(_ r: FUSERequest) -> Bool {
        guard case let .setlk(_, _, _, flock, _) = r.operation else { return false }
        return flock ? options.flockLocks : options.posixLocks
    }

    func run(_ r: FUSERequest, session s: FUSESession?, payload: some ScatterGatherList, reply: some ScatterGatherList) -> Int {
        let (length, error) = execute(r, session: s, payload: payload, reply: reply)
        tracer?.record(r, length: length, error: error)
        return length
    }

    // MARK: - Execution

    /// Runs `r` and writes its reply; returns the reply length and the
    /// error it carries, if any.
    private func execute(_ r: FUSERequest, session s: FUSESession?, payload: some ScatterGatherList, reply: some ScatterGatherList) -> (Int, FUSEErrno?) {
        let unique = r.header.unique
        guard let opcode = r.opcode else {
            guard case let .malformed(e) = r.operation else { return (sendError(reply: reply, unique: unique, .EINVAL), nil) }
            return (Self.sendError(reply: reply, unique: unique, e.errno), e)
        }
        switch opcode {
        case .forget, .batchForget:
            // No reply, whatever happens.
            if s != nil { forget(r) }
            return (0, nil)
        case .interrupt:
            guard s != nil, case let .interrupt(target) = r.operation else { return (0, nil) }
            return interrupt(target, reply: reply, unique: unique)
        default: break
        }
        do throws(FUSEErrno) {
            if opcode != .`init`, s == nil { throw FUSEErrno(.EIO, "no session: INIT first") }
            if opcode.alwaysWrites { try readOnlyCheck() }
            switch try dispatch(r, session: s, payload: payload, reply: reply) {
            case let .bytes(b): return (sendOK(reply: reply, unique: unique, body: b), nil)
            case let .written(count):
                // Data already at reply[16...]; write the header.
                return (finish(reply: reply, unique: unique, error: 0, bodyLength: count), nil)
            case let .complete(length): return (length, nil)
            }
        } catch {
            return (sendError(reply: reply, unique: unique, error.errno), error)
        }
    }

    /// `written`: the body is in the reply, the header is not;
    /// `complete`: the whole reply is, this long.
    private enum Body { case bytes([UInt8]), written(Int), complete(Int) }

    /// An open reply with the file's backing id when the session does
    /// passthrough and the kernel takes the file; else `open` unchanged.
    /// The kernel's page cache of the FUSE file is then unused (reads and
    /// writes go to the backing file and its cache), so DIRECT_IO and
    /// KEEP_CACHE lose their meaning and are cleared.
    private func passthrough(_ open: FUSEOpenReply, session s: FUSESession?) -> FUSEOpenReply {
        guard let backingFiles, s?.has(FUSEInitFlag.passthrough) == true,
              let file = fileSystem.backingFile(handle: open.handle),
              let id = backingFiles.open(node: file.node, fd: file.fd, handle: open.handle) else { return open }
        var o = open
        let directIOAndKeepCache: UInt32 = 1 << 0 | 1 << 1  // FOPEN_DIRECT_IO, FOPEN_KEEP_CACHE
        o.flags = (o.flags & ~directIOAndKeepCache) | fopenPassthrough
        o.backingID = id
        return o
    }

    /// Extended attributes whose values carry host ids (POSIX ACL entries,
    /// a file capability's root id): with --translate-uid/gid they would
    /// cross the mapping untranslated (a guest could name any host id, or
    /// give a host file capabilities), so they are refused, as if the share
    /// had no ACLs. Judged by the name the host file gets (after
    /// --xattrmap): a map may land another guest name on these, and a name
    /// mapped away from them is harmless.
    static func untranslatedIDs(_ guestName: [UInt8], _ fs: any FileSystem) throws(FUSEErrno) {
        let name = try fs.hostXattrName(guestName)
        switch String(decoding: name, as: UTF8.self) {
        case "system.posix_acl_access", "system.posix_acl_default":
            throw FUSEErrno(.EOPNOTSUPP, "POSIX ACLs name host ids, which --translate-uid/gid would not translate")
        case "security.capability":
            throw FUSEErrno(.EPERM, "file capabilities on a share with --translate-uid/gid")
        default: return
        }
    }

    private func readOnlyCheck() throws(FUSEErrno) {
        if options.readOnly { throw FUSEErrno(.EROFS, "read-only share") }
    }

    private func forget(_ r: FUSERequest) {
        switch r.operation {
        case let .forget(count): fileSystem.forget(nodeID: r.header.nodeID, count: count)
        case let .batchForget(entries):
            for e in entries { fileSystem.forget(nodeID: e.nodeID, count: e.count) }
        default: break
        }
    }

    private func dispatch(_ r: FUSERequest, session s: FUSESession?, payload: some ScatterGatherList, reply: some ScatterGatherList) throws(FUSEErrno) -> Body {
        let ids = options.idTranslation
        var ctx = r.header.context
        // A caller whose ids are forbidden may still look and read; what
        // would make a file with its ids, or check access as it, fails.
        var forbidden = false
        if let ids {
            if let u = ids.uids.host(forGuest: ctx.uid), let g = ids.gids.host(forGuest: ctx.gid) {
                ctx.uid = u; ctx.gid = g
            } else {
                forbidden = true
            }
        }
        func creds() throws(FUSEErrno) {
            if forbidden { throw FUSEErrno(.EPERM, "the caller's uid or gid is forbidden by --translate-uid/--translate-gid") }
        }
        // With --translate-uid/gid a create's label must not name host ids
        // either (security.capability is refused by the decoder).
        func labelCheck(_ label: FUSESecurityContext?) throws(FUSEErrno) {
            if ids != nil, let label { try Self.untranslatedIDs(label.name, fileSystem) }
        }
        func out(_ e: FUSEEntry) -> FUSEEntry { ids?.toGuest(e) ?? e }
        let node = r.header.nodeID
        // Empty until a variable-length reply appends (no allocation for
        // the fixed-layout replies, stored straight into `reply` by `put`,
        // nor for the empty ones).
        var w = WireWriter(capacity: 0)
        switch r.operation {
        case let .malformed(e): throw e
        case .unsupported: throw FUSEErrno(.ENOSYS, "opcode not served")
        case let .`init`(major, minor, maxReadahead, flags):
            return .bytes(try negotiate(major: major, minor: minor, maxReadahead: maxReadahead, clientFlags: flags))
        case .destroy:
            backingFiles?.reset()
            dax?.removeAll()
            fileSystem.destroy()
            session.store(nil)
            return .bytes([])
        case let .setupMapping(handle, fileOffset, length, flags, windowOffset):
            guard let dax else { throw FUSEErrno(.ENOSYS, "SETUPMAPPING: this share has no DAX window") }
            let write = flags & DAXMappings.flagWrite != 0
            if write { try readOnlyCheck() }
            try fileSystem.withMappableFile(ctx, node: node, handle: handle, write: write) { (f: DAXMappings.OpenFile) throws(SystemError) in
                try dax.setup(f, fileOffset: fileOffset, length: length, windowOffset: windowOffset, flags: flags)
            }
        case let .removeMapping(ranges):
            guard let dax else { throw FUSEErrno(.ENOSYS, "REMOVEMAPPING: this share has no DAX window") }
            for r in ranges {
                do { try dax.remove(windowOffset: r.offset, length: r.length) } catch { throw FUSEErrno(error) }
            }
        case let .lookup(name):
            do {
                return put(out(try fileSystem.lookup(ctx, parent: node, name: name)).wire, reply, unique: r.header.unique)
            } catch where error.errno == .ENOENT && options.negativeEntryTimeout != nil {
                // A miss as an entry with node 0: the client keeps the
                // negative dentry for the timeout instead of asking again.
                let t = options.negativeEntryTimeout ?? .zero
                return put(fuse_entry_out(nodeid: 0, generation: 0, entry_valid: t.seconds, attr_valid: 0,
                                          entry_valid_nsec: t.nanoseconds, attr_valid_nsec: 0, attr: fuse_attr()),
                           reply, unique: r.header.unique)
            }
        case .forget, .batchForget, .interrupt: return .bytes([])  // answered in execute
        case let .getattr(handle):
            let (attr, timeout) = try fileSystem.getattr(ctx, node: node, handle: handle)
            return put(attrOut(attr, timeout), reply, unique: r.header.unique)
        case var .setattr(change):
            if let ids {
                let forbid = FUSEErrno(.EPERM, "SETATTR: the new owner is forbidden by --translate-uid/--translate-gid")
                if let uid = change.uid { guard let h = ids.uids.host(forGuest: uid) else { throw forbid }; change.uid = h }
                if let gid = change.gid { guard let h = ids.gids.host(forGuest: gid) else { throw forbid }; change.gid = h }
            }
            let (attr, timeout) = try fileSystem.setattr(ctx, node: node, change)
            return put(attrOut(attr, timeout), reply, unique: r.header.unique)
        case .readlink: return .bytes(try fileSystem.readlink(ctx, node: node))
        case let .symlink(name, target, label):
            try labelCheck(label)
            try creds()
            out(try fileSystem.symlink(ctx, parent: node, name: name, target: target, label: label)).encode(into: &w)
        case let .mknod(name, mode, rdev, umask, label):
            try labelCheck(label)
            try creds()
            out(try fileSystem.mknod(ctx, parent: node, name: name, mode: mode, rdev: rdev, umask: umask, label: label)).encode(into: &w)
        case let .mkdir(name, mode, umask, label):
            try labelCheck(label)
            try creds()
            out(try fileSystem.mkdir(ctx, parent: node, name: name, mode: mode, umask: umask, label: label)).encode(into: &w)
        case let .unlink(name): try fileSystem.unlink(ctx, parent: node, name: name)
        case let .rmdir(name): try fileSystem.rmdir(ctx, parent: node, name: name)
        case let .rename(name, newParent, newName, flags):
            try fileSystem.rename(ctx, parent: node, name: name, newParent: newParent, newName: newName, flags: flags)
        case let .link(oldNode, newName): out(try fileSystem.link(ctx, node: oldNode, newParent: node, newName: newName)).encode(into: &w)
        case let .open(flags, openFlags):
            if writesAccess(flags) { try readOnlyCheck() }
            passthrough(try fileSystem.open(ctx, node: node, flags: flags, openFlags: openFlags), session: s).encode(into: &w)
        case let .create(name, flags, mode, umask, openFlags, label):
            try labelCheck(label)
            try creds()
            let (entry, open) = try fileSystem.create(ctx, parent: node, name: name, mode: mode, umask: umask, flags: flags, openFlags: openFlags,
                                              label: label)
            out(entry).encode(into: &w)
            passthrough(open, session: s).encode(into: &w)
        case let .tmpfile(flags, mode, umask, _, label):
            try labelCheck(label)
            try creds()
            let (entry, open) = try fileSystem.tmpfile(ctx, parent: node, mode: mode, umask: umask, flags: flags, label: label)
            out(entry).encode(into: &w)
            open.encode(into: &w)
        case let .read(handle, offset, size):
            // Never more than the reply can hold: the kernel sizes the reply
            // buffer to `size`, so a smaller buffer only shortens the read.
            // A kernel never asks for more than max_pages pages (≤ 1 MiB);
            // the cap keeps a hostile size + a huge reply chain from making
            // a reply whose length does not fit fuse_out_header.len.
            let room = max(reply.byteCount - FUSEWireSize.outHeader, 0)
            let count = min(Int(size), room, Self.maxReadSize)
            let n = try fileSystem.read(ctx, node: node, handle: handle, offset: offset, size: count, into: reply, at: FUSEWireSize.outHeader)
            return .written(min(n, count))
        case let .write(handle, offset, size, writeFlags):
            guard size <= options.maxWrite else { throw FUSEErrno(.EINVAL, "WRITE: size above max_write") }
            let n = try fileSystem.write(ctx, node: node, handle: handle, offset: offset, size: Int(size), writeFlags: writeFlags,
                                 from: payload, at: FUSERequestDecoder.writePayloadOffset)
            return put(fuse_write_out(size: UInt32(clamping: min(n, Int(size))), padding: 0), reply, unique: r.header.unique)
        case .statfs:
            let st = try fileSystem.statfs(ctx, node: node)
            w.u64(st.blocks); w.u64(st.bfree); w.u64(st.bavail); w.u64(st.files); w.u64(st.ffree)
            w.u32(st.bsize); w.u32(st.namelen); w.u32(st.frsize); w.u32(0); w.zeros(24)
        case let .release(handle, flags, releaseFlags, owner):
            backingFiles?.release(handle: handle)
            try fileSystem.release(ctx, node: node, handle: handle, flags: flags, releaseFlags: releaseFlags, lockOwner: owner)
        case let .releasedir(handle): try fileSystem.releasedir(ctx, node: node, handle: handle)
        case let .fsync(handle, dataOnly): try fileSystem.fsync(ctx, node: node, handle: handle, dataOnly: dataOnly)
        case let .fsyncdir(handle, dataOnly): try fileSystem.fsyncdir(ctx, node: node, handle: handle, dataOnly: dataOnly)
        case let .setxattr(name, value, flags):
            if ids != nil { try Self.untranslatedIDs(name, fileSystem) }
            try fileSystem.setxattr(ctx, node: node, name: name, value: value, flags: flags)
        case let .getxattr(name, size):
            if ids != nil { try Self.untranslatedIDs(name, fileSystem) }
            return try xattrReply(fileSystem.getxattr(ctx, node: node, name: name, size: Int(min(size, 65536))), size: size, reply: reply, &w)
        case let .listxattr(size):
            return try xattrReply(fileSystem.listxattr(ctx, node: node, size: Int(min(size, 65536))), size: size, reply: reply, &w)
        case let .removexattr(name): try fileSystem.removexattr(ctx, node: node, name: name)
        case let .flush(handle, owner): try fileSystem.flush(ctx, node: node, handle: handle, lockOwner: owner)
        case let .opendir(flags): try fileSystem.opendir(ctx, node: node, flags: flags).encode(into: &w)
        case let .readdir(handle, offset, size, plus):
            let limit = min(Int(size), max(reply.byteCount - FUSEWireSize.outHeader, 0), 1 << 20)
            var buffer = FUSEDirectoryBuffer(limit: limit, plus: plus, ids: ids)
            try fileSystem.readdir(ctx, node: node, handle: handle, offset: offset, into: &buffer)
            return .bytes(buffer.writer.bytes)
        case let .getlk(handle, owner, lock, flock):
            try lockKindCheck(flock: flock)
            let l = try fileSystem.getlk(ctx, node: node, handle: handle, owner: owner, lock: lock)
            w.u64(l.start); w.u64(l.end); w.u32(l.type); w.u32(l.pid)
        case let .setlk(handle, owner, lock, flock, wait):
            try lockKindCheck(flock: flock)
            try fileSystem.setlk(ctx, node: node, handle: handle, owner: owner, lock: lock, wait: wait, flock: flock)
        case let .access(mask):
            if mask & UInt32(W_OK) != 0 { try readOnlyCheck() }
            if forbidden { throw FUSEErrno(.EACCES, "ACCESS: the caller's ids are forbidden by --translate-uid/--translate-gid") }
            try fileSystem.access(ctx, node: node, mask: mask)
        case let .fallocate(handle, offset, length, mode):
            try fileSystem.fallocate(ctx, node: node, handle: handle, offset: offset, length: length, mode: mode)
        case let .lseek(handle, offset, whence): w.u64(try fileSystem.lseek(ctx, node: node, handle: handle, offset: offset, whence: whence))
        case let .copyFileRange(handleIn, offsetIn, nodeOut, handleOut, offsetOut, length, flags):
            let n = try fileSystem.copyFileRange(ctx, node: node, handleIn: handleIn, offsetIn: offsetIn, nodeOut: nodeOut, handleOut: handleOut,
                                         offsetOut: offsetOut, length: length, flags: flags)
            w.u32(UInt32(clamping: n)); w.u32(0)
        case .syncfs: try fileSystem.syncfs(ctx, node: node)
        }
        return .bytes(w.bytes)
    }

    /// O_WRONLY, O_RDWR or O_TRUNC: an open that may change the file.
    private func writesAccess(_ flags: UInt32) -> Bool {
        let f = Int32(bitPattern: flags)
        let access = f & O_ACCMODE
        return access == O_WRONLY || access == O_RDWR || f & O_TRUNC != 0
    }

    /// FUSE_LK_FLOCK requests only with flock locks on, the others only
    /// with POSIX locks on.
    private func lockKindCheck(flock: Bool) throws(FUSEErrno) {
        guard flock ? options.flockLocks : options.posixLocks else { throw FUSEErrno(.ENOSYS, "this kind of lock is off") }
    }

    private func xattrReply(_ result: FUSEXattrReply, size: UInt32, reply: some ScatterGatherList, _ w: inout WireWriter) throws(FUSEErrno) -> Body {
        switch result {
        case let .size(n):
            w.u32(UInt32(clamping: n)); w.u32(0)
            return .bytes(w.bytes)
        case let .data(d):
            guard d.count <= Int(size) else { throw FUSEErrno(.ERANGE, "xattr value larger than the request's size") }
            guard d.count + FUSEWireSize.outHeader <= reply.byteCount else { throw FUSEErrno(.ERANGE, "xattr reply buffer too small") }
            return .bytes(d)
        }
    }

    private func attrOut(_ attr: FUSEAttributes, _ timeout: FUSETimeout) -> fuse_attr_out {
        (options.idTranslation?.toGuest(attr) ?? attr).attrOut(timeout)
    }

    /// A fixed-layout reply body (a struct of linux/fuse.h) stored straight
    /// into `reply` with its header, in one copy (each copy into a list is
    /// a call through its witness table: ~200 instructions); one that does
    /// not fit becomes EIO in `finish`, as a `.bytes` body does in `sendOK`.
    @inline(__always)
    private func put<T: BitwiseCopyable>(_ body: T, _ reply: some ScatterGatherList, unique: UInt64) -> Body {
        let n = MemoryLayout<T>.size
        let total = FUSEWireSize.outHeader + n
        guard total <= reply.byteCount else { return .written(n) }
        // fuse_out_header (len, error, unique: 16 bytes), then the body at
        // offset 16: a tuple's elements are laid out in order, and no body
        // struct is aligned to more than 8.
        let whole = (UInt32(truncatingIfNeeded: total).littleEndian, Int32(0), unique.littleEndian, body)
        let put = withUnsafeBytes(of: whole) { reply.copy(UnsafeRawBufferPointer(rebasing: $0[0..<total]), to: 0) }
        return .complete(put == total ? total : 0)
    }

    // MARK: - Replies

    /// Writes fuse_out_header at reply[0..<16] from a stack value (no
    /// allocation); returns how many bytes fit.
    private static func putHeader(reply: some ScatterGatherList, unique: UInt64, error: Int32, totalLength: Int) -> Int {
        // fuse_out_header: len u32, error i32, unique u64 (little-endian).
        let header = (UInt32(truncatingIfNeeded: totalLength).littleEndian, error.littleEndian, unique.littleEndian)
        return withUnsafeBytes(of: header) { reply.copy($0, to: 0) }
    }

    private func finish(reply: some ScatterGatherList, unique: UInt64, error: Int32, bodyLength: Int) -> Int {
        let total = FUSEWireSize.outHeader + bodyLength
        guard total <= reply.byteCount, total <= Int(UInt32.max) else { return sendError(reply: reply, unique: unique, .EIO) }
        let put = Self.putHeader(reply: reply, unique: unique, error: error, totalLength: total)
        return put == FUSEWireSize.outHeader ? total : 0
    }

    private func sendOK(reply: some ScatterGatherList, unique: UInt64, body: [UInt8]) -> Int {
        let total = FUSEWireSize.outHeader + body.count
        guard total <= reply.byteCount, total <= Int(UInt32.max) else { return sendError(reply: reply, unique: unique, .EIO) }
        // The body straight into the reply after the header: no joined copy.
        _ = body.withUnsafeBytes { reply.copy($0, to: FUSEWireSize.outHeader) }
        _ = Self.putHeader(reply: reply, unique: unique, error: 0, totalLength: total)
        return total
    }

    private func sendError(reply: some ScatterGatherList, unique: UInt64, _ errno: Errno) -> Int {
        Self.sendError(reply: reply, unique: unique, errno)
    }

    private static func sendError(reply: some ScatterGatherList, unique: UInt64, _ errno: Errno) -> Int {
        guard reply.byteCount >= FUSEWireSize.outHeader else { return 0 }
        _ = putHeader(reply: reply, unique: unique, error: -errno.rawValue, totalLength: FUSEWireSize.outHeader)
        return FUSEWireSize.outHeader
    }
}

extension FUSEOpcode {
    /// Requests refused on a read-only share whatever their arguments (OPEN
    /// and ACCESS depend on theirs).
    var alwaysWrites: Bool {
        switch self {
        case .setattr, .symlink, .mknod, .mkdir, .unlink, .rmdir, .rename, .rename2, .link, .create, .tmpfile,
             .write, .setxattr, .removexattr, .fallocate, .copyFileRange:
            true
        default: false
        }
    }
}
