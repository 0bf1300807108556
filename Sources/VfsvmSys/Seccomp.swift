import CVfsvmLinux
import Glibc

/// A seccomp-BPF allow-list filter (seccomp(2), SECCOMP_SET_MODE_FILTER):
/// system calls on the list run, every other one is reported. The filter
/// first checks the architecture (AUDIT_ARCH_X86_64 only: an i386
/// `int 0x80` call or an x32-ABI call, whose numbers mean other calls, is a
/// violation whatever its number), then finds the call number in the
/// sorted list by binary search.
///
/// Five listed calls are allowed only with some arguments, so that a
/// compromised server cannot make itself namespaces (a user namespace needs
/// no capability and would hand back every one inside it), reach a
/// terminal's ioctls (TIOCSTI) or signal other processes:
/// - `unshare` only with CLONE_FS (the per-thread working directory of
///   XattrCall.inDirectory);
/// - `clone` only for threads (CLONE_THREAD) and with no CLONE_NEW* flag;
/// - `clone3`, whose flags live in memory a filter cannot read, fails with
///   ENOSYS, and glibc then creates threads with `clone`;
/// - `ioctl` only with a request of the given list
///   (`SeccompAllowList.ioctlRequests` for the file server,
///   `SeccompAllowList.vmmIoctlRequests` for `vfsvm run`'s VMM);
/// - `tgkill` only to the installing process's own threads (the SIGSYS
///   reporter, raise and pthread_kill); a process forked after the filter
///   could not signal itself, and vfsvm forks none.
public enum Seccomp {
    /// What happens on a call that is not on the list.
    public enum Violation: Sendable {
        /// The call runs and the kernel logs it (SECCOMP_RET_LOG, audit):
        /// for finding what a list lacks.
        case log
        /// The process ends by SIGSYS after one line on stderr naming the
        /// call (SECCOMP_RET_TRAP and a SIGSYS handler). A call of the wrong
        /// architecture does this in either mode.
        case kill
    }

    /// Sets no_new_privs (required for installing a filter without
    /// CAP_SYS_ADMIN, and so that no execve could gain privileges), the
    /// SIGSYS reporter, then the filter on every thread of the process
    /// (SECCOMP_FILTER_FLAG_TSYNC).
    public static func install(allowing allowed: [Int32] = SeccompAllowList.fileServer(),
                               ioctls: [UInt32] = SeccompAllowList.ioctlRequests,
                               onViolation violation: Violation) throws(SandboxError) {
        try setNoNewPrivileges()
        do { _ = try sysCall("sigaction(SIGSYS)") { vfsvm_install_seccomp_reporter() } } catch {
            throw SandboxError(step: "install the SIGSYS reporter", cause: error)
        }
        let program = filter(allowing: allowed, ioctls: ioctls, onViolation: violation)
        guard program.count <= Int(BPF_MAXINSNS) else {
            throw SandboxError(step: "build the seccomp filter", cause: SystemError("\(program.count) BPF instructions", .E2BIG))
        }
        do {
            _ = try sysCall("seccomp(SECCOMP_SET_MODE_FILTER)") {
                program.withUnsafeBufferPointer { vfsvm_seccomp_install($0.baseAddress, UInt16($0.count), violation == .log ? 1 : 0) }
            }
        } catch { throw SandboxError(step: "install the seccomp filter", cause: error) }
    }

    /// A kill (the SIGSYS reporter) first puts terminal `fd` back in the
    /// modes `saved`; nil cancels it. For a console kept in raw mode.
    public static func restoreTerminalWhenKilled(fd: Int32, _ saved: termios?) {
        if var t = saved {
            vfsvm_seccomp_restore_terminal_on_kill(fd, &t)
        } else {
            vfsvm_seccomp_restore_terminal_on_kill(-1, nil)
        }
    }

    /// prctl(PR_SET_NO_NEW_PRIVS, 1) for every thread started from now on
    /// (and, through the filter's TSYNC, for every running one).
    public static func setNoNewPrivileges() throws(SandboxError) {
        do { _ = try sysCall("prctl(PR_SET_NO_NEW_PRIVS)") { vfsvm_set_no_new_privs() } } catch {
            throw SandboxError(step: "set no_new_privs", cause: error)
        }
    }

    /// The BPF program: architecture check, x32 check, binary search.
    static func filter(allowing allowed: [Int32], ioctls: [UInt32] = SeccompAllowList.ioctlRequests,
                       onViolation violation: Violation) -> [sock_filter] {
        let numbers = Array(Set(allowed.map { UInt32(bitPattern: $0) })).sorted()
        let refuse = violation == .log ? VFSVM_SECCOMP_RET_LOG : VFSVM_SECCOMP_RET_TRAP
        var p: [sock_filter] = [
            load(VFSVM_SECCOMP_DATA_ARCH),
            jump(VFSVM_BPF_JEQ_K, VFSVM_AUDIT_ARCH_X86_64, ifTrue: 1, ifFalse: 0),
            ret(VFSVM_SECCOMP_RET_TRAP),
            load(VFSVM_SECCOMP_DATA_NR),
            jump(VFSVM_BPF_JGE_K, VFSVM_X32_SYSCALL_BIT, ifTrue: 0, ifFalse: 1),
            ret(VFSVM_SECCOMP_RET_TRAP),
        ]
        var plain = numbers
        for (call, body) in guarded(refuse: refuse, ioctls: ioctls) where plain.contains(call) {
            plain.removeAll { $0 == call }
            p += [jump(VFSVM_BPF_JEQ_K, call, ifTrue: 0, ifFalse: UInt8(body.count))] + body
        }
        p += search(plain[...], refuse: refuse)
        return p
    }

    /// Calls allowed only with some arguments (see the type's comment):
    /// each body starts with the call number in the accumulator and ends in
    /// a return.
    static func guarded(refuse: UInt32, ioctls: [UInt32]) -> [(UInt32, [sock_filter])] {
        let namespaces = UInt32(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)
        return [
            (UInt32(SYS_unshare), [
                load(VFSVM_SECCOMP_DATA_ARG0_LOW),
                jump(VFSVM_BPF_JEQ_K, UInt32(CLONE_FS), ifTrue: 1, ifFalse: 0),
                ret(refuse),
                ret(VFSVM_SECCOMP_RET_ALLOW),
            ]),
            (UInt32(SYS_clone), [
                load(VFSVM_SECCOMP_DATA_ARG0_LOW),
                jump(VFSVM_BPF_JSET_K, namespaces, ifTrue: 1, ifFalse: 0),
                jump(VFSVM_BPF_JSET_K, UInt32(CLONE_THREAD), ifTrue: 1, ifFalse: 0),
                ret(refuse),
                ret(VFSVM_SECCOMP_RET_ALLOW),
            ]),
            (UInt32(SYS_clone3), [ret(VFSVM_SECCOMP_RET_ENOSYS)]),
            (UInt32(SYS_ioctl), oneOf(ioctls, argumentAt: VFSVM_SECCOMP_DATA_ARG1_LOW, refuse: refuse)),
            // This process's own threads only: tgkill of another tgid would
            // let a compromised server signal (kill) any process of its uid.
            (UInt32(SYS_tgkill), oneOf([UInt32(bitPattern: getpid())], argumentAt: VFSVM_SECCOMP_DATA_ARG0_LOW, refuse: refuse)),
        ]
    }

    /// Code that returns ALLOW if the accumulator is one of `numbers`
    /// (sorted), else `refuse`. Small ranges compare one by one; larger ones
    /// split at the middle (JGE), the upper half reached by an unconditional
    /// jump so no 8-bit jump offset can overflow.
    static func search(_ numbers: ArraySlice<UInt32>, refuse: UInt32) -> [sock_filter] {
        if numbers.count <= 6 {
            var code: [sock_filter] = []
            for (i, n) in numbers.enumerated() {
                // To the ALLOW after the chain and its `refuse`.
                code.append(jump(VFSVM_BPF_JEQ_K, n, ifTrue: UInt8(numbers.count - i), ifFalse: 0))
            }
            return code + [ret(refuse), ret(VFSVM_SECCOMP_RET_ALLOW)]
        }
        let mid = numbers.startIndex + numbers.count / 2
        let lower = search(numbers[..<mid], refuse: refuse)
        let upper = search(numbers[mid...], refuse: refuse)
        return [jump(VFSVM_BPF_JGE_K, numbers[mid], ifTrue: 0, ifFalse: 1),
                sock_filter(code: VFSVM_BPF_JA, jt: 0, jf: 0, k: UInt32(lower.count))] + lower + upper
    }

    /// ALLOW if the low word of the argument at `offset` is one of `values`.
    static func oneOf(_ values: [UInt32], argumentAt offset: UInt32, refuse: UInt32) -> [sock_filter] {
        var code = [load(offset)]
        for (i, v) in values.enumerated() {
            code.append(jump(VFSVM_BPF_JEQ_K, v, ifTrue: UInt8(values.count - i), ifFalse: 0))
        }
        return code + [ret(refuse), ret(VFSVM_SECCOMP_RET_ALLOW)]
    }

    static func load(_ offset: UInt32) -> sock_filter { sock_filter(code: VFSVM_BPF_LD_W_ABS, jt: 0, jf: 0, k: offset) }
    static func ret(_ action: UInt32) -> sock_filter { sock_filter(code: VFSVM_BPF_RET_K, jt: 0, jf: 0, k: action) }
    static func jump(_ code: UInt16, _ k: UInt32, ifTrue: UInt8, ifFalse: UInt8) -> sock_filter {
        sock_filter(code: code, jt: ifTrue, jf: ifFalse, k: k)
    }
}
