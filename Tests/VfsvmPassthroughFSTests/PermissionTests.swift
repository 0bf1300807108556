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
}
