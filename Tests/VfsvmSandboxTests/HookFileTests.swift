import Glibc
import Testing
import VfsvmSys

/// `vfsvm libvirt-hook` runs as root and creates files next to each share's
/// socket (the attacker review's findings 3 and 9): the pid file was opened
/// with O_CREAT|O_TRUNC, following a symlink another user planted there (any
/// file on the host truncated and overwritten with a pid), in a directory
/// nobody checked, and the socket was bound with the umask's mode (root's
/// 0755: QEMU as libvirt-qemu could not connect). The tests run the built
/// hook as libvirt would: arguments, the domain XML on stdin.
@Suite(.serialized) struct HookFileTests {
    /// A hook call for one share at `socket` on `share`: exit code and stderr.
    func hook(_ operation: [String], socket: String, share: String, work: TemporaryDirectory,
              qemuConf: String? = nil) throws -> (exitCode: Int32?, stderr: String) {
        let xml = """
            <domain type='qemu'><name>g</name>
              <metadata><vfsvm:shares xmlns:vfsvm='urn:x-vfsvm:libvirt-hook:1'><vfsvm:share socket='\(socket)' dir='\(share)'/></vfsvm:shares></metadata>
              <memory unit='MiB'>256</memory><os><type>hvm</type><kernel>/k</kernel></os>
              <devices><filesystem type='mount'><driver type='virtiofs'/><source socket='\(socket)'/><target dir='t'/></filesystem></devices>
            </domain>
            """
        let xmlPath = work.path + "/domain-\(operation[0]).xml"
        let xmlFD = try FileDescriptor.open(xmlPath, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try xmlFD.writeAll(Array(xml.utf8))
        mkdir(work.path + "/log", 0o700)
        setenv("VFSVM_HOOK_LOG_DIR", work.path + "/log", 1)
        setenv("VFSVM_HOOK_QEMU_CONF", qemuConf ?? work.path + "/no-qemu.conf", 1)
        defer {
            unsetenv("VFSVM_HOOK_LOG_DIR")
            unsetenv("VFSVM_HOOK_QEMU_CONF")
        }
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm"), arguments: ["libvirt-hook", "g"] + operation + ["-"],
                                     stdin: try FileDescriptor.open(xmlPath, O_RDONLY), stderr: errors.write)
        if child.wait(timeoutMilliseconds: 10_000) == nil { child.send(signal: SIGKILL) }
        let text = availableText(errors.read)
        return (child.exitCode, text)
    }

    func setUp() throws -> (work: TemporaryDirectory, dir: String, share: String, victim: String) {
        try #require(getuid() == 0, "the hook runs as root (it starts a sandboxed serve); cannot run as uid \(getuid())")
        let work = try TemporaryDirectory("vfsvm-hook")
        let dir = work.path + "/sockets"
        let share = work.path + "/share"
        try #require(mkdir(dir, 0o755) == 0 && chmod(dir, 0o755) == 0 && mkdir(share, 0o755) == 0)
        let victim = work.path + "/victim"
        let fd = try FileDescriptor.open(victim, O_WRONLY | O_CREAT, mode: 0o644)
        try fd.writeAll(Array("precious\n".utf8))
        return (work, dir, share, victim)
    }

    @Test(.timeLimit(.minutes(1)))
    func aSymlinkPlantedAtThePidFileIsRefusedAndItsTargetUnchanged() throws {
        let (work, dir, share, victim) = try setUp()
        let socket = dir + "/fs.sock"
        try #require(symlink(victim, socket + ".vfsvm.pid") == 0)
        let r = try hook(["prepare", "begin"], socket: socket, share: share, work: work)
        defer { _ = try? hook(["release", "end"], socket: socket, share: share, work: work) }  // should the hook have started serve
        #expect(r.exitCode == 1, "exit \(String(describing: r.exitCode)); stderr: \(r.stderr)")
        #expect(r.stderr == "vfsvm libvirt-hook: domain g: refusing pid file \(socket).vfsvm.pid: it exists and is not a regular file of root's (a symbolic link?); remove it\n")
        #expect(try readTextFile(victim) == "precious\n", "the symlink's target was written")
        var st = stat()
        #expect(lstat(socket, &st) != 0, "a socket was left behind")
    }

    @Test(.timeLimit(.minutes(1)), arguments: [0o777, 0o1777, 0o775])
    func aSocketDirectoryOthersCanWriteIsRefused(mode: Int) throws {
        let (work, dir, share, _) = try setUp()
        try #require(chmod(dir, mode_t(mode)) == 0)
        let socket = dir + "/fs.sock"
        let r = try hook(["prepare", "begin"], socket: socket, share: share, work: work)
        defer { _ = try? hook(["release", "end"], socket: socket, share: share, work: work) }  // should the hook have started serve
        #expect(r.exitCode == 1, "exit \(String(describing: r.exitCode)); stderr: \(r.stderr)")
        #expect(r.stderr == "vfsvm libvirt-hook: domain g: refusing socket \(socket): the socket directory is writable by other users (mode \(String(mode, radix: 8))); the hook (root) makes the socket and its pid file there, so keep them in a root-owned directory only root can write to, such as /run/vfsvm\n")
        var st = stat()
        #expect(lstat(socket + ".vfsvm.pid", &st) != 0 && lstat(socket, &st) != 0, "the hook created files there")
    }

    @Test(.timeLimit(.minutes(1)))
    func aSocketDirectoryOwnedByAnotherUserIsRefused() throws {
        let (work, dir, share, _) = try setUp()
        try #require(chown(dir, 65534, 65534) == 0)
        let r = try hook(["prepare", "begin"], socket: dir + "/fs.sock", share: share, work: work)
        defer { _ = try? hook(["release", "end"], socket: dir + "/fs.sock", share: share, work: work) }
        #expect(r.exitCode == 1 && r.stderr.contains("the socket directory is owned by uid 65534"), "stderr: \(r.stderr)")
    }

    /// The socket is 0600 (the umask does not widen it) and, with qemu.conf
    /// naming the user QEMU runs as, that user's; the pid file holds serve's
    /// pid; release end stops serve and removes both.
    @Test(.timeLimit(.minutes(1)))
    func theSocketIsGivenToQEMUsUserOnly() throws {
        let (work, dir, share, _) = try setUp()
        let socket = dir + "/fs.sock"
        let conf = work.path + "/qemu.conf"
        try FileDescriptor.open(conf, O_WRONLY | O_CREAT, mode: 0o644).writeAll(Array("# user = \"root\"\nuser = \"nobody\"\ngroup = \"nogroup\"\n".utf8))
        let old = umask(0)
        defer { umask(old) }
        let r = try hook(["prepare", "begin"], socket: socket, share: share, work: work, qemuConf: conf)
        defer { _ = try? hook(["release", "end"], socket: socket, share: share, work: work) }
        #expect(r.exitCode == 0, "exit \(String(describing: r.exitCode)); stderr: \(r.stderr)")
        var st = stat()
        try #require(lstat(socket, &st) == 0, "no socket")
        #expect(st.st_mode & S_IFMT == S_IFSOCK && st.st_mode & 0o777 == 0o600, "socket mode \(String(st.st_mode & 0o7777, radix: 8))")
        #expect(st.st_uid == 65534, "socket owned by uid \(st.st_uid), not nobody's")
        let pid = try readTextFile(socket + ".vfsvm.pid")
        #expect(Int32(pid.dropLast()).map { kill($0, 0) == 0 } == true, "pid file: \(pid)")
        let stop = try hook(["release", "end"], socket: socket, share: share, work: work)
        #expect(stop.exitCode == 0 && lstat(socket, &st) != 0 && lstat(socket + ".vfsvm.pid", &st) != 0)
    }
}
