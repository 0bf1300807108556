// vfsvm-seccomp-probe MODE CALL: installs vfsvm's seccomp filter (the
// file server's allow-list; MODE kill or log; or vmm: `vfsvm run`'s VMM
// list and ioctl requests, kill), then makes one system call and prints
// its result. Run by VfsvmSandboxTests/SeccompTests and RunSandboxTests,
// which check how the probe ends. CALL is a syscall number, "x32:N" (N
// with the x32 ABI bit), "i386-getpid" (getpid through int 0x80),
// "fs-access" (FileDescriptor.accessAt, as FUSE ACCESS runs it) or
// "ioctl:N" (ioctl(-1, N): -EBADF when the request is allowed) or
// "tgkill-neighbour" (see below) or "raw-tty:N" (stdin, a terminal, put in raw mode as `vfsvm run`'s console
// does, with the reporter told to restore it; then call N).
// Also `machine confined|unconfined SHARE SECRET`: see MachineAttacks.swift.
import CVfsvmLinux
import Glibc
import VfsvmSys

let arguments = CommandLine.arguments
if arguments.count == 5, arguments[1] == "machine", ["confined", "unconfined"].contains(arguments[2]) {
    runMachineAttacks(confined: arguments[2] == "confined", share: arguments[3], secret: arguments[4])
}
guard arguments.count == 3, ["kill", "log", "vmm"].contains(arguments[1]) else {
    logLine("usage: vfsvm-seccomp-probe kill|log|vmm NUMBER|x32:NUMBER|i386-getpid|fs-access|ioctl:NUMBER")
    exit(2)
}
let call = arguments[2]
// "tgkill-neighbour": SIGKILL by tgkill to a child started before the
// filter (a process of the same uid that is not this one).
let neighbour = call == "tgkill-neighbour" ? try? ChildProcess(path: "/bin/sleep", arguments: ["5"]) : nil
do {
    switch arguments[1] {
    case "vmm": try Seccomp.install(allowing: SeccompAllowList.vmm(), ioctls: SeccompAllowList.vmmIoctlRequests, onViolation: .kill)
    case "log": try Seccomp.install(onViolation: .log)
    default: try Seccomp.install(onViolation: .kill)
    }
} catch {
    logLine("vfsvm-seccomp-probe: \(error)")
    exit(1)
}
let result: Int
if call.hasPrefix("raw-tty:"), let n = Int(call.dropFirst(8)) {
    var t = termios()
    guard tcgetattr(0, &t) == 0 else {
        logLine("vfsvm-seccomp-probe: stdin is not a terminal")
        exit(2)
    }
    Seccomp.restoreTerminalWhenKilled(fd: 0, t)
    cfmakeraw(&t)
    _ = tcsetattr(0, TCSANOW, &t)
    result = vfsvm_syscall3(n, 0, 0, 0)
} else if call == "tgkill-neighbour" {
    guard let neighbour else {
        logLine("vfsvm-seccomp-probe: cannot start /bin/sleep")
        exit(2)
    }
    let r = vfsvm_syscall3(Int(SYS_tgkill), Int(neighbour.pid), Int(neighbour.pid), Int(SIGKILL))
    result = r < 0 ? -Int(errno) : r
} else if call == "fs-access" {
    // What FUSE ACCESS runs in the file server.
    do throws(SystemError) {
        try FileDescriptor.open("/", HostFSFlag.path | O_DIRECTORY).accessAt(Array(".".utf8), mode: R_OK)
        result = 0
    } catch {
        result = -Int(error.errno.rawValue)
    }
} else if call.hasPrefix("ioctl:"), let request = UInt(call.dropFirst(6)) {
    let r = vfsvm_syscall3(Int(SYS_ioctl), -1, Int(bitPattern: request), 0)
    result = r < 0 ? -Int(errno) : r
} else if call == "i386-getpid" {
    result = vfsvm_i386_getpid()
} else if call.hasPrefix("x32:"), let n = Int(call.dropFirst(4)) {
    result = vfsvm_syscall3(n | Int(VFSVM_X32_SYSCALL_BIT), 0, 0, 0)
} else if let n = Int(call) {
    result = vfsvm_syscall3(n, 0, 0, 0)
} else {
    logLine("vfsvm-seccomp-probe: bad call '\(call)'")
    exit(2)
}
logLine("vfsvm-seccomp-probe: call \(call) returned \(result)")
exit(0)
