import CVfsvmLinux
import CVfsvmURing
import Glibc
import Testing
import VfsvmSys

/// `vfsvm run --accel kvm`'s file-system sandbox (RunSandbox.swift,
/// Sandbox.enterMachineNamespace): the process that runs a hostile guest's
/// vCPUs and serves its shares sees only the shares. The attacks are made
/// from inside a process confined the same way (vfsvm-seccomp-probe
/// machine), each first shown to work without the confinement.
@Suite(.serialized) struct RunFileSandboxTests {
    /// A share with a file in it, and a root-only file beside the share.
    final class Layout {
        let work: TemporaryDirectory
        var share: String { work.path + "/share" }
        var secret: String { work.path + "/secret" }

        init() throws {
            work = try TemporaryDirectory("vfsvm-machine")
            try #require(mkdir(share, 0o755) == 0)
            try write("inside bytes\n", to: share + "/inside", mode: 0o644)
            try write("the secret\n", to: secret, mode: 0o600)
        }

        private func write(_ text: String, to path: String, mode: mode_t) throws {
            let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: mode)
            try fd.writeAll(Array(text.utf8))
        }
    }

    /// The probe's "attack NAME: RESULT" lines.
    func attacks(_ mode: String, _ layout: Layout) throws -> [String: String] {
        let out = try makePipe()
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm-seccomp-probe"),
                                     arguments: ["machine", mode, layout.share, layout.secret], stdout: out.write, stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 10_000)
        if status == nil { child.send(signal: SIGKILL) }
        let text = availableText(out.read)
        try #require(child.exitCode == 0, "probe \(mode): exit \(String(describing: child.exitCode)); stdout: \(text); stderr: \(availableText(errors.read))")
        var results: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("attack ") {
            let parts = line.dropFirst(7).split(separator: ":", maxSplits: 1)
            if parts.count == 2 { results[String(parts[0])] = parts[1].trimmingCharacters(in: " ") }
        }
        return results
    }

    @Test(.timeLimit(.minutes(1)))
    func aConfinedVMMReachesNothingOutsideItsShares() throws {
        try #require(getuid() == 0, "the machine namespace and the capability drop need root; cannot run as uid \(getuid())")
        let layout = try Layout()
        let open = try attacks("unconfined", layout)
        // Every attack reads the secret where nothing stops it (else the
        // confined results below would prove nothing).
        #expect(open["path"] == "read the secret" && open["dotdot"] == "read the secret", "\(open)")
        #expect(open["handle"] == "read the secret", "open_by_handle_at as root, unconfined: \(open)")
        #expect(open["procfs"] == "read the secret", "another process's /proc/PID/root, unconfined: \(open)")
        #expect(open["mknod"] == "read", "a device node made in the share opens, unconfined: \(open)")
        try #require(open["uring"] == "opened", "io_uring is not usable here, so its attack cannot be shown: \(open)")

        let confined = try attacks("confined", layout)
        let enoent = Errno.ENOENT.description
        #expect(confined["path"] == enoent, "an absolute path: \(confined)")
        #expect(confined["dotdot"] == enoent, "\"..\" from the share's root: \(confined)")
        #expect(confined["uring"] == enoent, "IORING_OP_OPENAT on a ring of the attacker's own: \(confined)")
        #expect(confined["handle"] == Errno.EPERM.description, "open_by_handle_at without CAP_DAC_READ_SEARCH: \(confined)")
        #expect(confined["procfs"] == enoent, "another process's /proc/PID/root from the kept self/fd: \(confined)")
        #expect(confined["mknod"] == Errno.EACCES.description, "a device node made in the share, on a nodev mount: \(confined)")
        #expect(confined["share"] == "read inside bytes", "the share itself: \(confined)")
    }

    /// The engine's own rings take only their data operations: an OPENAT
    /// on one is refused before it runs (IORING_REGISTER_RESTRICTIONS).
    @Test func dataRingsRefuseOpen() throws {
        let plain = vfsvm_uring_openat_probe("/proc/self/status", 0)
        try #require(plain >= 0, "io_uring OPENAT does not run here (\(Errno(rawValue: Int32(-plain)))): nothing to restrict")
        #expect(vfsvm_uring_openat_probe("/proc/self/status", 1) == -Int(EACCES))
    }

    /// The running VMM's root, as /proc shows it: only the shares.
    @Test(.timeLimit(.minutes(1)))
    func theRunningVMMsRootHoldsOnlyItsShares() throws {
        try #require(access("/dev/kvm", R_OK | W_OK) == 0, "needs read-write /dev/kvm; cannot run here")
        try #require(getuid() == 0, "the namespace sandbox is the default as root; cannot run as uid \(getuid())")
        let vm = try RunSandboxTests.SpinningVM(["-d"], shareOptions: "")
        try #require(writeFile(vm.share + "/hello", "hi\n"))
        let root = "/proc/\(vm.process.pid)/root"
        #expect(try names(in: root) == ["0"], "the VMM's / holds share 0 only")
        #expect(try names(in: root + "/0") == ["hello"], "share 0 is the --share directory")
        #expect(access(root + "/etc/passwd", F_OK) != 0 && errno == ENOENT, "the host's /etc is out of the VMM's sight")
        #expect(try readlinkText("/proc/\(vm.process.pid)/ns/mnt") != readlinkText("/proc/self/ns/mnt"), "a mount namespace of its own")
        let end = vm.stop()
        #expect(end.exitCode == 143)
        #expect(end.stderr.contains("vfsvm: sandbox: mount namespace, / a read-only tmpfs with /0 = \(vm.share)"), "stderr: \(end.stderr)")
    }

    /// A directory fd the launcher leaked (here the shell's `9</`) would
    /// climb the host's tree from inside the sandbox: vfsvm closes every
    /// inherited fd but 0, 1 and 2 first.
    @Test(.timeLimit(.minutes(1)))
    func anInheritedDirectoryFDIsClosed() throws {
        try #require(access("/dev/kvm", R_OK | W_OK) == 0, "needs read-write /dev/kvm; cannot run here")
        let vm = try RunSandboxTests.SpinningVM([], shareOptions: "", launcher: ["/bin/sh", "-c", #"exec 8</etc 9</; exec "$@""#, "sh"])
        let fds = try names(in: "/proc/\(vm.process.pid)/fd")
        let targets = try fds.map { try readlinkText("/proc/\(vm.process.pid)/fd/\($0)") }
        #expect(!targets.contains("/") && !targets.contains("/etc"), "the VMM still holds the launcher's fds on / and /etc: \(zip(fds, targets).map { "\($0) -> \($1)" })")
        #expect(fds.contains("0") && fds.contains("1") && fds.contains("2"))
        #expect(vm.stop().exitCode == 143)
    }

    @Test(.timeLimit(.minutes(1)))
    func sandboxNoneLeavesTheHostsRoot() throws {
        try #require(access("/dev/kvm", R_OK | W_OK) == 0, "needs read-write /dev/kvm; cannot run here")
        let vm = try RunSandboxTests.SpinningVM(["-d", "--sandbox", "none"], shareOptions: "")
        #expect(access("/proc/\(vm.process.pid)/root\(vm.share)", F_OK) == 0, "the host's root, the share at its own path")
        let end = vm.stop()
        #expect(end.exitCode == 143)
        #expect(end.stderr.contains("vfsvm: sandbox: no mount namespace (--sandbox none)"), "stderr: \(end.stderr)")
    }

    @Test func sandboxChrootIsRefused() throws {
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm"),
                                     arguments: ["run", "--accel", "kvm", "--sandbox", "chroot", "--kernel", "/nonexistent"], stderr: errors.write)
        _ = child.wait(timeoutMilliseconds: 10_000)
        let text = availableText(errors.read)
        #expect(child.exitCode == 64, "exit \(String(describing: child.exitCode)); stderr: \(text)")
        #expect(text.contains("--sandbox chroot is vfsvm serve's"), "stderr: \(text)")
    }

    func names(in dir: String) throws -> [String] {
        let d = try #require(opendir(dir), "opendir(\(dir)): \(Errno.current)")
        defer { closedir(d) }
        var list: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { list.append(name) }
        }
        return list.sorted()
    }

    func readlinkText(_ path: String) throws -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink(path, &buf, buf.count - 1)
        try #require(n > 0, "readlink(\(path)): \(Errno.current)")
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func writeFile(_ path: String, _ text: String) -> Bool {
        guard let f = fopen(path, "w") else { return false }
        defer { fclose(f) }
        return fputs(text, f) >= 0
    }
}
