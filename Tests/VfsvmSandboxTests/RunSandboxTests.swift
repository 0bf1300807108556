import CVfsvmLinux
import Glibc
import Testing
import VfsvmSys

/// `vfsvm run --accel kvm` confines itself once the VM is built
/// (Sources/vfsvm/RunSandbox.swift): the vCPUs and the shares' FUSE
/// servers run in one process with a hostile guest, so every thread of a
/// running VMM must have the seccomp filter, no_new_privs and only the
/// capabilities its shares need; the filter's list must refuse what the
/// VMM never does at run time (vfsvm-seccomp-probe vmm). Also: a closed
/// stdout ends the KVM path cleanly, and the tcg path refuses shares
/// up front when it cannot sandbox their servers.
///
/// The guests are Tests/Guests' (`make guests` builds them into
/// .build/guests; or $VFSVM_GUESTS).
@Suite(.serialized) struct RunSandboxTests {
    static let guests: String = {
        let here = #filePath.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
        return getenv("VFSVM_GUESTS").map { String(cString: $0) } ?? here + "/.build/guests"
    }()

    static var events: String { guests + "/events.elf" }

    func requireKVMAndGuest() throws {
        try #require(access("/dev/kvm", R_OK | W_OK) == 0, "needs read-write /dev/kvm; cannot run here")
        try #require(access(Self.events, R_OK) == 0, "no \(Self.events): build the test guests (make guests) or set VFSVM_GUESTS")
    }

    /// `vfsvm run --accel kvm` with the events guest spinning (`do=spin`),
    /// waited for until the guest has printed its line (the VM runs, so the
    /// sandbox is in place). SIGTERM at `stop()`.
    final class SpinningVM {
        let work: TemporaryDirectory
        let share: String
        let process: ChildProcess
        private let stdoutPipe: (read: FileDescriptor, write: FileDescriptor)
        private let stderrPipe: (read: FileDescriptor, write: FileDescriptor)
        private(set) var stdoutText = ""

        /// `launcher`: a command that execs vfsvm (its path and arguments follow).
        init(_ extra: [String], shareOptions: String? = nil, launcher: [String] = []) throws {
            work = try TemporaryDirectory("vfsvm-runsandbox")
            let dir = work.path + "/share"
            share = dir
            try #require(mkdir(dir, 0o755) == 0)
            stdoutPipe = try makePipe()
            stderrPipe = try makePipe()
            let devnull = try FileDescriptor.open("/dev/null", O_RDONLY)
            let shares = shareOptions.map { ["--share", "\(dir):t\($0)"] } ?? []
            let vfsvm = try builtExecutable("vfsvm")
            let arguments = ["run", "--accel", "kvm", "--memory", "64M"] + shares + extra + ["--cmdline", "do=spin", RunSandboxTests.events]
            process = try ChildProcess(
                path: launcher.first ?? vfsvm, arguments: launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [vfsvm] + arguments,
                stdin: devnull, stdout: stdoutPipe.write, stderr: stderrPipe.write)
            var waited = 0
            while !stdoutText.contains("events guest: spin") && process.isRunning && waited < 30_000 {
                if (try? pollReadable([stdoutPipe.read], timeoutMilliseconds: 100)) == [true] {
                    stdoutText += String(decoding: (try? stdoutPipe.read.readSome()) ?? [], as: UTF8.self)
                } else {
                    waited += 100
                }
            }
            try #require(stdoutText.contains("events guest: spin"),
                         "the guest did not start; stdout: \(stdoutText); stderr: \(availableText(stderrPipe.read))")
        }

        deinit {
            if process.isRunning {
                process.send(signal: SIGKILL)
                _ = process.wait(timeoutMilliseconds: 5000)
            }
        }

        /// A line of /proc/<pid>/status of every thread ("CapEff", ...).
        func statusField(_ name: String) throws -> [String] {
            let dir = try #require(opendir("/proc/\(process.pid)/task"), "opendir(/proc/\(process.pid)/task): \(Errno.current)")
            defer { closedir(dir) }
            var values: [String] = []
            while let entry = readdir(dir) {
                let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                guard tid.first?.isNumber == true else { continue }
                let text = try readTextFile("/proc/\(process.pid)/task/\(tid)/status")
                for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
                    values.append(line.dropFirst(name.count + 1).trimmingCharacters(in: " \t"))
                }
            }
            return values
        }

        /// SIGTERM; the exit code (143 expected) and stderr.
        func stop() -> (exitCode: Int32?, stderr: String) {
            process.send(signal: SIGTERM)
            _ = process.wait(timeoutMilliseconds: 10_000)
            return (process.exitCode, availableText(stderrPipe.read))
        }
    }

    /// Capability masks as /proc/<pid>/status prints them.
    static func mask(_ caps: [Int32]) -> String {
        let m = caps.reduce(UInt64(0)) { $0 | 1 << UInt64($1) }
        let hex = String(m, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static let readOnlyShareCaps = mask([1, 3])  // dac_override, fowner
    static let writableShareCaps = mask([0, 1, 3, 4, 6, 7, 27, 31])  // chown ... mknod, setfcap (no dac_read_search)

    @Test(.timeLimit(.minutes(1)))
    func everyThreadOfARunningVMMIsFilteredWithTheCapabilitiesOfARead_onlyShare() throws {
        try requireKVMAndGuest()
        try #require(getuid() == 0, "the capability sets are checked as root (which has them all to drop); cannot run as uid \(getuid())")
        let vm = try SpinningVM(["-d"], shareOptions: ":ro")
        let seccomp = try vm.statusField("Seccomp")
        #expect(seccomp.count >= 3, "vCPU, console and signal threads at least: \(seccomp)")
        #expect(seccomp.allSatisfy { $0 == "2" }, "2 is SECCOMP_MODE_FILTER: \(seccomp)")
        #expect(try vm.statusField("Seccomp_filters").allSatisfy { $0 == "1" })
        #expect(try vm.statusField("NoNewPrivs").allSatisfy { $0 == "1" })
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            let values = try vm.statusField(set)
            #expect(values.allSatisfy { $0 == Self.readOnlyShareCaps }, "\(set): \(values), want \(Self.readOnlyShareCaps) (dac_override, fowner)")
        }
        #expect(try vm.statusField("CapInh").allSatisfy { $0 == Self.mask([]) })
        #expect(try vm.statusField("CapAmb").allSatisfy { $0 == Self.mask([]) })
        let end = vm.stop()
        #expect(end.exitCode == 143, "SIGTERM under the filter: exit \(String(describing: end.exitCode)); stderr: \(end.stderr)")
        #expect(end.stderr.contains("vfsvm: sandbox: seccomp filter of ") && end.stderr.contains("capabilities kept: dac_override fowner"),
                "-d names what was applied: \(end.stderr)")
        #expect(!end.stderr.contains("seccomp: system call"), "a call was refused: \(end.stderr)")
    }

    @Test(.timeLimit(.minutes(1)))
    func aWritableShareKeepsWhatServeKeepsForIt() throws {
        try requireKVMAndGuest()
        try #require(getuid() == 0, "the capability sets are checked as root; cannot run as uid \(getuid())")
        let vm = try SpinningVM([], shareOptions: "")
        let values = try vm.statusField("CapEff")
        #expect(values.allSatisfy { $0 == Self.writableShareCaps }, "CapEff: \(values), want \(Self.writableShareCaps)")
        #expect(vm.stop().exitCode == 143)
    }

    @Test(.timeLimit(.minutes(1)))
    func withoutSharesNoCapabilityIsLeft() throws {
        try requireKVMAndGuest()
        try #require(getuid() == 0, "the capability sets are checked as root; cannot run as uid \(getuid())")
        let vm = try SpinningVM([])
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            let values = try vm.statusField(set)
            #expect(values.allSatisfy { $0 == Self.mask([]) }, "\(set): \(values)")
        }
        #expect(vm.stop().exitCode == 143)
    }

    @Test(.timeLimit(.minutes(1)))
    func seccompNoneLeavesTheVMMUnfilteredButWithNoNewPrivs() throws {
        try requireKVMAndGuest()
        let vm = try SpinningVM(["--seccomp", "none", "-d"])
        #expect(try vm.statusField("Seccomp").allSatisfy { $0 == "0" })
        #expect(try vm.statusField("NoNewPrivs").allSatisfy { $0 == "1" })
        let end = vm.stop()
        #expect(end.exitCode == 143)
        #expect(end.stderr.contains("vfsvm: sandbox: no seccomp filter (--seccomp none)"), "stderr: \(end.stderr)")
    }

    @Test(.timeLimit(.minutes(1)))
    func seccompLogInstallsTheFilter() throws {
        try requireKVMAndGuest()
        let vm = try SpinningVM(["--seccomp", "log"])
        #expect(try vm.statusField("Seccomp").allSatisfy { $0 == "2" })
        #expect(vm.stop().exitCode == 143)
    }

    @Test func aBadSeccompValueIsAUsageError() throws {
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm"),
                                     arguments: ["run", "--accel", "kvm", "--seccomp", "sometimes", "/nonexistent"], stderr: errors.write)
        _ = child.wait(timeoutMilliseconds: 10_000)
        let text = availableText(errors.read)
        #expect(child.exitCode == 64, "exit \(String(describing: child.exitCode)); stderr: \(text)")
        #expect(text.contains("--seccomp"), "stderr: \(text)")
    }

    // MARK: - The VMM's list, installed for real (vfsvm-seccomp-probe vmm)

    func probe(_ call: String) throws -> (status: Int32?, stderr: String) {
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm-seccomp-probe"), arguments: ["vmm", call], stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 10_000)
        return (status, availableText(errors.read))
    }

    /// Calls a VMM never makes once the guest runs, each what an attacker
    /// in the process would want: a new program, a socket to the network,
    /// another process's memory, the vhost-user socket calls, capabilities
    /// back, a namespace, a mount.
    static let offList: [Int] = [SYS_execve, SYS_socket, SYS_ptrace, SYS_process_vm_writev, SYS_accept4, SYS_sendmsg,
                                 SYS_capset, SYS_setns, SYS_mount, SYS_getppid].map { Int($0) }

    @Test(arguments: offList)
    func callsOffTheVMMListKillWithALine(call: Int) throws {
        #expect(!SeccompAllowList.vmm().contains(Int32(call)))
        let r = try probe(String(call))
        #expect(r.status.map { $0 & 0x7f == SIGSYS } == true, "wait status \(String(describing: r.status)); stderr: \(r.stderr)")
        #expect(r.stderr.contains("vfsvm: seccomp: system call \(call) (arch 0xc000003e) is not on the sandbox's allow-list"), "stderr: \(r.stderr)")
        #expect(!r.stderr.contains("returned"), "the call ran: \(r.stderr)")
    }

    /// ioctl requests that build or reprogram a VM (a second VM, a new
    /// vCPU, a vCPU's registers or CPUID, guest memory from the host side
    /// of another VM's slots), the file server's FUSE device requests and
    /// TIOCSTI (typing into the terminal) are refused.
    @Test(arguments: [UInt(VFSVM_KVM_CREATE_VM), UInt(VFSVM_KVM_CREATE_VCPU), UInt(VFSVM_KVM_SET_REGS), UInt(VFSVM_KVM_SET_SREGS),
                      UInt(VFSVM_KVM_SET_CPUID2), UInt(VFSVM_KVM_SET_MSRS), UInt(VFSVM_KVM_GET_API_VERSION),
                      UInt(truncatingIfNeeded: VFSVM_FUSE_DEV_IOC_CLONE), UInt(TIOCSTI)])
    func ioctlsOffTheVMMListKill(request: UInt) throws {
        let r = try probe("ioctl:\(request)")
        #expect(r.status.map { $0 & 0x7f == SIGSYS } == true, "request 0x\(String(request, radix: 16)): wait status \(String(describing: r.status)); stderr: \(r.stderr)")
        #expect(r.stderr.contains("system call \(SYS_ioctl) "), "stderr: \(r.stderr)")
    }

    /// What the running VMM needs gets through the filter (to the kernel,
    /// which says EBADF for fd -1).
    @Test(arguments: [UInt(VFSVM_KVM_RUN), UInt(VFSVM_KVM_IRQ_LINE), UInt(VFSVM_KVM_IOEVENTFD), UInt(VFSVM_KVM_SET_GSI_ROUTING),
                      UInt(VFSVM_KVM_SET_USER_MEMORY_REGION), UInt(VFSVM_KVM_TRANSLATE), UInt(TCSETS)])
    func ioctlsTheRunningVMMMakesAreAllowed(request: UInt) throws {
        let r = try probe("ioctl:\(request)")
        #expect(r.status.map { $0 & 0x7f == 0 && ($0 >> 8) & 0xff == 0 } == true, "status \(String(describing: r.status)); \(r.stderr)")
        #expect(r.stderr.contains("returned -\(EBADF)"), "stderr: \(r.stderr)")
    }

    // MARK: - A console whose reader goes away

    /// `vfsvm run ... | head`: the guest floods COM1, stdout is a pipe whose
    /// reader is closed, stdin a terminal (a pty) that vfsvm puts in raw
    /// mode. vfsvm used to die of SIGPIPE on the vCPU's write, the terminal
    /// left raw. Now: the guest is stopped, the terminal restored, exit 141
    /// (what a shell reports for a SIGPIPE death, as the tcg path gives).
    @Test(.timeLimit(.minutes(1)))
    func aClosedStdoutStopsTheGuestAndRestoresTheTerminal() throws {
        try requireKVMAndGuest()
        let (masterFD, terminal) = try openPTY()
        var before = termios()
        try #require(tcgetattr(terminal.rawValue, &before) == 0)
        try #require(before.c_lflag & tcflag_t(ICANON | ECHO) == tcflag_t(ICANON | ECHO), "a fresh pty is in canonical mode with echo")

        var out: (read: FileDescriptor, write: FileDescriptor)? = try makePipe()
        let writer = out!.write
        out = nil  // the read end is closed before vfsvm starts
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm"),
                                     arguments: ["run", "--accel", "kvm", "--memory", "64M", "-d", "--cmdline", "do=flood", Self.events],
                                     stdin: terminal, stdout: writer, stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 30_000)
        if status == nil { child.send(signal: SIGKILL) }
        let text = availableText(errors.read)
        #expect(status != nil, "vfsvm was still running 30 s after its stdout closed")
        #expect(status.map { $0 & 0x7f } == 0, "wait status \(String(describing: status)): killed by a signal (13 is SIGPIPE); stderr: \(text)")
        #expect(child.exitCode == 141, "exit \(String(describing: child.exitCode)); stderr: \(text)")
        #expect(text.contains("vfsvm: the console's reader went away (stdout: broken pipe)"), "-d names why it stopped: \(text)")
        var after = termios()
        #expect(tcgetattr(terminal.rawValue, &after) == 0)
        #expect(after.c_lflag & tcflag_t(ICANON | ECHO) == before.c_lflag & tcflag_t(ICANON | ECHO), "the terminal was left in raw mode")
        withExtendedLifetime(masterFD) {}
    }

    /// A pty: the master (kept open while the test runs) and the terminal.
    func openPTY() throws -> (master: FileDescriptor, terminal: FileDescriptor) {
        // posix_openpt(3) and friends, by hand (Glibc does not export them to
        // Swift). TIOCSPTLCK = _IOW('T', 0x31, int), TIOCGPTN = _IOR('T',
        // 0x30, unsigned int): function-like macros, which do not import.
        let master = try FileDescriptor.open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        #expect(ioctl(master.rawValue, 0x4004_5431, &unlock) == 0, "TIOCSPTLCK: \(Errno.current)")
        #expect(ioctl(master.rawValue, 0x8004_5430, &number) == 0, "TIOCGPTN: \(Errno.current)")
        return (master, try FileDescriptor.open("/dev/pts/\(number)", O_RDWR | O_NOCTTY))
    }

    /// The console is raw while the guest runs: a seccomp kill must put the
    /// terminal back before the process ends (the shell would be left
    /// without echo or line editing).
    @Test func aSeccompKillRestoresARawTerminal() throws {
        let pty = try openPTY()
        var before = termios()
        try #require(tcgetattr(pty.terminal.rawValue, &before) == 0)
        let errors = try makePipe()
        let child = try ChildProcess(path: try builtExecutable("vfsvm-seccomp-probe"), arguments: ["vmm", "raw-tty:\(SYS_getppid)"],
                                     stdin: pty.terminal, stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 10_000)
        let text = availableText(errors.read)
        #expect(status.map { $0 & 0x7f == SIGSYS } == true, "wait status \(String(describing: status)); stderr: \(text)")
        var after = termios()
        #expect(tcgetattr(pty.terminal.rawValue, &after) == 0)
        #expect(after.c_lflag & tcflag_t(ICANON | ECHO) == before.c_lflag & tcflag_t(ICANON | ECHO) && before.c_lflag & tcflag_t(ICANON) != 0,
                "the terminal was left in raw mode (c_lflag 0x\(String(after.c_lflag, radix: 16)), before 0x\(String(before.c_lflag, radix: 16)))")
    }

    // MARK: - --accel tcg without the privileges its sandboxed backends need

    /// As an unprivileged user the tcg path's `vfsvm serve` backends cannot
    /// enter their namespace sandbox: vfsvm used to start QEMU anyway and
    /// end with QEMU's "vhost_backend_init failed" and serve's advice to
    /// pass an option `vfsvm run` does not have. Now: one line, exit 77,
    /// nothing started.
    @Test(.timeLimit(.minutes(1)))
    func tcgWithASharePlainlyRefusesAnUnprivilegedUser() throws {
        guard getuid() == 0, access("/usr/bin/setpriv", X_OK) == 0 else {
            Issue.record("needs root and setpriv(1) to run vfsvm as an unprivileged user; cannot run here")
            return
        }
        try #require(access(Self.events, R_OK) == 0, "no \(Self.events): build the test guests (make guests) or set VFSVM_GUESTS")
        let work = try TemporaryDirectory("vfsvm-runsandbox")
        try #require(chmod(work.path, 0o755) == 0)
        let tmp = work.path + "/tmp"
        try #require(mkdir(tmp, 0o777) == 0 && chmod(tmp, 0o777) == 0)
        let out = try makePipe()
        let errors = try makePipe()
        let child = try ChildProcess(
            path: "/usr/bin/env",
            arguments: ["TMPDIR=\(tmp)", "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                        try builtExecutable("vfsvm"), "run", "--accel", "tcg", "--memory", "64M", "--share", "\(work.path):t",
                        "--cmdline", "do=poweroff", Self.events],
            stdout: out.write, stderr: errors.write)
        let status = child.wait(timeoutMilliseconds: 30_000)
        if status == nil { child.send(signal: SIGKILL) }
        let text = availableText(errors.read)
        #expect(child.exitCode == 77, "exit \(String(describing: child.exitCode)); stderr: \(text)")
        #expect(text.split(separator: "\n").count == 1, "one line: \(text)")
        #expect(text.contains("--share \(work.path):t on the tcg path needs root (CAP_SYS_ADMIN)"), "stderr: \(text)")
        #expect(availableText(out.read).isEmpty, "the guest ran")
        let left = (opendir(tmp)).map { d -> Int in
            var n = 0
            while let e = readdir(d) { if e.pointee.d_name.0 != 0x2e { n += 1 } }
            closedir(d)
            return n
        } ?? -1
        #expect(left == 0, "vfsvm made \(left) entries in TMPDIR before refusing")
    }
}
