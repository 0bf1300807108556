// Out-of-line wrappers for libc calls that are only declared under
// _GNU_SOURCE, which the public header must not define (it is imported next
// to Swift's Glibc module and must agree with it).
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "CVfsvmLinux.h"

int vfsvm_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

void vfsvm_set_thread_name(const char *name) { (void)pthread_setname_np(pthread_self(), name); }

int vfsvm_unshare(int flags) { return unshare(flags); }

int vfsvm_unshare_fs(void) { return unshare(CLONE_FS); }

int vfsvm_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

// Sets the effective and permitted capability sets to `keep_mask` (bit N =
// capability N) and clears the inheritable set.
int vfsvm_capset(uint64_t keep_mask) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2] = {
        { .effective = (uint32_t)keep_mask, .permitted = (uint32_t)keep_mask, .inheritable = 0 },
        { .effective = (uint32_t)(keep_mask >> 32), .permitted = (uint32_t)(keep_mask >> 32), .inheritable = 0 },
    };
    return (int)syscall(SYS_capset, &header, data);
}

int vfsvm_capbset_drop(int cap) { return prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); }

int vfsvm_unix_stream_socket(void) { return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }

int vfsvm_unix_stream_socketpair(int fds[2]) {
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
}

static int fill_sockaddr_un(struct sockaddr_un *addr, const char *path) {
    size_t n = strlen(path);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (n == 0 || n >= sizeof addr->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(addr->sun_path, path, n + 1);
    return 0;
}

int vfsvm_unix_bind(int fd, const char *path) {
    struct sockaddr_un addr;
    if (fill_sockaddr_un(&addr, path) < 0) return -1;
    return bind(fd, (struct sockaddr *)&addr, sizeof addr);
}

int vfsvm_unix_bind_private(int fd, const char *path) {
    struct sockaddr_un addr;
    if (fill_sockaddr_un(&addr, path) < 0) return -1;
    // bind(2) creates the socket file with 0777 & ~umask; fchmod on a
    // socket fd does not reach the file, so the umask decides: 0600.
    mode_t old = umask(0177);
    int r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    int err = errno;
    umask(old);
    errno = err;
    return r;
}

int vfsvm_unix_connect(int fd, const char *path) {
    struct sockaddr_un addr;
    if (fill_sockaddr_un(&addr, path) < 0) return -1;
    return connect(fd, (struct sockaddr *)&addr, sizeof addr);
}

int vfsvm_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

#define VFSVM_MAX_PASSED_FDS 16

long vfsvm_recv_with_fds(int sock, void *buf, unsigned long len, int *fds, int max_fds, int *nfds,
                         int *control_truncated) {
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int) * VFSVM_MAX_PASSED_FDS)];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {0};
    *nfds = 0;
    *control_truncated = 0;
    if (max_fds < 0 || max_fds > VFSVM_MAX_PASSED_FDS) {
        errno = EINVAL;
        return -1;
    }
    memset(&control, 0, sizeof control);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    // Room for exactly max_fds: one more and the kernel reports MSG_CTRUNC.
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)max_fds);
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) return -1;
    if (msg.msg_flags & MSG_CTRUNC) *control_truncated = 1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (*nfds < max_fds) {
                fds[(*nfds)++] = fd;
            } else {
                close(fd);
                *control_truncated = 1;
            }
        }
    }
    return (long)n;
}

long vfsvm_send_with_fds(int sock, const void *buf, unsigned long len, const int *fds, int nfds) {
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int) * VFSVM_MAX_PASSED_FDS)];
    } control;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {0};
    if (nfds < 0 || nfds > VFSVM_MAX_PASSED_FDS) {
        errno = EINVAL;
        return -1;
    }
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.bytes;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    return (long)sendmsg(sock, &msg, MSG_NOSIGNAL);
}

extern char **environ;

char **vfsvm_environ(void) { return environ; }

int vfsvm_spawn_close_from(void *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
}
