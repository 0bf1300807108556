import VfsvmFUSETestSupport
import CVfsvmLinux
import Glibc
import Testing
import VfsvmFUSE
import VfsvmPassthroughFS
import VfsvmSys

/// Requests that create or open run with the caller's credentials, and only
/// those: an unprivileged guest user must not reach what the host's
/// permissions keep from them.
@Suite(.serialized) struct PermissionTests {
    /// Runs `body` with the calling thread's supplementary groups set to
    /// `groups` (the test's requests run on this thread), as a server
    /// started by a user in those groups would have them.
    private func withThreadGroups(_ groups: [UInt32], _ body: () throws -> Void) rethrows {
        let n = Int(vfsvm_get_thread_groups(0, nil))
        var saved = [UInt32](repeating: 0, count: max(n, 1))
        _ = vfsvm_get_thread_groups(Int32(n), &saved)
        #expect(vfsvm_set_thread_groups(groups.count, groups) == 0)
        defer { _ = vfsvm_set_thread_groups(n, saved) }
        try body()
    }

    /// CREATE without O_EXCL of a name that exists (made after the guest's
    /// LOOKUP: by the host, another guest): uid 2000 must not open, let
    /// alone truncate, uid 1000's 0600 file.
    @Test func createOfAnExistingFileOpensWithTheCallersCredentials() throws {
        let f = try Fixture()
        #expect(f.writeHost("secret", "uid 1000's data", owner: 1000, mode: 0o600))
        let c = f.client
        c.uid = 2000
        c.gid = 2000
        let r = c.create(1, "secret", mode: 0o644, flags: UInt32(O_RDWR | O_CREAT | O_TRUNC))
        #expect(r.errno == EACCES)
        #expect(f.readHost("secret") == "uid 1000's data", "contents intact")
        // The owner may (and truncates it).
        c.uid = 1000
        c.gid = 1000
        let mine = c.create(1, "secret", mode: 0o644, flags: UInt32(O_RDWR | O_CREAT | O_TRUNC))
        #expect(mine.ok)
        #expect(f.readHost("secret") == "")
    }

    /// CREATE's own open flags apply to an existing file too:
    /// FUSE_OPEN_KILL_SUIDGID with O_TRUNC clears the setuid bit.
    @Test func createOfAnExistingFileKeepsKillSUIDGID() throws {
        let f = try Fixture()
        #expect(f.writeHost("prog", "#!/bin/sh\n", owner: 1000, mode: 0o4755))
        let c = f.client
        c.uid = 1000
        c.gid = 1000
        let b = Bytes()
        b.u32(UInt32(O_RDWR | O_CREAT | O_TRUNC)).u32(0o755).u32(0).u32(UInt32(FUSE_OPEN_KILL_SUIDGID)).name("prog")
        #expect(c.call(.create, node: 1, b).ok)
        let st = try #require(f.statHost("prog"))
        #expect(st.st_mode & 0o4000 == 0, "setuid cleared")
    }

    /// The bug class of virtiofsd's CVE-2022-0358: only fsuid/fsgid were
    /// switched, so the server's own supplementary groups counted for the
    /// caller. In a setgid directory of a group the server is in but the
    /// caller is not, a file the caller creates with S_ISGID must lose it,
    /// whichever request creates it.
    @Test func nonMemberCannotCreateSetgidFilesThroughTheServersGroups() throws {
        let f = try Fixture()
        #expect(mkdir(f.path("g"), 0o777) == 0)
        #expect(chown(f.path("g"), 0, 777) == 0)
        #expect(chmod(f.path("g"), 0o2777) == 0)
        try withThreadGroups([777]) {
            let c = f.client
            let g = c.lookup(1, "g").nodeID
            c.uid = 2000
            c.gid = 2000
            #expect(c.create(g, "created", mode: 0o2755).ok)
            let mknod = Bytes()
            mknod.u32(0o102755).u32(0).u32(0).u32(0).name("made")
            #expect(c.call(.mknod, node: g, mknod).ok)
            let tmp = Bytes()
            tmp.u32(UInt32(O_RDWR)).u32(0o2755).u32(0).u32(0)
            let t = c.call(.tmpfile, node: g, tmp)
            #expect(t.ok)
            for name in ["created", "made"] {
                let st = try #require(f.statHost("g/" + name))
                #expect(st.st_gid == 777, "\(name): the directory's group")
                #expect(st.st_mode & 0o2000 == 0, "\(name): no S_ISGID for a non-member")
                #expect(st.st_mode & 0o755 == 0o755)
            }
            #expect(t.entryAttr.mode & 0o2000 == 0, "tmpfile: no S_ISGID for a non-member")
            // As the kernel does, a new directory inherits S_ISGID from a
            // setgid parent whoever makes it.
            #expect(c.mkdir(g, "sub", mode: 0o755).ok)
            let sub = try #require(f.statHost("g/sub"))
            #expect(sub.st_gid == 777 && sub.st_mode & 0o2000 != 0)
            // A member keeps the bit on a file.
            c.gid = 777
            #expect(c.create(g, "member", mode: 0o2755).ok)
            #expect((f.statHost("g/member")?.st_mode ?? 0) & 0o2000 != 0)
        }
    }

    /// The server's supplementary groups do not grant the caller access
    /// either (ACCESS is checked with the caller's ids only).
    @Test func accessIsCheckedWithoutTheServersGroups() throws {
        let f = try Fixture()
        f.writeHost("grp", "group 777 only")
        #expect(chown(f.path("grp"), 0, 777) == 0)
        #expect(chmod(f.path("grp"), 0o040) == 0)
        try withThreadGroups([777]) {
            let c = f.client
            let n = c.lookup(1, "grp").nodeID
            c.uid = 2000
            c.gid = 2000
            let b = Bytes()
            b.u32(UInt32(R_OK)).u32(0)
            #expect(c.call(.access, node: n, b).errno == EACCES)
            c.gid = 777
            #expect(c.call(.access, node: n, b).ok)
        }
    }

    /// struct vfs_cap_data, revision 2 (VFS_CAP_REVISION_2 | effective),
    /// granting CAP_NET_RAW: what setcap cap_net_raw+ep writes.
    private static let capability: [UInt8] = {
        var b: [UInt8] = []
        for v: UInt32 in [0x0200_0001, 1 << 13, 0, 0, 0] {
            for k in 0..<4 { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(k)))) }
        }
        return b
    }()

    /// A setuid file (mode 04777, owned by 1000) that also carries file
    /// capabilities.
    private func privilegedFile(_ f: Fixture, _ name: String) -> Bool {
        guard f.writeHost(name, "privileged program", owner: 1000, mode: 0o4777) else { return false }
        // chown would drop the capability; it is set last.
        return Self.capability.withUnsafeBytes { setxattr(f.path(name), "security.capability", $0.baseAddress, $0.count, 0) } == 0
    }

    private func hasCapability(_ f: Fixture, _ name: String) -> Bool {
        var buf = [UInt8](repeating: 0, count: 64)
        return getxattr(f.path(name), "security.capability", &buf, buf.count) > 0
    }

    /// With FUSE_HANDLE_KILLPRIV_V2 the guest kernel leaves killing
    /// privileges to the server: a write by another user
    /// (FUSE_WRITE_KILL_SUIDGID), a truncate (FATTR_KILL_SUIDGID) and a
    /// chown must leave the file neither setuid nor with file
    /// capabilities, or the other user has planted code that runs with
    /// them. The setuid bit is the server's to clear (it writes as root,
    /// which has CAP_FSETID); security.capability the host kernel removes
    /// itself on any write, truncate or chown, root's included
    /// (file_remove_privs, do_truncate, chown_common), through either I/O
    /// engine.
    @Test(arguments: ["sync", "uring"])
    func writeTruncateAndChownDropSetuidAndFileCapabilities(engine: String) throws {
        let io: any IOEngine
        if engine == "uring" {
            guard let uring = IOURingEngine.make() else {
                Issue.record("io_uring is not available here; the uring case cannot run")
                return
            }
            io = uring
        } else {
            io = SyncIOEngine()
        }
        let f = try Fixture(engine: io)
        for name in ["w", "t", "o"] {
            #expect(privilegedFile(f, name), "setcap-style xattr set on \(name)")
            #expect(hasCapability(f, name) && (f.statHost(name)?.st_mode ?? 0) & 0o4000 != 0, "\(name) starts setuid with capabilities")
        }
        let c = f.client
        c.uid = 2000
        c.gid = 2000
        let w = c.lookup(1, "w").nodeID
        let fh = c.open(w, flags: UInt32(O_WRONLY)).openHandle
        #expect(c.write(w, fh: fh, offset: 0, Array("planted".utf8), flags: UInt32(FUSE_WRITE_KILL_SUIDGID)).u32 == 7)
        #expect(!hasCapability(f, "w"), "write: security.capability gone")
        #expect((f.statHost("w")?.st_mode ?? 0) & 0o4000 == 0, "write: setuid gone")

        let t = c.lookup(1, "t").nodeID
        let fattrSize: UInt32 = 1 << 3, fattrKillSUIDGID: UInt32 = 1 << 11
        #expect(c.setattr(t, valid: fattrSize | fattrKillSUIDGID, size: 0).ok)
        #expect(!hasCapability(f, "t"), "truncate: security.capability gone")
        #expect((f.statHost("t")?.st_mode ?? 0) & 0o4000 == 0, "truncate: setuid gone")

        c.uid = 0
        c.gid = 0
        let o = c.lookup(1, "o").nodeID
        #expect(c.setattr(o, valid: 1 << 1, uid: 2000).ok)  // FATTR_UID
        #expect(!hasCapability(f, "o"), "chown: security.capability gone")
        #expect((f.statHost("o")?.st_mode ?? 0) & 0o4000 == 0, "chown: setuid gone")
    }
}
