import Glibc
import Testing
import VfsvmSys

/// `vfsvm serve` (often root, started by libvirt's hook) on a share path
/// another user controls a part of: with a symbolic link there, serve
/// shared the link's target (the attacker review's finding 2: alice swaps
/// /tmp/x/alice/share for a link to /etc and the guest gets /etc). Serve
/// now opens the share once and refuses a path through any symbolic link.
@Suite(.serialized) struct SymlinkShareTests {
    /// serve on `dir` (from a fresh work directory `prepare` fills), run to
    /// its end: exit code and stderr.
    func serve(sharing dir: (String) -> String, _ extra: [String] = []) throws -> (exitCode: Int32?, stderr: String, work: TemporaryDirectory) {
        let work = try TemporaryDirectory()
        let path = dir(work.path)
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm"),
                                     arguments: ["serve", "--socket-path", work.path + "/fs.sock", "--shared-dir", path] + extra,
                                     stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 10_000)
        if status == nil { child.send(signal: SIGKILL) }
        let text = availableText(errors.read)
        return (child.exitCode, text, work)
    }

    @Test(.timeLimit(.minutes(1)), arguments: ["namespace", "chroot", "none"])
    func aShareThatIsASymbolicLinkIsRefused(sandbox: String) throws {
        try #require(getuid() == 0, "the namespace and chroot sandboxes need root; cannot run as uid \(getuid())")
        let r = try serve(sharing: { work in
            mkdir(work + "/alice", 0o755)
            symlink("/etc", work + "/alice/share")
            return work + "/alice/share"
        }, ["--sandbox", sandbox])
        #expect(r.exitCode == 1, "exit \(String(describing: r.exitCode)); stderr: \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines.first == "Error: cannot share \(r.work.path)/alice/share: it is a symbolic link (to /etc); give the directory's real path",
                "stderr: \(r.stderr)")
    }

    @Test(.timeLimit(.minutes(1)), arguments: ["namespace", "none"])
    func aShareBelowASymbolicLinkIsRefused(sandbox: String) throws {
        try #require(getuid() == 0, "the namespace sandbox needs root; cannot run as uid \(getuid())")
        let r = try serve(sharing: { work in
            mkdir(work + "/real", 0o755)
            mkdir(work + "/real/share", 0o755)
            symlink(work + "/real", work + "/alice")
            return work + "/alice/share"
        }, ["--sandbox", sandbox])
        #expect(r.exitCode == 1, "exit \(String(describing: r.exitCode)); stderr: \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines.first == "Error: cannot share \(r.work.path)/alice/share: the path goes through a symbolic link (it is \(r.work.path)/real/share); give the directory's real path",
                "stderr: \(r.stderr)")
    }

    /// The check compares with the path made absolute lexically: a plain
    /// directory named with "." and ".." and a trailing '/' still serves.
    @Test(.timeLimit(.minutes(1)))
    func aRealDirectoryNamedWithDotsIsServed() throws {
        try #require(getuid() == 0, "the namespace sandbox needs root; cannot run as uid \(getuid())")
        let work = try TemporaryDirectory()
        try #require(mkdir(work.path + "/a", 0o755) == 0 && mkdir(work.path + "/share", 0o755) == 0)
        #expect(ShareDirectory.lexicallyAbsolute(work.path + "/./a/../share/") == work.path + "/share")
        let fd = try ShareDirectory.open(work.path + "/./a/../share/")
        #expect(try fd.stat().isDirectory)
    }
}
