import CVfsvmLinux
import VfsvmMemory
import VfsvmSys

/// Turns the bytes of one FUSE request into a `FUSERequest`: fuse_in_header
/// and the opcode's fuse_*_in struct and names, each length and field
/// checked once (linux/fuse.h, protocol 7.38; fields are little-endian,
/// FUSE's host byte order on every host vfsvm runs on).
///
/// The request's control bytes are read out of its buffers exactly once:
/// one copy into a buffer on the stack (a heap buffer only for the rare
/// request whose arguments are longer, SETXATTR values and long SYMLINK
/// targets), then everything is decoded from that copy. A WRITE's payload
/// is not copied; it stays in the request at `writePayloadOffset` for
/// pwritev/io_uring.
public struct FUSERequestDecoder: Sendable {
    /// SETXATTR carries the extended fuse_setxattr_in (FUSE_SETXATTR_EXT
    /// negotiated at INIT).
    public var setxattrExt: Bool
    /// CREATE, MKNOD, MKDIR, SYMLINK and TMPFILE end in request extensions
    /// holding the security context (FUSE_SECURITY_CTX negotiated).
    public var securityContext: Bool

    public init(setxattrExt: Bool = false, securityContext: Bool = false) {
        self.setxattrExt = setxattrExt
        self.securityContext = securityContext
    }

    /// Where a WRITE's data starts: after fuse_in_header and fuse_write_in.
    public static let writePayloadOffset = FUSEWireSize.inHeader + 40

    /// No legitimate request's arguments are longer (SETXATTR: a 64 KiB
    /// value and its name; SYMLINK: two names of at most 4 KiB), so a
    /// hostile `len` (up to 4 GiB of aliased descriptors) cannot make the
    /// host copy more.
    public static let maxArgumentBytes = 128 << 10

    /// Header plus arguments up to this size are decoded from the stack:
    /// every request but SETXATTR, a SYMLINK with a long target and a large
    /// BATCH_FORGET.
    static let inlineCapacity = 640

    /// Decodes `request` (fuse_in_header at offset 0). A header shorter than
    /// 40 bytes or whose `len` is below 40 or beyond the request is
    /// `.malformed(EINVAL)` (with `unique` if 16 bytes could be read); an
    /// unknown opcode is `.malformed(ENOSYS)`.
    public func decode(_ request: some ScatterGatherList) -> FUSERequest {
        var inline = InlineArray<640, UInt8>(repeating: 0)
        let got = Self.copyStart(of: request, into: &inline)
        // Fields past `got` read as the zeros the buffer started with.
        let s = inline.span
        var header = FUSEInHeader(length: le32(s, 0), opcode: le32(s, 4), unique: got >= 16 ? le64(s, 8) : 0)
        guard got >= FUSEWireSize.inHeader, Int(header.length) >= FUSEWireSize.inHeader, Int(header.length) <= request.byteCount else {
            return FUSERequest(header: header, opcode: nil, operation: .malformed(FUSEErrno(.EINVAL, "malformed fuse_in_header")))
        }
        header.nodeID = le64(s, 16)
        header.uid = le32(s, 24)
        header.gid = le32(s, 28)
        header.pid = le32(s, 32)
        guard let opcode = FUSEOpcode(rawValue: header.opcode) else {
            return FUSERequest(header: header, opcode: nil, operation: .malformed(FUSEErrno(.ENOSYS, "unknown opcode")))
        }
        let control = opcode == .write
            ? min(Int(header.length), Self.writePayloadOffset)
            : min(Int(header.length), FUSEWireSize.inHeader + Self.maxArgumentBytes)
        // total_extlen (7.38): the extensions' length in 8-byte units.
        let extensionLength = Int(UInt16(s[36]) | UInt16(s[37]) << 8) * 8
        let operation: FUSEOperation
        if control <= got {
            operation = arguments(opcode, length: Int(header.length), extensionLength: extensionLength,
                                  s.extracting(FUSEWireSize.inHeader..<control))
        } else {
            // Longer than the stack buffer: the bytes already copied, then
            // the rest, into one heap buffer.
            var big = [UInt8](repeating: 0, count: control)
            do {
                var bytes = big.mutableSpan
                for i in 0..<got { bytes[i] = s[i] }
                var raw = bytes.mutableBytes
                request.copy(from: got, into: &raw, at: got)
            }
            operation = arguments(opcode, length: Int(header.length), extensionLength: extensionLength,
                                  big.span.extracting(FUSEWireSize.inHeader..<control))
        }
        return FUSERequest(header: header, opcode: opcode, operation: operation)
    }

    /// Only the header: for answering a request that will not be run.
    public static func header(_ request: some ScatterGatherList) -> FUSEInHeader {
        var inline = InlineArray<16, UInt8>(repeating: 0)
        let got = copyStart(of: request, into: &inline)
        let s = inline.span
        return FUSEInHeader(length: le32(s, 0), opcode: le32(s, 4), unique: got >= 16 ? le64(s, 8) : 0)
    }

    /// Copies the first bytes of `request` into `buffer` (as many as it
    /// holds); returns how many there were.
    private static func copyStart<let N: Int>(of request: some ScatterGatherList, into buffer: inout InlineArray<N, UInt8>) -> Int {
        var bytes = buffer.mutableSpan
        var raw = bytes.mutableBytes
        return request.copy(from: 0, into: &raw)
    }

    // MARK: - Arguments

    /// `b`: the bytes after the header (for WRITE only fuse_write_in);
    /// `length`: the request's `len`; `extensionLength`: what total_extlen
    /// says in bytes (a create's security context is decoded from there).
    private func arguments(_ opcode: FUSEOpcode, length: Int, extensionLength: Int, _ b: Span<UInt8>) -> FUSEOperation {
        do throws(FUSEErrno) {
            var c = WireCursor()
            return try decodeArguments(opcode, length: length, extensionLength: extensionLength, b, &c)
        } catch {
            return .malformed(error)
        }
    }

    private func decodeArguments(_ opcode: FUSEOpcode, length: Int, extensionLength: Int, _ b: Span<UInt8>,
                                 _ c: inout WireCursor) throws(FUSEErrno) -> FUSEOperation {
        /// The security context after a create's names (only these five
        /// opcodes carry one, and only with FUSE_SECURITY_CTX negotiated).
        func label(_ c: inout WireCursor) throws(FUSEErrno) -> FUSESecurityContext? {
            securityContext ? try Self.securityContext(&c, b, declaredLength: extensionLength) : nil
        }
        switch opcode {
        case .`init`:
            let major = try c.u32(b), minor = try c.u32(b), maxReadahead = try c.u32(b), flags = try c.u32(b)
            var all = UInt64(flags)
            // flags2 exists from 7.36 with FUSE_INIT_EXT; an older client's
            // shorter struct simply has none.
            if minor >= 36, flags & UInt32(FUSE_INIT_EXT) != 0, let flags2 = try? c.u32(b) {
                all |= UInt64(flags2) << 32
            }
            return .`init`(major: major, minor: minor, maxReadahead: maxReadahead, flags: all)
        case .destroy: return .destroy
        case .lookup:
            let name = try c.cString(b)
            try Self.checkName(name, allowDots: true)
            return .lookup(name: name)
        case .forget: return .forget(count: try c.u64(b))
        case .batchForget:
            let count = try c.u32(b)
            try c.skip(4, b)
            // Never trust `count`: stop at the end of the request.
            var entries: [FUSEForget] = []
            entries.reserveCapacity(min(Int(count), c.remaining(b) / 16))
            while entries.count < count, c.remaining(b) >= 16 {
                entries.append(FUSEForget(nodeID: try c.u64(b), count: try c.u64(b)))
            }
            return .batchForget(entries)
        case .interrupt: return .interrupt(unique: try c.u64(b))
        case .getattr:
            let flags = try c.u32(b)
            try c.skip(4, b)
            let fh = try c.u64(b)
            return .getattr(handle: flags & UInt32(FUSE_GETATTR_FH) != 0 ? fh : nil)
        case .setattr: return .setattr(try setattr(&c, b))
        case .readlink: return .readlink
        case .symlink:
            let name = try c.cString(b), target = try c.cString(b)
            try Self.checkName(name)
            if target.isEmpty { throw FUSEErrno(.ENOENT, "SYMLINK: empty target") }
            if target.count >= 4096 { throw FUSEErrno(.ENAMETOOLONG, "SYMLINK: target of 4096 bytes or more") }
            return .symlink(name: name, target: target, label: try label(&c))
        case .mknod:
            let mode = try c.u32(b), rdev = try c.u32(b), umask = try c.u32(b)
            try c.skip(4, b)
            let name = try checkedName(&c, b)
            return .mknod(name: name, mode: mode, rdev: rdev, umask: umask, label: try label(&c))
        case .mkdir:
            let mode = try c.u32(b), umask = try c.u32(b)
            let name = try checkedName(&c, b)
            return .mkdir(name: name, mode: mode, umask: umask, label: try label(&c))
        case .unlink: return .unlink(name: try checkedName(&c, b))
        case .rmdir: return .rmdir(name: try checkedName(&c, b))
        case .rename, .rename2:
            let newParent = try c.u64(b)
            var flags: UInt32 = 0
            if opcode == .rename2 {
                flags = try c.u32(b)
                try c.skip(4, b)
            }
            let old = try c.cString(b), new = try c.cString(b)
            try Self.checkName(old)
            try Self.checkName(new)
            return .rename(name: old, newParent: newParent, newName: new, flags: flags)
        case .link:
            let node = try c.u64(b)
            return .link(node: node, newName: try checkedName(&c, b))
        case .open:
            let flags = try c.u32(b), openFlags = try c.u32(b)
            return .open(flags: flags, openFlags: openFlags)
        case .create, .tmpfile:
            let flags = try c.u32(b), mode = try c.u32(b), umask = try c.u32(b), openFlags = try c.u32(b)
            if opcode == .tmpfile {
                // Linux sends the unnamed dentry's name ("/") after
                // fuse_create_in; only the extensions after it matter.
                if securityContext { _ = try c.cString(b) }
                return .tmpfile(flags: flags, mode: mode, umask: umask, openFlags: openFlags, label: try label(&c))
            }
            let name = try checkedName(&c, b)
            return .create(name: name, flags: flags, mode: mode, umask: umask, openFlags: openFlags, label: try label(&c))
        case .read, .readdir, .readdirplus:
            let fh = try c.u64(b), offset = try c.u64(b), size = try c.u32(b)
            if opcode != .read { return .readdir(handle: fh, offset: offset, size: size, plus: opcode == .readdirplus) }
            guard offset <= UInt64(Int64.max) - UInt64(size) else { throw FUSEErrno(.EINVAL, "READ: offset + size overflows") }
            return .read(handle: fh, offset: offset, size: size)
        case .write:
            let fh = try c.u64(b), offset = try c.u64(b), size = try c.u32(b), writeFlags = try c.u32(b)
            try c.skip(16, b)  // lock_owner, flags, padding
            guard Int(size) <= length - Self.writePayloadOffset else {
                throw FUSEErrno(.EINVAL, "WRITE: size exceeds the payload")
            }
            guard offset <= UInt64(Int64.max) - UInt64(size) else { throw FUSEErrno(.EINVAL, "WRITE: offset + size overflows") }
            return .write(handle: fh, offset: offset, size: size, writeFlags: writeFlags)
        case .statfs: return .statfs
        case .release, .releasedir:
            let fh = try c.u64(b), flags = try c.u32(b), releaseFlags = try c.u32(b), owner = try c.u64(b)
            if opcode == .releasedir { return .releasedir(handle: fh) }
            return .release(handle: fh, flags: flags, releaseFlags: releaseFlags, lockOwner: owner)
        case .fsync, .fsyncdir:
            let fh = try c.u64(b), flags = try c.u32(b)
            // FUSE_FSYNC_FDATASYNC (bit 0 of fsync_flags).
            let dataOnly = flags & 1 != 0
            return opcode == .fsync ? .fsync(handle: fh, dataOnly: dataOnly) : .fsyncdir(handle: fh, dataOnly: dataOnly)
        case .setxattr:
            let size = try c.u32(b)
            var flags = try c.u32(b) & ~FUSESetxattrFlag.aclKillSGID
            if setxattrExt {
                if try c.u32(b) & 1 != 0 { flags |= FUSESetxattrFlag.aclKillSGID }  // FUSE_SETXATTR_ACL_KILL_SGID
                try c.skip(4, b)  // padding
            }
            let name = try c.cString(b)
            try Self.checkXattrName(name)
            guard size <= 65536 else { throw FUSEErrno(.E2BIG, "SETXATTR: value above 64 KiB") }
            return .setxattr(name: name, value: try c.take(Int(size), b), flags: flags)
        case .getxattr, .listxattr:
            let size = try c.u32(b)
            try c.skip(4, b)
            if opcode == .listxattr { return .listxattr(size: size) }
            let name = try c.cString(b)
            try Self.checkXattrName(name)
            return .getxattr(name: name, size: size)
        case .removexattr:
            let name = try c.cString(b)
            try Self.checkXattrName(name)
            return .removexattr(name: name)
        case .flush:
            let fh = try c.u64(b)
            try c.skip(8, b)  // unused, padding
            return .flush(handle: fh, lockOwner: try c.u64(b))
        case .opendir: return .opendir(flags: try c.u32(b))
        case .getlk, .setlk, .setlkw:
            let fh = try c.u64(b), owner = try c.u64(b)
            let start = try c.u64(b), end = try c.u64(b), type = try c.u32(b), pid = try c.u32(b)
            let lkFlags = try c.u32(b)
            guard start <= end || type == UInt32(F_UNLCK) else { throw FUSEErrno(.EINVAL, "LK: start after end") }
            let lock = FUSEFileLock(start: start, end: end, type: type, pid: pid)
            let flock = lkFlags & UInt32(FUSE_LK_FLOCK) != 0
            if opcode == .getlk { return .getlk(handle: fh, owner: owner, lock: lock, flock: flock) }
            return .setlk(handle: fh, owner: owner, lock: lock, flock: flock, wait: opcode == .setlkw)
        case .access: return .access(mask: try c.u32(b))
        case .fallocate:
            let fh = try c.u64(b), offset = try c.u64(b), length = try c.u64(b), mode = try c.u32(b)
            guard offset <= UInt64(Int64.max), length <= UInt64(Int64.max) else { throw FUSEErrno(.EINVAL, "FALLOCATE: range") }
            return .fallocate(handle: fh, offset: offset, length: length, mode: mode)
        case .lseek:
            let fh = try c.u64(b), offset = try c.u64(b), whence = try c.u32(b)
            guard offset <= UInt64(Int64.max) else { throw FUSEErrno(.EINVAL, "LSEEK: offset") }
            return .lseek(handle: fh, offset: offset, whence: whence)
        case .copyFileRange:
            let fhIn = try c.u64(b), offIn = try c.u64(b), nodeOut = try c.u64(b), fhOut = try c.u64(b)
            let offOut = try c.u64(b), length = try c.u64(b), flags = try c.u64(b)
            guard offIn <= UInt64(Int64.max), offOut <= UInt64(Int64.max) else { throw FUSEErrno(.EINVAL, "COPY_FILE_RANGE: offset") }
            return .copyFileRange(handleIn: fhIn, offsetIn: offIn, nodeOut: nodeOut, handleOut: fhOut, offsetOut: offOut, length: length, flags: flags)
        case .syncfs: return .syncfs
        case .setupMapping:
            let fh = try c.u64(b), foffset = try c.u64(b), len = try c.u64(b), flags = try c.u64(b), moffset = try c.u64(b)
            return .setupMapping(handle: fh, fileOffset: foffset, length: len, flags: flags, windowOffset: moffset)
        case .removeMapping:
            let count = try c.u32(b)
            // Never trust `count`: the entries must all be in the request.
            guard Int(count) <= c.remaining(b) / 16 else { throw FUSEErrno(.EINVAL, "REMOVEMAPPING: count beyond the request") }
            var ranges: [FUSEWindowRange] = []
            ranges.reserveCapacity(Int(count))
            for _ in 0..<count { ranges.append(FUSEWindowRange(offset: try c.u64(b), length: try c.u64(b))) }
            return .removeMapping(ranges)
        case .bmap, .ioctl, .poll, .notifyReply: return .unsupported
        }
    }

    private func setattr(_ c: inout WireCursor, _ b: Span<UInt8>) throws(FUSEErrno) -> FUSESetAttributes {
        // struct fuse_setattr_in.
        let valid = try c.u32(b)
        try c.skip(4, b)
        let fh = try c.u64(b), size = try c.u64(b), lockOwner = try c.u64(b)
        let atime = try c.u64(b), mtime = try c.u64(b)
        try c.skip(8, b)  // ctime
        let atimens = try c.u32(b), mtimens = try c.u32(b)
        try c.skip(4, b)  // ctimensec
        let mode = try c.u32(b)
        try c.skip(4, b)
        let uid = try c.u32(b), gid = try c.u32(b)
        func has(_ bit: Int32) -> Bool { valid & UInt32(bit) != 0 }
        var a = FUSESetAttributes()
        if has(FATTR_FH) { a.handle = fh }
        if has(FATTR_MODE) { a.mode = mode }
        if has(FATTR_UID) { a.uid = uid }
        if has(FATTR_GID) { a.gid = gid }
        if has(FATTR_SIZE) { a.size = size }
        if has(FATTR_LOCKOWNER) { a.lockOwner = lockOwner }
        if has(FATTR_ATIME_NOW) { a.atime = .now } else if has(FATTR_ATIME) { a.atime = try Self.time(atime, atimens) }
        if has(FATTR_MTIME_NOW) { a.mtime = .now } else if has(FATTR_MTIME) { a.mtime = try Self.time(mtime, mtimens) }
        a.ctimeRequested = has(FATTR_CTIME)
        a.killSUIDGID = has(FATTR_KILL_SUIDGID)
        return a
    }

    private static func time(_ seconds: UInt64, _ nanoseconds: UInt32) throws(FUSEErrno) -> TimeChange {
        guard nanoseconds < 1_000_000_000 else { throw FUSEErrno(.EINVAL, "SETATTR: nanoseconds out of range") }
        return .set(seconds: Int64(bitPattern: seconds), nanoseconds: Int64(nanoseconds))
    }

    // MARK: - Request extensions

    /// The request extensions after a create's names (linux/fuse.h:
    /// struct fuse_ext_header; types 0...31 are a struct
    /// fuse_secctx_header whose type is nr_secctx): the security context
    /// in them, or nil when the client's LSM gave none (nr_secctx 0).
    ///
    /// Linux 6.1 (7.36/7.37) sends the fuse_secctx_header right after the
    /// names with total_extlen 0; 7.38 sends the same bytes and says their
    /// length in total_extlen. Either way the extensions are the rest of
    /// the request. Each one is checked against what remains: a size below
    /// 8, not a multiple of 8 or past the request, a second security
    /// context, nr_secctx above 1 (Linux sends at most one), a context whose
    /// name has no NUL within it or whose value runs past it, a name outside
    /// security.* (or security.capability, which no LSM sends), and any
    /// other extension type (FUSE_EXT_GROUPS is not offered) are EINVAL. So
    /// is a create without the extension, which Linux always sends once the
    /// flag is negotiated.
    static func securityContext(_ c: inout WireCursor, _ b: Span<UInt8>, declaredLength: Int) throws(FUSEErrno) -> FUSESecurityContext? {
        let area = c.remaining(b)
        if declaredLength != 0, declaredLength != area {
            throw FUSEErrno(.EINVAL, "request extensions: total_extlen disagrees with the bytes after the names")
        }
        var seen = false
        var result: FUSESecurityContext?
        while c.remaining(b) > 0 {
            let start = c.position
            let size = try c.u32(b), type = try c.u32(b)
            guard size >= 8, size % 8 == 0, Int(size) <= b.count - start else {
                throw FUSEErrno(.EINVAL, "request extension: size below 8, unaligned or past the request")
            }
            let end = start + Int(size)
            // FUSE_MAX_NR_SECCTX: types above it are fuse_ext_header types.
            guard type <= 31 else {
                if type == 32 { throw FUSEErrno(.EINVAL, "request extension: supplementary groups were not negotiated") }
                throw FUSEErrno(.EINVAL, "request extension: unknown type")
            }
            if seen { throw FUSEErrno(.EINVAL, "request extension: a second security context header") }
            seen = true
            if type > 1 { throw FUSEErrno(.EINVAL, "security context: nr_secctx above 1 (Linux sends at most one)") }
            if type == 1 {
                let e = b.extracting(0..<end)
                let valueSize = try c.u32(e)
                try c.skip(4, e)  // padding
                let name = try c.cString(e)
                guard (1...255).contains(name.count), name.starts(with: Array("security.".utf8)), name != Array("security.capability".utf8) else {
                    throw FUSEErrno(.EINVAL, "security context: the name is not a security.* label")
                }
                guard valueSize > 0, Int(valueSize) <= c.remaining(e) else {
                    throw FUSEErrno(.EINVAL, "security context: size 0 or past the extension")
                }
                result = FUSESecurityContext(name: name, value: try c.take(Int(valueSize), e))
            }
            c.position = end  // the rest is padding to 8 bytes
        }
        if !seen { throw FUSEErrno(.EINVAL, "FUSE_SECURITY_CTX negotiated, but the request has no security context extension") }
        return result
    }

    private func checkedName(_ c: inout WireCursor, _ b: Span<UInt8>) throws(FUSEErrno) -> [UInt8] {
        let name = try c.cString(b)
        try Self.checkName(name)
        return name
    }

    /// A name for create/unlink/rename-like operations: not empty, at most
    /// 255 bytes, no '/', not "." or ".." (unless `allowDots`, LOOKUP).
    static func checkName(_ name: [UInt8], allowDots: Bool = false) throws(FUSEErrno) {
        if name.isEmpty { throw FUSEErrno(.EINVAL, "empty name") }
        if name.count > FUSEProtocol.maxNameLength { throw FUSEErrno(.ENAMETOOLONG, "name longer than 255 bytes") }
        if name.contains(UInt8(ascii: "/")) { throw FUSEErrno(.EINVAL, "name contains '/'") }
        if !allowDots, name == [0x2e] || name == [0x2e, 0x2e] { throw FUSEErrno(.EINVAL, "name is . or ..") }
    }

    static func checkXattrName(_ name: [UInt8]) throws(FUSEErrno) {
        if name.isEmpty { throw FUSEErrno(.EINVAL, "empty xattr name") }
        if name.count > 255 { throw FUSEErrno(.ERANGE, "xattr name longer than 255 bytes") }
    }
}

/// A position in the argument bytes; every read is checked against their
/// end and fails with EINVAL.
struct WireCursor {
    var position = 0

    func remaining(_ b: Span<UInt8>) -> Int { b.count - position }

    @inline(__always)
    mutating func need(_ n: Int, _ b: Span<UInt8>) throws(FUSEErrno) {
        guard n >= 0, n <= b.count - position else { throw FUSEErrno(.EINVAL, "request too short") }
    }

    @inline(__always)
    mutating func u32(_ b: Span<UInt8>) throws(FUSEErrno) -> UInt32 {
        try need(4, b)
        defer { position += 4 }
        return le32(b, position)
    }

    @inline(__always)
    mutating func u64(_ b: Span<UInt8>) throws(FUSEErrno) -> UInt64 {
        try need(8, b)
        defer { position += 8 }
        return le64(b, position)
    }

    mutating func skip(_ n: Int, _ b: Span<UInt8>) throws(FUSEErrno) {
        try need(n, b)
        position += n
    }

    mutating func take(_ n: Int, _ b: Span<UInt8>) throws(FUSEErrno) -> [UInt8] {
        try need(n, b)
        defer { position += n }
        return bytes(b, position..<(position + n))
    }

    /// A NUL-terminated string (without its NUL); EINVAL when no NUL ends
    /// it within the request.
    mutating func cString(_ b: Span<UInt8>) throws(FUSEErrno) -> [UInt8] {
        var end = position
        while end < b.count, b[end] != 0 { end += 1 }
        guard end < b.count else { throw FUSEErrno(.EINVAL, "string not NUL-terminated") }
        defer { position = end + 1 }
        return bytes(b, position..<end)
    }
}

/// Little-endian loads; `b` must hold the bytes (callers check).
@inline(__always)
func le32(_ b: Span<UInt8>, _ p: Int) -> UInt32 {
    UInt32(b[p]) | UInt32(b[p + 1]) << 8 | UInt32(b[p + 2]) << 16 | UInt32(b[p + 3]) << 24
}

@inline(__always)
func le64(_ b: Span<UInt8>, _ p: Int) -> UInt64 {
    UInt64(le32(b, p)) | UInt64(le32(b, p + 4)) << 32
}

/// `b[range]` as an array.
func bytes(_ b: Span<UInt8>, _ range: Range<Int>) -> [UInt8] {
    // Array(UnsafeBufferPointer) is specialized here; [UInt8](repeating:
    // count:) went through the runtime's unspecialized allocation, which
    // looks up _ContiguousArrayStorage<UInt8>'s metadata on every call
    // (~330 instructions per name, measured with callgrind).
    b.extracting(range).withUnsafeBufferPointer { Array($0) }
}
