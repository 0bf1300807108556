import Glibc
import VfsvmFUSE
import VfsvmMemory

// A small FUSE client for tests: builds fuse_in_header + op structs as
// bytes (field by field, little-endian), feeds FUSEServer.handle with
// HostBuffers and decodes the replies.

public final class Bytes {
    public var b: [UInt8] = []
    public init() {}
    @discardableResult public func u16(_ v: UInt16) -> Self { b += [UInt8(v & 0xff), UInt8(v >> 8)]; return self }
    @discardableResult public func u32(_ v: UInt32) -> Self { for k in 0..<4 { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(k)))) }; return self }
    @discardableResult public func u64(_ v: UInt64) -> Self { for k in 0..<8 { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) }; return self }
    @discardableResult public func name(_ s: String) -> Self { b += Array(s.utf8) + [0]; return self }
    @discardableResult public func raw(_ r: [UInt8]) -> Self { b += r; return self }
    @discardableResult public func zeros(_ n: Int) -> Self { b += [UInt8](repeating: 0, count: n); return self }
}

public struct Decoder {
    public let b: [UInt8]
    public var p = 0
    public init(_ b: [UInt8], at p: Int = 0) { self.b = b; self.p = p }
    public mutating func u32() -> UInt32 {
        guard p + 4 <= b.count else { p += 4; return 0 }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(b[p + k]) << (8 * UInt32(k)) }
        p += 4
        return v
    }
    public mutating func u64() -> UInt64 {
        guard p + 8 <= b.count else { p += 8; return 0 }
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(b[p + k]) << (8 * UInt64(k)) }
        p += 8
        return v
    }
    public mutating func skip(_ n: Int) { p += n }
}

public struct Reply {
    public let length: Int
    public let error: Int32
    public let unique: UInt64
    public let body: [UInt8]
    public var ok: Bool { error == 0 && length >= 16 }
    public var errno: Int32 { -error }

    /// fuse_entry_out fields.
    public var nodeID: UInt64 { var d = Decoder(body); return d.u64() }
    public var entryAttr: Attr { Attr(body, at: 40) }
    /// fuse_attr_out's attr.
    public var attr: Attr { Attr(body, at: 16) }
    /// fuse_open_out after a fuse_entry_out (CREATE).
    public var createHandle: UInt64 { var d = Decoder(body, at: 128); return d.u64() }
    public var openHandle: UInt64 { var d = Decoder(body); return d.u64() }
    public var openFlags: UInt32 { var d = Decoder(body, at: 8); return d.u32() }
    public var u32: UInt32 { var d = Decoder(body); return d.u32() }
    public var u64: UInt64 { var d = Decoder(body); return d.u64() }
}

public struct Attr {
    public var ino: UInt64, size: UInt64, mode: UInt32, nlink: UInt32, uid: UInt32, gid: UInt32, mtime: UInt64, atime: UInt64
    public init(_ b: [UInt8], at p: Int) {
        var d = Decoder(b, at: p)
        ino = d.u64(); size = d.u64(); _ = d.u64()
        atime = d.u64(); mtime = d.u64(); _ = d.u64()
        d.skip(12)
        mode = d.u32(); nlink = d.u32(); uid = d.u32(); gid = d.u32()
    }
}

/// One directory entry of a READDIR(PLUS) reply.
public struct Dirent: Equatable {
    public var nodeID: UInt64
    public var ino: UInt64
    public var off: UInt64
    public var type: UInt32
    public var name: String
}

public func parseDirents(_ body: [UInt8], plus: Bool) -> [Dirent] {
    var out: [Dirent] = []
    var p = 0
    while p < body.count {
        var d = Decoder(body, at: p)
        var node: UInt64 = 0
        if plus { node = d.u64(); d.skip(120) }
        let ino = d.u64(), off = d.u64(), namelen = Int(d.u32()), type = d.u32()
        guard d.p + namelen <= body.count else { break }
        let name = String(decoding: body[d.p..<(d.p + namelen)], as: UTF8.self)
        out.append(Dirent(nodeID: node, ino: ino, off: off, type: type, name: name))
        p = (d.p + namelen + 7) & ~7
    }
    return out
}

public final class Client {
    public let server: FUSEServer
    public var unique: UInt64 = 100
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0

    public init(_ server: FUSEServer) { self.server = server }

    /// Sends raw request bytes; returns the decoded reply.
    public func send(raw: [UInt8], replySize: Int = (1 << 20) + 4096) -> Reply {
        let req = HostBuffer(raw)
        let rep = HostBuffer(count: replySize)
        let n = server.handle(request: req, reply: rep)
        let bytes = rep.array
        guard n >= 16 else { return Reply(length: n, error: 0, unique: 0, body: []) }
        var d = Decoder(bytes)
        let len = Int(d.u32())
        let err = Int32(bitPattern: d.u32())
        let uniq = d.u64()
        return Reply(length: n, error: err, unique: uniq, body: Array(bytes[16..<min(max(len, 16), n)]))
    }

    public func header(_ opcode: UInt32, node: UInt64, bodyLength: Int, lenOverride: UInt32? = nil) -> [UInt8] {
        unique += 1
        let h = Bytes()
        h.u32(lenOverride ?? UInt32(40 + bodyLength)).u32(opcode).u64(unique).u64(node)
        h.u32(uid).u32(gid).u32(4242).u16(0).u16(0)
        return h.b
    }

    public func call(_ op: FUSEOpcode, node: UInt64, _ body: Bytes = Bytes(), replySize: Int = (1 << 20) + 4096) -> Reply {
        send(raw: header(op.rawValue, node: node, bodyLength: body.b.count) + body.b, replySize: replySize)
    }

    @discardableResult
    public func initSession(minor: UInt32 = 38, flags: UInt32 = 0xffff_ffff, flags2: UInt32 = 0) -> Reply {
        let b = Bytes()
        b.u32(7).u32(minor).u32(128 * 1024).u32(flags).u32(flags2).zeros(44)
        return call(.`init`, node: 0, b)
    }

    public func lookup(_ parent: UInt64, _ name: String) -> Reply { let b = Bytes(); b.name(name); return call(.lookup, node: parent, b) }
    public func getattr(_ node: UInt64) -> Reply { let b = Bytes(); b.u32(0).u32(0).u64(0); return call(.getattr, node: node, b) }
    public func mkdir(_ parent: UInt64, _ name: String, mode: UInt32 = 0o755, umask: UInt32 = 0) -> Reply {
        let b = Bytes(); b.u32(mode).u32(umask).name(name); return call(.mkdir, node: parent, b)
    }
    public func create(_ parent: UInt64, _ name: String, mode: UInt32 = 0o644, umask: UInt32 = 0, flags: UInt32 = UInt32(O_RDWR)) -> Reply {
        let b = Bytes(); b.u32(flags).u32(mode).u32(umask).u32(0).name(name); return call(.create, node: parent, b)
    }
    public func open(_ node: UInt64, flags: UInt32 = UInt32(O_RDWR)) -> Reply { let b = Bytes(); b.u32(flags).u32(0); return call(.open, node: node, b) }
    public func opendir(_ node: UInt64) -> Reply { let b = Bytes(); b.u32(UInt32(O_RDONLY)).u32(0); return call(.opendir, node: node, b) }
    public func write(_ node: UInt64, fh: UInt64, offset: UInt64, _ data: [UInt8], flags: UInt32 = 0) -> Reply {
        let b = Bytes(); b.u64(fh).u64(offset).u32(UInt32(data.count)).u32(flags).u64(0).u32(0).u32(0).raw(data)
        return call(.write, node: node, b)
    }
    public func read(_ node: UInt64, fh: UInt64, offset: UInt64, size: UInt32, replySize: Int = (1 << 20) + 4096) -> Reply {
        let b = Bytes(); b.u64(fh).u64(offset).u32(size).u32(0).u64(0).u32(0).u32(0)
        return call(.read, node: node, b, replySize: replySize)
    }
    public func readdir(_ node: UInt64, fh: UInt64, offset: UInt64, size: UInt32 = 65536, plus: Bool = false) -> Reply {
        let b = Bytes(); b.u64(fh).u64(offset).u32(size).u32(0).u64(0).u32(0).u32(0)
        return call(plus ? .readdirplus : .readdir, node: node, b)
    }
    public func release(_ node: UInt64, fh: UInt64, dir: Bool = false, releaseFlags: UInt32 = 0, owner: UInt64 = 0) -> Reply {
        let b = Bytes(); b.u64(fh).u32(0).u32(releaseFlags).u64(owner); return call(dir ? .releasedir : .release, node: node, b)
    }
    public func forget(_ node: UInt64, _ n: UInt64) -> Reply { let b = Bytes(); b.u64(n); return call(.forget, node: node, b) }
    public func setattr(_ node: UInt64, valid: UInt32, fh: UInt64 = 0, size: UInt64 = 0, atime: UInt64 = 0, mtime: UInt64 = 0, mode: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0) -> Reply {
        let b = Bytes()
        b.u32(valid).u32(0).u64(fh).u64(size).u64(0).u64(atime).u64(mtime).u64(0)
        b.u32(0).u32(0).u32(0).u32(mode).u32(0).u32(uid).u32(gid).u32(0)
        return call(.setattr, node: node, b)
    }
    public func unlink(_ parent: UInt64, _ name: String) -> Reply { let b = Bytes(); b.name(name); return call(.unlink, node: parent, b) }
    public func rmdir(_ parent: UInt64, _ name: String) -> Reply { let b = Bytes(); b.name(name); return call(.rmdir, node: parent, b) }
    public func rename(_ parent: UInt64, _ old: String, _ newParent: UInt64, _ new: String, flags: UInt32? = nil) -> Reply {
        let b = Bytes(); b.u64(newParent)
        if let flags { b.u32(flags).u32(0) }
        b.name(old).name(new)
        return call(flags == nil ? .rename : .rename2, node: parent, b)
    }
    /// FUSE_SETUPMAPPING (fuse_setupmapping_in); `fh` UInt64.max names no handle, as Linux does.
    public func setupMapping(_ node: UInt64, fh: UInt64, fileOffset: UInt64, length: UInt64, flags: UInt64, windowOffset: UInt64) -> Reply {
        let b = Bytes(); b.u64(fh).u64(fileOffset).u64(length).u64(flags).u64(windowOffset)
        return call(.setupMapping, node: node, b)
    }
    /// FUSE_REMOVEMAPPING: fuse_removemapping_in with `count` (default:
    /// the number of ranges), then the ranges as fuse_removemapping_one.
    public func removeMapping(_ node: UInt64, _ ranges: [(offset: UInt64, length: UInt64)], count: UInt32? = nil) -> Reply {
        let b = Bytes(); b.u32(count ?? UInt32(ranges.count))
        for r in ranges { b.u64(r.offset).u64(r.length) }
        return call(.removeMapping, node: node, b)
    }
    public func lk(_ op: FUSEOpcode, node: UInt64, fh: UInt64, owner: UInt64, start: UInt64, end: UInt64, type: UInt32, flock: Bool = false) -> Reply {
        let b = Bytes(); b.u64(fh).u64(owner).u64(start).u64(end).u32(type).u32(1).u32(flock ? 1 : 0).u32(0)
        return call(op, node: node, b)
    }
}
