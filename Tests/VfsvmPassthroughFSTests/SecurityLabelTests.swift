import CVfsvmLinux
import Glibc
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmPassthroughFS

/// --security-label (FUSE_SECURITY_CTX) at the FUSE level: the context a
/// create carries lands as an xattr of the new host node, through
/// --xattrmap; malformed extensions are EINVAL and make nothing.
///
/// No guest test: the guest test image has no SELinux (or other LSM that
/// labels files), so its kernel never sends a context. These tests send
/// the bytes Linux sends (fs/fuse/dir.c get_security_context).
@Suite struct SecurityLabelTests {
    static let label = "system_u:object_r:container_file_t:s0"

    static func fixture(xattrMap: String? = nil, offer: Bool = true, negotiate: Bool = true) throws -> Fixture {
        var o = PassthroughOptions()
        if let xattrMap { o.xattrMap = try XattrNameMap(parsing: xattrMap) }
        var s = FUSEServerOptions()
        s.securityLabel = offer
        let f = try Fixture(options: o, server: s, initialize: false)
        f.client.initSession(flags2: negotiate ? UInt32(FUSEInitFlag.securityContext >> 32) : 0)
        return f
    }

    /// fuse_secctx_header + fuse_secctx + name + value, padded to 8 bytes,
    /// as Linux lays it out; nil name: nr_secctx 0 (no LSM gave one).
    static func ext(name: String? = "security.selinux", value: [UInt8] = Array(label.utf8) + [0]) -> [UInt8] {
        guard let name else { return Bytes().u32(8).u32(0).b }
        let body = Bytes().u32(UInt32(value.count)).u32(0).name(name).raw(value)
        let padded = (body.b.count + 7) & ~7
        body.zeros(padded - body.b.count)
        return Bytes().u32(UInt32(8 + padded)).u32(1).raw(body.b).b
    }

    /// Sends `op` with `body` and `extension` after it; `extlen`: total_extlen
    /// in 8-byte units (7.38), nil for the 6.1 layout (0).
    func send(_ c: Client, _ op: FUSEOpcode, parent: UInt64 = 1, _ body: Bytes, ext trailer: [UInt8], extlen: UInt16? = nil) -> Reply {
        var h = c.header(op.rawValue, node: parent, bodyLength: body.b.count + trailer.count)
        if let extlen { h[36] = UInt8(extlen & 0xff); h[37] = UInt8(extlen >> 8) }
        return c.send(raw: h + body.b + trailer)
    }

    func mkdirBody(_ name: String) -> Bytes { Bytes().u32(0o755).u32(0).name(name) }
    func createBody(_ name: String) -> Bytes { Bytes().u32(UInt32(O_RDWR)).u32(0o644).u32(0).u32(0).name(name) }
    func mknodBody(_ name: String) -> Bytes { Bytes().u32(0o010644).u32(0).u32(0).u32(0).name(name) }
    func symlinkBody(_ name: String) -> Bytes { Bytes().name(name).name("target") }
    func tmpfileBody() -> Bytes { Bytes().u32(UInt32(O_RDWR)).u32(0o600).u32(0).u32(0).name("/") }

    func hostXattr(_ path: String, _ name: String) -> String? {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = lgetxattr(path, name, &buf, buf.count)
        return n < 0 ? nil : String(decoding: buf.prefix(n), as: UTF8.self)
    }

    static let expected = label + "\0"

    @Test func offeredOnlyWithTheOption() throws {
        for on in [true, false] {
            let f = try Self.fixture(offer: on)
            var d = Decoder(f.client.initSession(flags2: 1).body, at: 32)  // init_out.flags2
            #expect((d.u32() & 1 != 0) == on, "FUSE_SECURITY_CTX in flags2 only with --security-label (\(on))")
        }
    }

    @Test(arguments: [false, true])
    func everyCreateLabelsTheHostNode(withTotalExtlen: Bool) throws {
        let f = try Self.fixture()
        let c = f.client
        let ext = Self.ext()
        // Linux 6.1 (total_extlen 0) or 7.38 (total_extlen in 8-byte units).
        let units = withTotalExtlen ? UInt16(ext.count / 8) : nil
        #expect(send(c, .mkdir, mkdirBody("d"), ext: ext, extlen: units).ok)
        #expect(send(c, .create, createBody("f"), ext: ext, extlen: units).ok)
        #expect(send(c, .mknod, mknodBody("p"), ext: ext, extlen: units).ok)
        #expect(send(c, .symlink, symlinkBody("l"), ext: ext, extlen: units).ok)
        for n in ["d", "f", "p", "l"] {
            #expect(hostXattr(f.path(n), "security.selinux") == Self.expected, "\(n) carries the label on the host")
        }
        let t = send(c, .tmpfile, tmpfileBody(), ext: ext, extlen: units)
        #expect(t.ok)
        // The O_TMPFILE node has no name: read its label through the server.
        let g = Bytes(); g.u32(256).u32(0).name("security.selinux")
        #expect(String(decoding: c.call(.getxattr, node: t.nodeID, g).body, as: UTF8.self) == Self.expected)
    }

    @Test func noContextMeansNoLabel() throws {
        let f = try Self.fixture()
        #expect(send(f.client, .mkdir, mkdirBody("d"), ext: Self.ext(name: nil)).ok)
        #expect(f.exists("d") && hostXattr(f.path("d"), "security.selinux") == nil)
    }

    @Test func theNameGoesThroughTheXattrMap() throws {
        let f = try Self.fixture(xattrMap: ":map:security.:user.virtiofs.:")
        #expect(send(f.client, .create, createBody("f"), ext: Self.ext()).ok)
        #expect(send(f.client, .mkdir, mkdirBody("d"), ext: Self.ext()).ok)
        for n in ["f", "d"] {
            #expect(hostXattr(f.path(n), "user.virtiofs.security.selinux") == Self.expected, "kept under the host-side prefix")
            #expect(hostXattr(f.path(n), "security.selinux") == nil, "the host's own label namespace untouched")
        }
    }

    /// A label the host refuses fails the create, and the node is gone.
    @Test func aRefusedLabelMakesNoNode() throws {
        let f = try Self.fixture(xattrMap: ":bad:client:security.:: :ok:all:::")
        let c = f.client
        #expect(send(c, .mkdir, mkdirBody("d"), ext: Self.ext()).errno == EPERM)
        #expect(send(c, .create, createBody("f"), ext: Self.ext()).errno == EPERM)
        #expect(send(c, .mknod, mknodBody("p"), ext: Self.ext()).errno == EPERM)
        #expect(send(c, .symlink, symlinkBody("l"), ext: Self.ext()).errno == EPERM)
        #expect(send(c, .tmpfile, tmpfileBody(), ext: Self.ext()).errno == EPERM)
        for n in ["d", "f", "p", "l"] { #expect(!f.exists(n), "\(n) was removed again") }
        #expect(c.lookup(1, "f").errno == ENOENT)
        // Nothing was left behind: the same names can be made afterwards.
        #expect(send(c, .mkdir, mkdirBody("d"), ext: Self.ext(name: nil)).ok)
        #expect(send(c, .create, createBody("f"), ext: Self.ext(name: nil)).ok)
    }

    /// Hostile extensions: each is EINVAL, nothing is created, and the
    /// server never reads past the request.
    @Test func malformedExtensionsAreRefused() throws {
        let f = try Self.fixture()
        let c = f.client
        let value = Array(Self.label.utf8) + [0]
        var cases: [(String, [UInt8], UInt16?)] = [
            ("missing extension", [], nil),
            ("header cut short", [0x10, 0, 0, 0], nil),
            ("size past the request", Bytes().u32(4096).u32(1).u32(4).u32(0).b, nil),
            ("size below 8", Bytes().u32(4).u32(0).b, nil),
            ("unaligned size", Bytes().u32(12).u32(0).u32(0).b, nil),
            ("nr_secctx 2", Bytes().u32(8).u32(2).b, nil),
            ("nr_secctx 31", Bytes().u32(8).u32(31).b, nil),
            ("nr_secctx huge", Bytes().u32(8).u32(0xffff_ffff).b, nil),
            ("supplementary groups (not negotiated)", Bytes().u32(16).u32(32).u32(1).u32(0).b, nil),
            ("two security headers", Self.ext(name: nil) + Self.ext(name: nil), nil),
            ("value size 0", Self.ext(value: []), nil),
            ("not a security.* name", Self.ext(name: "trusted.x"), nil),
            ("security.capability", Self.ext(name: "security.capability"), nil),
            ("total_extlen disagrees", Self.ext(), 1),
            ("total_extlen past the request", Self.ext(), 4000),
        ]
        // The name runs to the end of the extension without a NUL.
        var noNUL = Bytes().u32(24).u32(1).u32(4).u32(0).raw(Array("security".utf8)).b
        cases.append(("name not NUL-terminated", noNUL, nil))
        // fuse_secctx.size runs past the extension (into bytes after it).
        noNUL = Bytes().u32(32).u32(1).u32(200).u32(0).name("security.selinux").zeros(7).b + [UInt8](repeating: 0x41, count: 64)
        cases.append(("value past the extension", noNUL, nil))
        // A name of 256 bytes.
        let long = "security." + String(repeating: "x", count: 247)
        cases.append(("name longer than 255", Self.ext(name: long, value: value), nil))
        for (i, (what, ext, extlen)) in cases.enumerated() {
            let r = send(c, .mkdir, mkdirBody("d\(i)"), ext: ext, extlen: extlen)
            #expect(r.errno == EINVAL, "\(what): \(r.errno)")
            #expect(!f.exists("d\(i)"), "\(what): nothing made")
            let cr = send(c, .create, createBody("f\(i)"), ext: ext, extlen: extlen)
            #expect(cr.errno == EINVAL && !f.exists("f\(i)"), "\(what): CREATE \(cr.errno)")
        }
    }

    /// Without the flag negotiated, bytes after the names are not parsed
    /// (as before): no label is set.
    @Test func notNegotiatedIgnoresTheBytes() throws {
        let f = try Self.fixture(negotiate: false)
        #expect(send(f.client, .mkdir, mkdirBody("d"), ext: Self.ext()).ok)
        #expect(f.exists("d") && hostXattr(f.path("d"), "security.selinux") == nil)
    }
}
