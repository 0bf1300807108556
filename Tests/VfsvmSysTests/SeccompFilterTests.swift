import CVfsvmLinux
import Glibc
import Testing
@testable import VfsvmSys

/// The BPF program `Seccomp.filter` builds, run by a small interpreter of
/// the instructions it uses (ld abs, jeq, jge, ja, ret), against every call
/// number of interest: the binary search must answer ALLOW exactly for the
/// listed numbers, and the architecture and x32 checks must refuse first.
@Suite struct SeccompFilterTests {
    /// Runs `program` on (nr, arch); nil if it falls off the end, jumps out
    /// of range, or uses an instruction the filter should not contain.
    func run(_ program: [sock_filter], nr: UInt32, arch: UInt32, arg0: UInt32 = 0, arg1: UInt32 = 0) -> UInt32? {
        var pc = 0
        var acc: UInt32 = 0
        var steps = 0
        while pc < program.count, steps < program.count {
            let i = program[pc]
            steps += 1
            switch i.code {
            case VFSVM_BPF_LD_W_ABS:
                switch i.k {
                case VFSVM_SECCOMP_DATA_NR: acc = nr
                case VFSVM_SECCOMP_DATA_ARCH: acc = arch
                case VFSVM_SECCOMP_DATA_ARG0_LOW: acc = arg0
                case VFSVM_SECCOMP_DATA_ARG1_LOW: acc = arg1
                default: return nil
                }
                pc += 1
            case VFSVM_BPF_JEQ_K: pc += 1 + Int(acc == i.k ? i.jt : i.jf)
            case VFSVM_BPF_JGE_K: pc += 1 + Int(acc >= i.k ? i.jt : i.jf)
            case VFSVM_BPF_JSET_K: pc += 1 + Int(acc & i.k != 0 ? i.jt : i.jf)
            case VFSVM_BPF_JA: pc += 1 + Int(i.k)
            case VFSVM_BPF_RET_K: return i.k
            default: return nil
            }
        }
        return nil
    }

    @Test(arguments: [0, 1, 5, 6, 7, 13, 64, 200])
    func allowsExactlyTheListedNumbers(count: Int) {
        var rng = SystemRandomNumberGenerator()
        // unshare, clone, clone3, ioctl and tgkill depend on their arguments (tested below).
        let guarded: Set<Int32> = [Int32(SYS_unshare), Int32(SYS_clone), Int32(SYS_clone3), Int32(SYS_ioctl), Int32(SYS_tgkill)]
        let listed = Set((0..<count).map { _ in Int32.random(in: 0..<460, using: &rng) }).subtracting(guarded)
        for mode in [Seccomp.Violation.kill, .log] {
            let program = Seccomp.filter(allowing: Array(listed), onViolation: mode)
            let refuse = mode == .log ? VFSVM_SECCOMP_RET_LOG : VFSVM_SECCOMP_RET_TRAP
            for nr in UInt32(0)..<512 where !guarded.contains(Int32(nr)) {
                let want = listed.contains(Int32(nr)) ? VFSVM_SECCOMP_RET_ALLOW : refuse
                let got = run(program, nr: nr, arch: VFSVM_AUDIT_ARCH_X86_64)
                #expect(got == want, "\(listed.count) listed, call \(nr): \(String(describing: got)), expected \(want)")
            }
        }
    }

    @Test func theFileServerListFitsAndAllowsItsOwnCalls() {
        let list = SeccompAllowList.fileServer()
        let program = Seccomp.filter(allowing: list, onViolation: .kill)
        #expect(program.count <= Int(BPF_MAXINSNS))
        let guarded: Set<Int32> = [Int32(SYS_unshare), Int32(SYS_clone), Int32(SYS_clone3), Int32(SYS_ioctl), Int32(SYS_tgkill)]
        for nr in list where !guarded.contains(nr) {
            #expect(run(program, nr: UInt32(nr), arch: VFSVM_AUDIT_ARCH_X86_64) == VFSVM_SECCOMP_RET_ALLOW, "call \(nr)")
        }
        #expect(Seccomp.filter(allowing: SeccompAllowList.fileServer(ioURing: false), onViolation: .kill).count < program.count)
        #expect(!SeccompAllowList.fileServer(ioURing: false).contains(Int32(SYS_io_uring_setup)))
        #expect(!list.contains(Int32(SYS_execve)) && !list.contains(Int32(SYS_ptrace)) && !list.contains(Int32(SYS_mount)),
                "execve, ptrace and mount are never needed once serving")
    }

    /// tgkill only to this process's threads.
    @Test func tgkillOnlyToThisProcess() {
        let program = Seccomp.filter(allowing: [Int32(SYS_tgkill)], onViolation: .kill)
        let x = VFSVM_AUDIT_ARCH_X86_64
        #expect(run(program, nr: UInt32(SYS_tgkill), arch: x, arg0: UInt32(getpid())) == VFSVM_SECCOMP_RET_ALLOW)
        for other in [0, 1, UInt32(getpid()) + 1, UInt32.max] {
            #expect(run(program, nr: UInt32(SYS_tgkill), arch: x, arg0: other) == VFSVM_SECCOMP_RET_TRAP, "tgid \(other)")
        }
    }

    /// unshare only with CLONE_FS, clone only for threads without new
    /// namespaces, clone3 ENOSYS (glibc then uses clone).
    @Test func namespaceCreatingArgumentsAreRefused() {
        let list = [Int32(SYS_unshare), Int32(SYS_clone), Int32(SYS_clone3), Int32(SYS_getpid)]
        let program = Seccomp.filter(allowing: list, onViolation: .kill)
        let allow = VFSVM_SECCOMP_RET_ALLOW, trap = VFSVM_SECCOMP_RET_TRAP
        let x = VFSVM_AUDIT_ARCH_X86_64
        #expect(run(program, nr: UInt32(SYS_unshare), arch: x, arg0: UInt32(CLONE_FS)) == allow)
        for flags in [CLONE_NEWUSER, CLONE_NEWNS, CLONE_FS | CLONE_NEWUSER, CLONE_FILES, 0] {
            #expect(run(program, nr: UInt32(SYS_unshare), arch: x, arg0: UInt32(flags)) == trap, "unshare(\(flags))")
        }
        // glibc 2.36's pthread_create flags.
        let thread = UInt32(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM
                            | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)
        #expect(run(program, nr: UInt32(SYS_clone), arch: x, arg0: thread) == allow)
        #expect(run(program, nr: UInt32(SYS_clone), arch: x, arg0: thread | UInt32(CLONE_NEWUSER)) == trap)
        #expect(run(program, nr: UInt32(SYS_clone), arch: x, arg0: UInt32(SIGCHLD)) == trap, "fork")
        #expect(run(program, nr: UInt32(SYS_clone3), arch: x) == VFSVM_SECCOMP_RET_ENOSYS)
        #expect(run(program, nr: UInt32(SYS_getpid), arch: x) == allow)
        // Not listed: refused like any other call.
        let bare = Seccomp.filter(allowing: [Int32(SYS_getpid)], onViolation: .kill)
        #expect(run(bare, nr: UInt32(SYS_clone3), arch: x) == trap)
        #expect(run(bare, nr: UInt32(SYS_unshare), arch: x, arg0: UInt32(CLONE_FS)) == trap)
    }

    /// ioctl only with the requests on the list: TIOCSTI (push a byte into
    /// a terminal's input) is refused.
    @Test func ioctlOnlyWithListedRequests() {
        let program = Seccomp.filter(allowing: [Int32(SYS_ioctl)], onViolation: .kill)
        let x = VFSVM_AUDIT_ARCH_X86_64
        for request in SeccompAllowList.ioctlRequests {
            #expect(run(program, nr: UInt32(SYS_ioctl), arch: x, arg1: request) == VFSVM_SECCOMP_RET_ALLOW)
        }
        #expect(run(program, nr: UInt32(SYS_ioctl), arch: x, arg1: UInt32(TIOCSTI)) == VFSVM_SECCOMP_RET_TRAP)
    }

    /// Another architecture (i386 via int 0x80: AUDIT_ARCH_I386) or the
    /// x32 ABI (bit 30 of the number) is refused with TRAP even in log mode
    /// and even for a number that is on the list.
    @Test func otherArchitecturesAndX32AreAlwaysTrapped() {
        let getpid = Int32(SYS_getpid)
        for mode in [Seccomp.Violation.kill, .log] {
            let program = Seccomp.filter(allowing: [getpid], onViolation: mode)
            #expect(run(program, nr: UInt32(getpid), arch: VFSVM_AUDIT_ARCH_X86_64) == VFSVM_SECCOMP_RET_ALLOW)
            #expect(run(program, nr: UInt32(getpid), arch: 0x4000_0003) == VFSVM_SECCOMP_RET_TRAP)  // AUDIT_ARCH_I386
            #expect(run(program, nr: UInt32(getpid) | VFSVM_X32_SYSCALL_BIT, arch: VFSVM_AUDIT_ARCH_X86_64) == VFSVM_SECCOMP_RET_TRAP)
        }
    }
}
