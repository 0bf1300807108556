// Process confinement for `vfsvm serve` (VfsvmSys/Sandbox*.swift): a private
// procfs mount, seccomp-BPF, no_new_privs, and the pidfd calls the sandbox
// tests use to inspect a running server. Defined in sandbox.c, which needs
// _GNU_SOURCE and the UAPI headers this one must not pull into Swift's view
// of libc.
#ifndef VFSVM_SANDBOX_H
#define VFSVM_SANDBOX_H

#include <stdint.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <termios.h>

// MARK: - seccomp-BPF (linux/seccomp.h, linux/filter.h, linux/audit.h)

/// AUDIT_ARCH_X86_64: `seccomp_data.arch` of a 64-bit x86 system call.
static const uint32_t VFSVM_AUDIT_ARCH_X86_64 = 0xC000003EU;
/// __X32_SYSCALL_BIT: set in `seccomp_data.nr` of an x32-ABI system call.
static const uint32_t VFSVM_X32_SYSCALL_BIT = 0x40000000U;
/// offsetof(struct seccomp_data, nr) and offsetof(struct seccomp_data, arch).
static const uint32_t VFSVM_SECCOMP_DATA_NR = 0;
static const uint32_t VFSVM_SECCOMP_DATA_ARCH = 4;
/// offsetof(struct seccomp_data, args[0]): its low 32 bits (little endian).
static const uint32_t VFSVM_SECCOMP_DATA_ARG0_LOW = 16;
/// offsetof(struct seccomp_data, args[1]): its low 32 bits.
static const uint32_t VFSVM_SECCOMP_DATA_ARG1_LOW = 24;

static const uint32_t VFSVM_SECCOMP_RET_ALLOW = SECCOMP_RET_ALLOW;
static const uint32_t VFSVM_SECCOMP_RET_LOG = SECCOMP_RET_LOG;
static const uint32_t VFSVM_SECCOMP_RET_TRAP = SECCOMP_RET_TRAP;
static const uint32_t VFSVM_SECCOMP_RET_KILL_PROCESS = SECCOMP_RET_KILL_PROCESS;
/// SECCOMP_RET_ERRNO | ENOSYS: the call fails as if the kernel lacked it.
static const uint32_t VFSVM_SECCOMP_RET_ENOSYS = SECCOMP_RET_ERRNO | 38;

/// BPF opcodes (linux/bpf_common.h) the filter is made of.
static const uint16_t VFSVM_BPF_LD_W_ABS = BPF_LD | BPF_W | BPF_ABS;
static const uint16_t VFSVM_BPF_JEQ_K = BPF_JMP | BPF_JEQ | BPF_K;
static const uint16_t VFSVM_BPF_JGE_K = BPF_JMP | BPF_JGE | BPF_K;
static const uint16_t VFSVM_BPF_JSET_K = BPF_JMP | BPF_JSET | BPF_K;
static const uint16_t VFSVM_BPF_JA = BPF_JMP | BPF_JA;
static const uint16_t VFSVM_BPF_RET_K = BPF_RET | BPF_K;

/// prctl(PR_SET_NO_NEW_PRIVS, 1): execve can no longer grant privileges
/// (setuid bits, file capabilities); required for an unprivileged filter.
int vfsvm_set_no_new_privs(void);

/// seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC [| _LOG], prog):
/// installs `count` instructions on every thread of the process. With
/// `log_actions`, actions other than ALLOW are also logged (audit).
int vfsvm_seccomp_install(const struct sock_filter *filter, unsigned short count, int log_actions);

/// Installs the SIGSYS handler for SECCOMP_RET_TRAP: it writes one line to
/// fd 2 naming the refused system call (number and architecture), then ends
/// the process by SIGSYS. Only async-signal-safe calls (write, tgkill).
int vfsvm_install_seccomp_reporter(void);

/// Has the SIGSYS reporter put terminal `fd` back in the modes `*saved`
/// (tcsetattr, async-signal-safe) before it ends the process: `vfsvm run`
/// keeps stdin in raw mode while the guest runs. A negative fd (or NULL)
/// cancels it.
void vfsvm_seccomp_restore_terminal_on_kill(int fd, const struct termios *saved);

/// syscall(nr, a, b, c): for tests that make a call the filter refuses.
long vfsvm_syscall3(long nr, long a, long b, long c);
/// getpid through the i386 entry (int $0x80, eax 20): for the test that the
/// filter refuses calls of another architecture.
long vfsvm_i386_getpid(void);

// MARK: - Capabilities

/// capget(2) of the calling thread: effective and permitted sets, bit N =
/// capability N.
int vfsvm_capget(uint64_t *effective, uint64_t *permitted);

/// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL).
int vfsvm_clear_ambient_capabilities(void);

// MARK: - A procfs of our own

/// fsopen("proc") + fsconfig + fsmount: a new procfs instance, mounted
/// nowhere (a detached mount, so ".." from it cannot climb into the host's
/// tree), read-only, with `subset=pid` (only process directories). Returns the mount's
/// root fd (O_CLOEXEC) or -1/errno.
int vfsvm_open_detached_procfs(void);

// MARK: - The share's mount, from its fd (no second path lookup)

/// open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
/// AT_RECURSIVE): a detached copy of the mounts at and below the directory
/// `fd` is open on (a recursive bind mount not yet attached anywhere).
/// Returns its fd or -1/errno (ENOSYS before Linux 5.2).
int vfsvm_clone_tree(int fd);

/// open_tree(dir, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC): a detached
/// bind mount of the one directory `path` names below `dir` (its mount
/// only, not the mounts below it); ".." from its root stays there.
int vfsvm_clone_subtree(int dir, const char *path);

/// mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_NODEV |
/// MOUNT_ATTR_NOSUID, plus MOUNT_ATTR_RDONLY with `read_only`): the cloned
/// tree and every mount in it. -1/ENOSYS before 5.12.
int vfsvm_restrict_tree(int tree, int read_only);

/// move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH |
/// MOVE_MOUNT_T_EMPTY_PATH): attaches the detached tree on the directory
/// `target` is open on.
int vfsvm_attach_tree(int tree, int target);

/// move_mount(tree, "", dir, name, MOVE_MOUNT_F_EMPTY_PATH): attaches the
/// detached tree on the directory `name` in the directory `dir` is open on
/// (which must lie on a mount of the caller's namespace).
int vfsvm_attach_tree_at(int tree, int dir, const char *name);

// MARK: - `vfsvm run`'s root

/// fsopen("tmpfs") + fsconfig (mode=0755, size=1m) + fsmount with
/// nosuid, nodev and noexec: an empty tmpfs mounted nowhere, for the
/// directories the shares are attached on. Returns the mount's root fd
/// (O_CLOEXEC) or -1/errno.
int vfsvm_open_detached_tmpfs(void);

/// mount_setattr(fd, "", AT_EMPTY_PATH, MOUNT_ATTR_RDONLY): the one mount
/// `fd` is open on read-only, the mounts below it left as they are.
/// -1/ENOSYS before Linux 5.12.
int vfsvm_make_mount_read_only(int fd);

// MARK: - pidfd (sandbox tests look at a running server's fds)

/// pidfd_open(pid, 0).
int vfsvm_pidfd_open(int pid);
/// pidfd_getfd(pidfd, target_fd, 0): a copy of another process's fd.
int vfsvm_pidfd_getfd(int pidfd, int target_fd);

#endif
