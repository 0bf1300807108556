import Glibc
import CVfsvmLinux
import Testing
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmPassthroughFS

/// --translate-uid / --translate-gid at the FUSE level: what the guest
/// sees in replies and what the host file gets.
@Suite struct IDTranslationTests {
    /// map:0:1000:1 for uids and gids, forbid-guest:5:1, squash-host
    /// 2000..2009 -> 99 (uids only).
    static func translation() -> FUSEIDTranslation {
        var uids = FUSEIDMap()
        uids.guestToHost = [.init(start: 0, count: 1, target: .base(1000)), .init(start: 5, count: 1, target: .forbidden)]
        uids.hostToGuest = [.init(start: 1000, count: 1, target: .base(0)), .init(start: 2000, count: 10, target: .single(99))]
        var gids = FUSEIDMap()
        gids.guestToHost = [.init(start: 0, count: 1, target: .base(1000))]
        gids.hostToGuest = [.init(start: 1000, count: 1, target: .base(0))]
        return FUSEIDTranslation(uids: uids, gids: gids)
    }

    static func fixture() throws -> Fixture {
        var o = FUSEServerOptions()
        o.idTranslation = translation()
        return try Fixture(server: o)
    }

    @Test func guestRootCreatesAsTheMappedHostOwnerAndSeesItselfAsRoot() throws {
        let f = try Self.fixture()
        let c = f.client
        c.uid = 0; c.gid = 0
        let r = c.create(1, "mine")
        #expect(r.ok, "errno \(r.errno)")
        #expect(r.entryAttr.uid == 0 && r.entryAttr.gid == 0, "the guest sees its own file as root's")
        let st = try #require(f.statHost("mine"))
        #expect(st.st_uid == 1000 && st.st_gid == 1000, "host owner \(st.st_uid):\(st.st_gid)")
        let a = c.getattr(r.nodeID).attr
        #expect(a.uid == 0 && a.gid == 0)
        let d = c.mkdir(1, "dir")
        #expect(d.ok && f.statHost("dir")?.st_uid == 1000 && d.entryAttr.uid == 0)
    }

    @Test func hostOwnersOutsideTheRulesPassAndSquashedOnesCollapse() throws {
        let f = try Self.fixture()
        #expect(f.writeHost("other", "x", owner: 3000, mode: 0o644))
        #expect(f.writeHost("squashed", "x", owner: 2005, mode: 0o644))
        #expect(f.writeHost("hostroot", "x", owner: 0, mode: 0o644))
        let c = f.client
        #expect(c.getattr(c.lookup(1, "other").nodeID).attr.uid == 3000)
        #expect(c.lookup(1, "squashed").entryAttr.uid == 99, "host 2000..2009 all show as 99")
        #expect(c.lookup(1, "squashed").entryAttr.gid == 2005, "gids have no squash rule")
        #expect(c.lookup(1, "hostroot").entryAttr.uid == 0, "no rule maps host 0: it passes as 0")
    }

    @Test func setattrOwnerIsMappedToTheHost() throws {
        let f = try Self.fixture()
        #expect(f.writeHost("a", "x", owner: 3000, mode: 0o644))
        let c = f.client
        let node = c.lookup(1, "a").nodeID
        // FATTR_UID | FATTR_GID
        let r = c.setattr(node, valid: (1 << 1) | (1 << 2), uid: 0, gid: 0)
        #expect(r.ok && r.attr.uid == 0 && r.attr.gid == 0, "errno \(r.errno)")
        let st = try #require(f.statHost("a"))
        #expect(st.st_uid == 1000 && st.st_gid == 1000)
        #expect(c.setattr(node, valid: 1 << 1, uid: 5).errno == EPERM, "chown to a forbidden guest uid")
        #expect(f.statHost("a")?.st_uid == 1000)
    }

    @Test func forbiddenGuestUidMayLookButNotCreate() throws {
        let f = try Self.fixture()
        f.writeHost("seen", "x")
        let c = f.client
        c.uid = 5; c.gid = 5
        #expect(c.lookup(1, "seen").ok)
        #expect(c.create(1, "nope").errno == EPERM)
        #expect(c.mkdir(1, "nodir").errno == EPERM)
        #expect(!f.exists("nope") && !f.exists("nodir"))
    }

    @Test func readdirplusEntriesCarryGuestIds() throws {
        let f = try Self.fixture()
        #expect(f.writeHost("mine", "x", owner: 1000, mode: 0o644))
        let c = f.client
        let fh = c.opendir(1).openHandle
        let r = c.readdir(1, fh: fh, offset: 0, plus: true)
        #expect(r.ok)
        // Each direntplus: fuse_entry_out (attr uid at 40 + 68) then the dirent.
        var p = 0, found = false
        while p + 128 + 24 <= r.body.count {
            var d = Decoder(r.body, at: p + 128 + 16)
            let nameLength = Int(d.u32())
            let name = String(decoding: r.body[(p + 128 + 24)..<(p + 128 + 24 + nameLength)], as: UTF8.self)
            if name == "mine" {
                var u = Decoder(r.body, at: p + 40 + 68)
                #expect(u.u32() == 0, "host 1000 shows as guest 0 in READDIRPLUS")
                found = true
            }
            p += (128 + 24 + nameLength + 7) & ~7
        }
        #expect(found)
    }

    @Test func noTranslationIsIdentity() throws {
        let f = try Fixture()
        #expect(f.writeHost("a", "x", owner: 1000, mode: 0o644))
        #expect(f.client.lookup(1, "a").entryAttr.uid == 1000)
        #expect(FUSEIDMap().host(forGuest: 7) == 7 && FUSEIDMap().guest(forHost: 7) == 7)
    }
}

/// With a translation, xattrs whose values hold host ids are refused: a
/// guest could otherwise put an ACL entry naming any host id on a host file
/// (or read host ids back untranslated), or give a file capabilities.
@Suite struct IDTranslationXattrTests {
    func set(_ c: Client, _ n: UInt64, _ name: String, _ value: [UInt8]) -> Reply {
        let s = Bytes(); s.u32(UInt32(value.count)).u32(0).u32(0).u32(0).name(name).raw(value)
        return c.call(.setxattr, node: n, s)
    }

    @Test func aclAndCapabilityXattrsAreRefusedUnderTranslation() throws {
        var o = FUSEServerOptions()
        o.idTranslation = IDTranslationTests.translation()
        var p = PassthroughOptions()
        p.xattr = true
        let f = try Fixture(options: p, server: o)
        f.writeHost("a", "x")
        let c = f.client
        let n = c.lookup(1, "a").nodeID
        // user::rw- user:4242:rwx group::r-- mask::rwx other::r--
        var acl: [UInt8] = [2, 0, 0, 0]
        for (tag, perm, id) in [(1, 6, UInt32.max), (2, 7, 4242), (4, 4, UInt32.max), (0x10, 7, UInt32.max), (0x20, 4, UInt32.max)] as [(UInt16, UInt16, UInt32)] {
            acl += withUnsafeBytes(of: tag.littleEndian, Array.init) + withUnsafeBytes(of: perm.littleEndian, Array.init)
                + withUnsafeBytes(of: id.littleEndian, Array.init)
        }
        #expect(set(c, n, "system.posix_acl_access", acl).errno == EOPNOTSUPP)
        var buf = [UInt8](repeating: 0, count: 256)
        #expect(getxattr(f.path("a"), "system.posix_acl_access", &buf, buf.count) < 0, "no ACL reached the host file")
        // A v2 capability: cap_setuid+ep.
        let cap: [UInt8] = [0, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        #expect(set(c, n, "security.capability", cap).errno == EPERM)
        #expect(getxattr(f.path("a"), "security.capability", &buf, buf.count) < 0, "no capability reached the host file")
        let g = Bytes(); g.u32(256).u32(0).name("system.posix_acl_access")
        #expect(c.call(.getxattr, node: n, g).errno == EOPNOTSUPP)
        #expect(set(c, n, "user.ok", Array("v".utf8)).ok, "other names still work")
    }
}
