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
        f.writeHost("secret", "uid 1000's data")
        #expect(chown(f.path("secret"), 1000, 1000) == 0)
        #expect(chmod(f.path("secret"), 0o600) == 0)
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
        f.writeHost("prog", "#!/bin/sh\n")
        #expect(chown(f.path("prog"), 1000, 1000) == 0)
        #expect(chmod(f.path("prog"), 0o4755) == 0)
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
}
