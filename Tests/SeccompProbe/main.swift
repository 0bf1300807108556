// vfsvm-seccomp-probe MODE CALL: installs vfsvm's seccomp filter (the
// file server's allow-list; MODE kill or log), then makes one system call
// and prints its result. Run by VfsvmSandboxTests/SeccompTests, which
// check how the probe ends. CALL is a syscall number, "x32:N" (N with the
// x32 ABI bit), "i386-getpid" (getpid through int 0x80) or "fs-access"
// (FileDescriptor.accessAt, as FUSE ACCESS runs it).
import CVfsvmLinux
import Glibc
import VfsvmSys

let arguments = CommandLine.arguments
guard arguments.count == 3, let mode = ["kill": Seccomp.Violation.kill, "log": .log][arguments[1]] else {
    logLine("usage: vfsvm-seccomp-probe kill|log NUMBER|x32:NUMBER|i386-getpid")
    exit(2)
}
let call = arguments[2]
do {
    try Seccomp.install(onViolation: mode)
} catch {
    logLine("vfsvm-seccomp-probe: \(error)")
    exit(1)
}
let result: Int
if call == "fs-access" {
    // What FUSE ACCESS runs in the file server.
    do throws(SystemError) {
        try FileDescriptor.open("/", HostFSFlag.path | O_DIRECTORY).accessAt(Array(".".utf8), mode: R_OK)
        result = 0
    } catch {
        result = -Int(error.errno.rawValue)
    }
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
