import CVfsvmLinux
import Glibc
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmPassthroughFS

/// --posix-acl at the FUSE level.
@Suite struct PosixACLTests {
    /// A minimal ACL in the kernel's xattr format (posix_acl_xattr:
    /// version 2, then tag/perm/id entries): owner, group and other with
    /// these permission bits.
    static func acl(user: UInt16, group: UInt16, other: UInt16) -> [UInt8] {
        let b = Bytes()
        b.u32(2)
        b.u16(0x01).u16(user).u32(0xffff_ffff)   // ACL_USER_OBJ
        b.u16(0x04).u16(group).u32(0xffff_ffff)  // ACL_GROUP_OBJ
        b.u16(0x20).u16(other).u32(0xffff_ffff)  // ACL_OTHER
        return b.b
    }

    static func fixture(acl: Bool) throws -> Fixture {
        var o = PassthroughOptions()
        o.posixACL = acl
        var s = FUSEServerOptions()
        s.posixACL = acl
        return try Fixture(options: o, server: s)
    }

    private func setDefaultACL(_ path: String) -> Bool {
        let v = Self.acl(user: 7, group: 7, other: 7)
        return v.withUnsafeBytes { setxattr(path, "system.posix_acl_default", $0.baseAddress, $0.count, 0) } == 0
    }

    @Test func offeredOnlyWhenOn() throws {
        func offered(_ on: Bool) throws -> Bool {
            let f = try Self.fixture(acl: on)
            var d = Decoder(f.client.initSession().body, at: 12)
            return UInt64(d.u32()) & FUSEInitFlag.posixACL != 0
        }
        #expect(try offered(true))
        #expect(try !offered(false))
    }

    /// A local create in a directory with a default ACL ignores the umask:
    /// the inherited ACL decides. Without ACLs (or without a default ACL)
    /// the umask applies.
    @Test func defaultACLReplacesTheUmask() throws {
        for on in [true, false] {
            let f = try Self.fixture(acl: on)
            #expect(mkdir(f.path("inherit"), 0o777) == 0 && mkdir(f.path("plain"), 0o777) == 0)
            guard setDefaultACL(f.path("inherit")) else {
                Issue.record("cannot set a default ACL on \(f.dir) (file system without ACLs?): errno \(errno)")
                return
            }
            let c = f.client
            let inherit = c.lookup(1, "inherit").nodeID, plain = c.lookup(1, "plain").nodeID
            #expect(c.create(inherit, "f", mode: 0o666, umask: 0o022).ok)
            #expect(c.mkdir(inherit, "d", mode: 0o777, umask: 0o022).ok)
            #expect(c.create(plain, "f", mode: 0o666, umask: 0o022).ok)
            let fileMode = (f.statHost("inherit/f")?.st_mode ?? 0) & 0o777
            let dirMode = (f.statHost("inherit/d")?.st_mode ?? 0) & 0o777
            #expect(fileMode == (on ? 0o666 : 0o644), "acl \(on): file mode \(String(fileMode, radix: 8))")
            #expect(dirMode == (on ? 0o777 : 0o755), "acl \(on): dir mode \(String(dirMode, radix: 8))")
            #expect((f.statHost("plain/f")?.st_mode ?? 0) & 0o777 == 0o644, "no default ACL: the umask applies")
        }
    }

    /// FUSE_SETXATTR_ACL_KILL_SGID: the guest kernel asks for S_ISGID to go
    /// when a caller outside the group sets an access ACL.
    @Test func settingAnAccessACLWithKillSGIDClearsSetgid() throws {
        let f = try Self.fixture(acl: true)
        f.writeHost("g", "x")
        #expect(chmod(f.path("g"), 0o2775) == 0)
        let c = f.client
        #expect(c.initSession(flags: 0xffff_ffff).ok)  // FUSE_SETXATTR_EXT agreed
        let n = c.lookup(1, "g").nodeID
        let value = Self.acl(user: 7, group: 7, other: 5)
        func set(kill: Bool) -> Reply {
            let s = Bytes()
            s.u32(UInt32(value.count)).u32(0).u32(kill ? 1 : 0).u32(0).name("system.posix_acl_access").raw(value)
            return c.call(.setxattr, node: n, s)
        }
        #expect(set(kill: false).ok)
        #expect((f.statHost("g")?.st_mode ?? 0) & 0o2000 != 0, "kept without the flag")
        #expect(set(kill: true).ok)
        let mode = (f.statHost("g")?.st_mode ?? 0) & 0o7777
        #expect(mode == 0o775, "S_ISGID cleared, the ACL's bits kept: \(String(mode, radix: 8))")
    }
}
