import CVfsvmLinux
import Glibc

/// The system calls the file server makes once it serves (`vfsvm serve`
/// after its sandbox is in place, `vfsvm mount` after mounting), for
/// `Seccomp.install`. Calls made only while starting (execve, socket, bind,
/// listen, mount, pivot_root, chroot, fsopen/fsconfig/fsmount, capset,
/// prctl(PR_CAPBSET_DROP) ...) are not on it.
///
/// How it was built (x86_64, glibc 2.36, Swift 6.3.1, kernel 6.18): the
/// integration suites (mount-test, boot-test, libvirt-test: `vfsvm mount`
/// under tar/cp/git/sqlite3/locks/xattrs/sparse files, `vfsvm serve` under
/// Linux guests on split and packed rings, several queues, read-only
/// shares, resets, a killed guest, libvirt's launch line with a thread
/// pool) were run with vfsvm under `strace -f -qq -o FILE`; the union of
/// the call names in those traces (about 100, over 1.5 million calls), minus
/// the start-up calls above, is the core of this list. Added by reading the
/// code, for paths those suites do not reach: every call behind a VfsvmSys
/// and CVfsvmLinux wrapper the FUSE core uses (mknodat, fallocate,
/// copy_file_range, statx, statfs, fchmod/fchown, preadv/pwritev of the
/// sync engine, the f*xattr variants for open handles), calls the Swift
/// runtime and glibc make on rarer paths (mremap in realloc, fstat,
/// clock_nanosleep, sched_yield, rt_sigreturn), umount2 of `vfsvm mount`'s
/// SIGTERM path (its tracer took that signal), setgroups and getgroups for
/// per-request supplementary groups (the raw per-thread calls), and tgkill/getpid/gettid for the SIGSYS reporter
/// and abort(). restart_syscall (the kernel resuming a poll or futex wait
/// interrupted by a signal; strace does not show it) was missing from the
/// first list: boot-test's serve died with the reporter's line naming 219.
/// Then the same suites ran with `--seccomp kill` and passed.
///
/// FUSE ACCESS (faccessat2) was missing: no suite's guest sent it, a
/// hostile one can. Since then VfsvmSandboxTests/FUSESweepTests runs
/// vfsvm-fuse-sweep (Tests/FUSESweepProbe): serve's file server, sandbox
/// and kill filter, and every FUSE opcode with valid and invalid arguments
/// (xattrs on files, directories, fifos and symlinks; every SETATTR field;
/// fallocate modes; SEEK_DATA/HOLE; copy_file_range; tmpfile; RENAME2
/// flags; mknod of each type; POSIX and flock waiters on threads of their
/// own; a submount; FORGET, DESTROY and a new INIT) on both I/O engines. It
/// found nothing else missing.
///
/// epoll_create1, epoll_ctl and epoll_wait (2026-12-04): the queue threads
/// wait for kicks with one edge-triggered epoll set each (`EdgeTriggeredWait`),
/// created when a queue starts, after the filter is in place.
///
/// io_uring submissions do not pass through seccomp (the kernel runs them):
/// the engine's rings are restricted to readv, writev, fsync, fallocate and
/// cancel before they are enabled (CVfsvmURing's uring.c), but a ring made
/// by code that is not vfsvm's would not be, so the io_uring calls are on
/// the list only where the engine is io_uring, and what such a ring could
/// open is what the mount namespace shows.
///
/// unshare, clone, clone3, ioctl and tgkill are allowed only with some arguments:
/// see `Seccomp` (and `ioctlRequests` here).
public enum SeccompAllowList {
    public static func fileServer(ioURing: Bool = true) -> [Int32] {
        ioURing ? common + uring : common
    }

    /// ioctl requests allowed: TCGETS (isatty, from the Swift runtime and
    /// glibc's stdio) and FUSE_DEV_IOC_CLONE (`vfsvm mount`'s workers).
    public static let ioctlRequests: [UInt32] = [UInt32(TCGETS), UInt32(truncatingIfNeeded: VFSVM_FUSE_DEV_IOC_CLONE),
                                                  UInt32(truncatingIfNeeded: VFSVM_FUSE_DEV_IOC_BACKING_OPEN),
                                                  UInt32(truncatingIfNeeded: VFSVM_FUSE_DEV_IOC_BACKING_CLOSE)]

    /// `vfsvm run --accel kvm` once the VM is built (Run.runKVM): the VMM's
    /// vCPU, device and console threads and the shares' FUSE servers in one
    /// process. The file server's list minus what only a vhost-user backend
    /// or `vfsvm mount` calls (the socket's accept4, recvmsg, sendmsg,
    /// shutdown and getsockopt; umount2); ioctl only with a request of
    /// `vmmIoctlRequests`.
    ///
    /// How it was built (x86_64, glibc 2.36, Swift 6.3.1, kernel 6.18):
    /// `strace -f` of `vfsvm run --accel kvm` under every vmm-test guest
    /// (hello, events' power-off/reset/triple fault/xsave/spin/--timeout,
    /// virtiofs over mmio and pci with each ring, MSI-X, INTx level, a moved
    /// BAR0, MSI-X masking, two shares on two vCPUs, DAX on pci and mmio,
    /// hostile on both transports): every call made after the first KVM_RUN
    /// is on the file server's list; the ioctls were KVM_RUN,
    /// KVM_IOEVENTFD, KVM_SET_GSI_ROUTING, KVM_CHECK_EXTENSION (an
    /// ioeventfd's length check when a BAR is enabled),
    /// KVM_SET_USER_MEMORY_REGION (the DAX window follows BAR2),
    /// KVM_GET_REGS, KVM_GET_SREGS and KVM_TRANSLATE (the line for an
    /// unhandled exit). Added by reading the code: KVM_IRQ_LINE, KVM_IRQFD
    /// and KVM_SIGNAL_MSI (VirtualMachine calls the board may make while
    /// the guest runs) and TCSETS (the console puts the terminal back).
    /// Then vmm-test and domain-test ran under the filter and passed.
    public static func vmm(ioURing: Bool = true) -> [Int32] {
        let backendOnly = Set([SYS_accept4, SYS_recvmsg, SYS_sendmsg, SYS_shutdown, SYS_getsockopt, SYS_umount2].map { Int32($0) })
        return fileServer(ioURing: ioURing).filter { !backendOnly.contains($0) }
    }

    /// ioctl requests of the running VMM: TCGETS and TCSETS (the console's
    /// terminal), the vCPU's KVM_RUN and the few VM and vCPU requests the
    /// board makes while the guest runs. Not KVM_CREATE_VM, KVM_CREATE_VCPU
    /// or any request that sets a vCPU's registers, CPUID or MSRs.
    public static let vmmIoctlRequests: [UInt32] = [UInt32(TCGETS), UInt32(TCSETS)] + [
        VFSVM_KVM_RUN, VFSVM_KVM_IRQ_LINE, VFSVM_KVM_IRQFD, VFSVM_KVM_IOEVENTFD, VFSVM_KVM_SET_GSI_ROUTING,
        VFSVM_KVM_SIGNAL_MSI, VFSVM_KVM_SET_USER_MEMORY_REGION, VFSVM_KVM_CHECK_EXTENSION,
        VFSVM_KVM_GET_REGS, VFSVM_KVM_GET_SREGS, VFSVM_KVM_TRANSLATE,
    ].map { UInt32(truncatingIfNeeded: $0) }

    static let uring: [Int32] = [SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register].map { Int32($0) }

    static let common: [Int32] = [
        // File data and fds.
        SYS_read, SYS_write, SYS_pread64, SYS_pwrite64, SYS_preadv, SYS_pwritev,
        SYS_close, SYS_fcntl, SYS_lseek, SYS_ioctl,
        SYS_ftruncate, SYS_fallocate, SYS_fsync, SYS_fdatasync, SYS_syncfs,
        SYS_copy_file_range, SYS_flock,
        // Names, inodes and attributes (all *at() below the share's fds).
        SYS_openat, SYS_openat2, SYS_open_by_handle_at, SYS_name_to_handle_at,
        SYS_newfstatat, SYS_fstat, SYS_statx, SYS_fstatfs, SYS_statfs,
        // FUSE ACCESS (accessAt): glibc's faccessat with AT_EACCESS is
        // faccessat2, or faccessat where the kernel lacks it.
        SYS_faccessat, SYS_faccessat2,
        SYS_getdents64, SYS_readlinkat,
        SYS_mkdirat, SYS_mknodat, SYS_symlinkat, SYS_linkat, SYS_unlinkat, SYS_renameat2,
        SYS_fchownat, SYS_fchown, SYS_fchmodat, SYS_fchmod, SYS_utimensat,
        SYS_getxattr, SYS_setxattr, SYS_listxattr, SYS_removexattr,
        SYS_fgetxattr, SYS_fsetxattr, SYS_flistxattr, SYS_fremovexattr,
        // Per-thread context: working directory (XattrCall), credentials.
        SYS_unshare, SYS_fchdir, SYS_umask, SYS_setfsuid, SYS_setfsgid, SYS_setgroups, SYS_getgroups,
        SYS_getuid, SYS_getgid,
        // vhost-user: the socket, kicks and calls, guest memory.
        SYS_accept4, SYS_recvmsg, SYS_sendmsg, SYS_shutdown, SYS_getsockopt,
        SYS_poll, SYS_eventfd2, SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_wait,
        SYS_mmap, SYS_munmap, SYS_mprotect, SYS_madvise, SYS_mremap, SYS_brk,
        // Threads and the Swift runtime.
        SYS_clone, SYS_clone3, SYS_futex, SYS_set_robust_list, SYS_rseq, SYS_sched_yield,
        SYS_sched_getaffinity, SYS_gettid, SYS_getpid, SYS_tgkill, SYS_exit, SYS_exit_group, SYS_prctl,
        SYS_prlimit64, SYS_getrandom,
        SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_sigaltstack, SYS_rt_sigtimedwait,
        SYS_restart_syscall,
        SYS_clock_gettime, SYS_clock_nanosleep,
        // `vfsvm mount`: the lazy unmount on SIGTERM.
        SYS_umount2,
    ].map { Int32($0) }
}
