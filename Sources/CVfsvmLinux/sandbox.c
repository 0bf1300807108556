// Process confinement calls (see include/vfsvm_sandbox.h).
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>
#include <linux/capability.h>

#include "vfsvm_sandbox.h"

// linux/mount.h conflicts with glibc 2.36's sys/mount.h; these are its
// values (fsopen(2), fsconfig(2), fsmount(2)).
#define VFSVM_FSOPEN_CLOEXEC 0x00000001
#define VFSVM_FSCONFIG_SET_STRING 1
#define VFSVM_FSCONFIG_CMD_CREATE 6
#define VFSVM_FSMOUNT_CLOEXEC 0x00000001
#define VFSVM_MOUNT_ATTR_RDONLY 0x00000001
#define VFSVM_MOUNT_ATTR_NOSUID 0x00000002
#define VFSVM_MOUNT_ATTR_NODEV 0x00000004
#define VFSVM_MOUNT_ATTR_NOEXEC 0x00000008

int vfsvm_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

int vfsvm_seccomp_install(const struct sock_filter *filter, unsigned short count, int log_actions) {
    struct sock_fprog prog = { .len = count, .filter = (struct sock_filter *)filter };
    unsigned int flags = SECCOMP_FILTER_FLAG_TSYNC | (log_actions ? SECCOMP_FILTER_FLAG_LOG : 0);
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    // With TSYNC a positive result is the id of a thread that could not be
    // synchronized: report it as a failure.
    if (r > 0) { errno = EBUSY; return -1; }
    return (int)r;
}

// Appends the decimal or hex digits of `v` to `p`; returns the new end.
static char *put_unsigned(char *p, unsigned long v, unsigned base) {
    char digits[24];
    int n = 0;
    do { digits[n++] = "0123456789abcdef"[v % base]; v /= base; } while (v && n < 24);
    while (n) *p++ = digits[--n];
    return p;
}

static char *put_text(char *p, const char *s) {
    while (*s) *p++ = *s++;
    return p;
}

// The terminal the reporter restores (vfsvm_seccomp_restore_terminal_on_kill).
static volatile int restore_fd = -1;
static struct termios restore_modes;

void vfsvm_seccomp_restore_terminal_on_kill(int fd, const struct termios *saved) {
    restore_fd = -1;
    if (fd < 0 || saved == NULL) return;
    restore_modes = *saved;
    restore_fd = fd;
}

static void seccomp_reporter(int sig, siginfo_t *info, void *context) {
    (void)context;
    // First, so that the line below and the shell after it see a sane terminal.
    if (restore_fd >= 0) (void)tcsetattr(restore_fd, TCSANOW, &restore_modes);
    char line[256];
    char *p = line;
    p = put_text(p, "vfsvm: seccomp: system call ");
    p = put_unsigned(p, (unsigned long)(unsigned)info->si_syscall, 10);
    p = put_text(p, " (arch 0x");
    p = put_unsigned(p, info->si_arch, 16);
    p = put_text(p, ") is not on the sandbox's allow-list; stopping. "
                    "Run with --seccomp log to allow it and have the kernel log it.\n");
    ssize_t ignored = write(2, line, (size_t)(p - line));
    (void)ignored;
    // SA_RESETHAND made the disposition SIG_DFL and SA_NODEFER left the
    // signal unblocked: this ends the process with SIGSYS (tgkill, getpid
    // and gettid are on the allow-list).
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

int vfsvm_install_seccomp_reporter(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = seccomp_reporter;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSYS, &sa, NULL);
}

int vfsvm_capget(uint64_t *effective, uint64_t *permitted) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    *effective = (uint64_t)data[0].effective | (uint64_t)data[1].effective << 32;
    *permitted = (uint64_t)data[0].permitted | (uint64_t)data[1].permitted << 32;
    return 0;
}

int vfsvm_clear_ambient_capabilities(void) { return prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); }

long vfsvm_syscall3(long nr, long a, long b, long c) { return syscall(nr, a, b, c); }

long vfsvm_i386_getpid(void) {
    long r = 20;  // __NR_getpid in arch/x86/entry/syscalls/syscall_32.tbl
    __asm__ volatile("int $0x80" : "+a"(r) : : "memory");
    return r;
}

// fsconfig(CMD_CREATE) on the configured context `fs`, then fsmount with
// `attrs`: the new mount's fd, or -1/errno. `fs` is closed either way.
static int create_detached_mount(int fs, unsigned attrs) {
    int mnt = -1;
    if (syscall(SYS_fsconfig, fs, VFSVM_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        mnt = (int)syscall(SYS_fsmount, fs, VFSVM_FSMOUNT_CLOEXEC, attrs);
    int err = errno;
    close(fs);
    errno = err;
    return mnt;
}

// fsconfig(SET_STRING key=value) on `fs`; on failure closes it (errno kept).
static int set_string(int fs, const char *key, const char *value) {
    if (syscall(SYS_fsconfig, fs, VFSVM_FSCONFIG_SET_STRING, key, value, 0) == 0) return 0;
    int err = errno;
    close(fs);
    errno = err;
    return -1;
}

int vfsvm_open_detached_procfs(void) {
    int fs = (int)syscall(SYS_fsopen, "proc", VFSVM_FSOPEN_CLOEXEC);
    if (fs < 0 || set_string(fs, "subset", "pid") < 0) return -1;
    return create_detached_mount(fs, VFSVM_MOUNT_ATTR_RDONLY | VFSVM_MOUNT_ATTR_NOSUID | VFSVM_MOUNT_ATTR_NODEV | VFSVM_MOUNT_ATTR_NOEXEC);
}

// linux/mount.h values (see above): open_tree(2), move_mount(2).
#define VFSVM_OPEN_TREE_CLONE 1
#define VFSVM_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define VFSVM_MOVE_MOUNT_T_EMPTY_PATH 0x00000040

int vfsvm_clone_tree(int fd) {
    return (int)syscall(SYS_open_tree, fd, "", VFSVM_OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH | 0x8000 /* AT_RECURSIVE */);
}

int vfsvm_clone_subtree(int dir, const char *path) {
    return (int)syscall(SYS_open_tree, dir, path, VFSVM_OPEN_TREE_CLONE | O_CLOEXEC);
}

int vfsvm_restrict_tree(int tree, int read_only) {
    struct { uint64_t attr_set, attr_clr, propagation, userns_fd; } attr = {
        .attr_set = VFSVM_MOUNT_ATTR_NODEV | VFSVM_MOUNT_ATTR_NOSUID | (read_only ? VFSVM_MOUNT_ATTR_RDONLY : 0)
    };
    return (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | 0x8000 /* AT_RECURSIVE */, &attr, sizeof attr);
}

int vfsvm_attach_tree(int tree, int target) {
    return (int)syscall(SYS_move_mount, tree, "", target, "", VFSVM_MOVE_MOUNT_F_EMPTY_PATH | VFSVM_MOVE_MOUNT_T_EMPTY_PATH);
}

int vfsvm_attach_tree_at(int tree, int dir, const char *name) {
    return (int)syscall(SYS_move_mount, tree, "", dir, name, VFSVM_MOVE_MOUNT_F_EMPTY_PATH);
}

int vfsvm_open_detached_tmpfs(void) {
    int fs = (int)syscall(SYS_fsopen, "tmpfs", VFSVM_FSOPEN_CLOEXEC);
    if (fs < 0 || set_string(fs, "mode", "0755") < 0 || set_string(fs, "size", "1m") < 0) return -1;
    return create_detached_mount(fs, VFSVM_MOUNT_ATTR_NOSUID | VFSVM_MOUNT_ATTR_NODEV | VFSVM_MOUNT_ATTR_NOEXEC);
}

int vfsvm_make_mount_read_only(int fd) {
    struct { uint64_t attr_set, attr_clr, propagation, userns_fd; } attr = { .attr_set = VFSVM_MOUNT_ATTR_RDONLY };
    return (int)syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr);
}

int vfsvm_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int vfsvm_pidfd_getfd(int pidfd, int target_fd) { return (int)syscall(SYS_pidfd_getfd, pidfd, target_fd, 0); }
