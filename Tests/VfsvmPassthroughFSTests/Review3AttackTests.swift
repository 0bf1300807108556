import VfsvmFUSETestSupport
import CVfsvmLinux
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// review3's attacks, each asserting what a host user sees.
@Suite struct Review3AttackTests {
    /// A guest on a read-only share takes a READ lock on a host executable
    /// (opened read-only, or not opened at all): the server opens its lock fd
    /// O_RDWR, and while that fd is held the host cannot execute the file.
    @Test func readLockOnReadOnlyShareMakesHostBinaryUnexecutable() throws {
        var so = FUSEServerOptions()
        so.readOnly = true
        let f = try Fixture(server: so)
        #expect(system("cp /bin/true '\(f.path("tool"))' && chmod 0755 '\(f.path("tool"))'") == 0)
        #expect(system("'\(f.path("tool"))'") == 0)  // runs before
        let c = f.client
        let n = c.lookup(1, "tool").nodeID
        let fh = c.open(n, flags: UInt32(O_RDONLY)).openHandle
        #expect(c.lk(.setlk, node: n, fh: fh, owner: 99, start: 0, end: 0, type: UInt32(F_RDLCK)).ok)
        // The host executes the file: it must still run (exit 0), not fail
        // with ETXTBSY (sh reports 126).
        let status = system("'\(f.path("tool"))' 2>/dev/null")
        #expect(status == 0, "host exec of a file a guest only read-locked: status \(status)")
        // No handle at all (fh 0 names nothing): the same.
        #expect(c.lk(.setlk, node: n, fh: 0, owner: 100, start: 1, end: 1, type: UInt32(F_RDLCK)).errno != 0)
    }

    /// `vfsvm mount` serves every host user from one fd budget (derived from
    /// the soft RLIMIT_NOFILE it was started with, ~704 of 1024; mount does
    /// not raise it): one unprivileged user holding that many open files makes
    /// every other user's open fail with EMFILE.
    @Test func oneHostUserExhaustsTheMountsOpenFileBudget() throws {
        var o = PassthroughOptions()
        o.maxOpenHandles = 8
        let f = try Fixture(options: o)
        f.writeHost("shared", "x")
        let c = f.client
        let n = c.lookup(1, "shared").nodeID
        c.uid = 1000; c.gid = 1000
        var held = 0
        while c.open(n, flags: UInt32(O_RDONLY)).ok { held += 1; if held > 64 { break } }
        c.uid = 1001; c.gid = 1001
        let other = c.open(n, flags: UInt32(O_RDONLY))
        #expect(other.ok, "uid 1001's open after uid 1000 holds \(held) handles: errno \(other.errno)")
    }
}

@Suite struct Review3XattrMapRouteTests {
    func set(_ c: Client, _ n: UInt64, _ name: String, _ value: [UInt8]) -> Reply {
        let s = Bytes(); s.u32(UInt32(value.count)).u32(0).u32(0).u32(0).name(name).raw(value)
        return c.call(.setxattr, node: n, s)
    }

    /// Under --translate-uid/gid the refusal of system.posix_acl_* and
    /// security.capability looks at the guest's name, before --xattrmap:
    /// a map whose prefix rule lands another guest name on those host names
    /// routes around it.
    @Test func xattrMapRoutesAroundTheTranslationRefusal() throws {
        var o = FUSEServerOptions()
        o.idTranslation = IDTranslationTests.translation()
        var p = PassthroughOptions()
        p.xattr = true
        p.xattrMap = try XattrNameMap(parsing: ":prefix:client:acl_:system.posix_: :prefix:client:capability:security.: :ok:all:::")
        let f = try Fixture(options: p, server: o)
        f.writeHost("a", "x")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        // user::rw- user:4242:rwx group::r-- mask::rwx other::r-- (4242: a host id, untranslated)
        var acl: [UInt8] = [2, 0, 0, 0]
        for (tag, perm, id) in [(1, 6, UInt32.max), (2, 7, 4242), (4, 4, UInt32.max), (0x10, 7, UInt32.max), (0x20, 4, UInt32.max)] as [(UInt16, UInt16, UInt32)] {
            acl += withUnsafeBytes(of: tag.littleEndian, Array.init) + withUnsafeBytes(of: perm.littleEndian, Array.init)
                + withUnsafeBytes(of: id.littleEndian, Array.init)
        }
        let r = set(c, n, "acl_access", acl)
        #expect(r.errno == EOPNOTSUPP)
        var buf = [UInt8](repeating: 0, count: 256)
        let got = getxattr(f.path("a"), "system.posix_acl_access", &buf, buf.count)
        #expect(got < 0, "an ACL naming host uid 4242 reached the host file (SETXATTR errno \(r.errno))")
        let cap: [UInt8] = [0, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        let rc = set(c, n, "capability", cap)
        #expect(rc.errno == EPERM)
        #expect(getxattr(f.path("a"), "security.capability", &buf, buf.count) < 0, "a capability reached the host file (SETXATTR errno \(rc.errno))")
    }

    /// The converse: a map that stores the guest's ACL under a user.* name
    /// makes it a plain value on the host (no host ids are read from it),
    /// so it is not refused.
    @Test func anACLMappedAwayIsNotRefused() throws {
        var o = FUSEServerOptions()
        o.idTranslation = IDTranslationTests.translation()
        var p = PassthroughOptions()
        p.xattr = true
        p.xattrMap = try XattrNameMap(parsing: ":map::user.virtiofs.:")
        let f = try Fixture(options: p, server: o)
        f.writeHost("a", "x")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        let value: [UInt8] = [2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff]
        #expect(set(c, n, "system.posix_acl_access", value).ok)
        var buf = [UInt8](repeating: 0, count: 256)
        #expect(getxattr(f.path("a"), "user.virtiofs.system.posix_acl_access", &buf, buf.count) == value.count)
        #expect(getxattr(f.path("a"), "system.posix_acl_access", &buf, buf.count) < 0)
    }
}
