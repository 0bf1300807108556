// CVfsvmLinux: the kernel UAPI headers vfsvm speaks, with the function-like
// macros Swift cannot import (ioctl numbers, _IO/_IOW/...) re-exported as
// constants and the variadic libc calls wrapped as fixed-arity functions.
//
// Nothing here holds state. Swift code reaches the kernel through VfsvmSys,
// which funnels every call through one EINTR-retrying, errno-typed path.
#ifndef CVFSVM_LINUX_H
#define CVFSVM_LINUX_H

// No _GNU_SOURCE here: this header is imported next to Swift's Glibc module
// and must see libc's declarations exactly as Glibc does. Calls that need
// _GNU_SOURCE are defined out of line in shim.c.

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/fuse.h>
#include <linux/memfd.h>
#include <linux/kvm.h>
#include <linux/vhost_types.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_fs.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>

// File-system calls for the passthrough file system.
#include "vfsvm_fs.h"
// Sealing and SIGBUS guarding for guest memory a front-end shares by fd.
#include "vfsvm_fault_guard.h"

// Sandbox: seccomp-BPF, no_new_privs, a private procfs, pidfds.
#include "vfsvm_sandbox.h"

// MARK: - Variadic libc calls as fixed-arity functions

static inline int vfsvm_ioctl_ptr(int fd, unsigned long request, void *arg) {
    return ioctl(fd, request, arg);
}

static inline int vfsvm_ioctl_val(int fd, unsigned long request, unsigned long arg) {
    return ioctl(fd, request, arg);
}

static inline int vfsvm_fcntl_int(int fd, int cmd, int arg) {
    return fcntl(fd, cmd, arg);
}

static inline int vfsvm_openat(int dirfd, const char *path, int flags, mode_t mode) {
    return openat(dirfd, path, flags, mode);
}

static inline int vfsvm_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

// MARK: - Calls that need _GNU_SOURCE (defined in shim.c)

int vfsvm_pipe2(int fds[2], int flags);
void vfsvm_set_thread_name(const char *name);
int vfsvm_unshare(int flags);
int vfsvm_unshare_fs(void);
int vfsvm_pivot_root(const char *new_root, const char *put_old);
int vfsvm_capset(uint64_t keep_mask);
int vfsvm_capbset_drop(int cap);

// MARK: - Unix sockets (defined in shim.c: accept4 and MSG_CMSG_CLOEXEC need
// _GNU_SOURCE, and the CMSG_* macros do not import into Swift)

/// socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0).
int vfsvm_unix_stream_socket(void);
/// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds).
int vfsvm_unix_stream_socketpair(int fds[2]);
/// bind(2) to a filesystem path; -1 with ENAMETOOLONG when the path does not
/// fit sun_path (including its NUL).
int vfsvm_unix_bind(int fd, const char *path);
/// vfsvm_unix_bind with the umask set to 0177 for the call: the socket
/// file is 0600 whatever the caller's umask (which is process-wide: the
/// caller binds before other threads create files, or accepts that a file
/// they create in that instant is 0600 too).
int vfsvm_unix_bind_private(int fd, const char *path);
/// connect(2) to a filesystem path; ENAMETOOLONG as for vfsvm_unix_bind.
int vfsvm_unix_connect(int fd, const char *path);
/// accept4(fd, NULL, NULL, SOCK_CLOEXEC).
int vfsvm_accept_cloexec(int fd);
/// recvmsg(2) of up to `len` bytes plus SCM_RIGHTS fds (received
/// close-on-exec). Stores up to `max_fds` received fds in `fds` and their
/// number in `*nfds`; any fd beyond `max_fds` is closed. `*control_truncated`
/// is set when the kernel dropped fds (MSG_CTRUNC) or more than `max_fds`
/// arrived. `max_fds` must be at most 16. Returns the byte count or -1/errno
/// (then no fds are left open).
long vfsvm_recv_with_fds(int sock, void *buf, unsigned long len, int *fds, int max_fds, int *nfds,
                         int *control_truncated);
/// sendmsg(2) of `len` bytes with `nfds` (at most 16) fds as SCM_RIGHTS,
/// MSG_NOSIGNAL. Returns the byte count or -1/errno.
/// The process environment (`environ`), for posix_spawn.
char **vfsvm_environ(void);
/// posix_spawn_file_actions_addclosefrom_np(actions, from) (glibc 2.34):
/// the child closes every fd from `from` up. `actions` is a
/// posix_spawn_file_actions_t *.
int vfsvm_spawn_close_from(void *actions, int from);

long vfsvm_send_with_fds(int sock, const void *buf, unsigned long len, const int *fds, int nfds);

// MARK: - Ring-index atomics (virtio 1.2, 2.7.13 / 2.8.21: memory barriers)
//
// The driver and device share rings in guest memory; the device must read
// an avail index (or a packed descriptor's flags) with acquire semantics
// before it reads what that index publishes, and must publish used entries
// with release semantics. These take raw pointers that VfsvmMemory has
// already bounds- and alignment-checked.

static inline uint16_t vfsvm_load_acquire_u16(const void *p) {
    return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
}

static inline void vfsvm_store_release_u16(void *p, uint16_t v) {
    __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE);
}

static inline uint32_t vfsvm_load_acquire_u32(const void *p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

static inline void vfsvm_store_release_u32(void *p, uint32_t v) {
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}

/// Full barrier: orders the device's used-ring store before its read of the
/// driver's event suppression fields (the "store then load" case that
/// acquire/release alone does not order).
static inline void vfsvm_fence_seq_cst(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

// MARK: - KVM ioctl numbers (linux/kvm.h)

#include "vfsvm_kvm.h"

// MARK: - /dev/fuse ioctls (linux/fuse.h)

static const unsigned long VFSVM_FUSE_DEV_IOC_CLONE = FUSE_DEV_IOC_CLONE;

// FUSE passthrough (linux/fuse.h 7.40; Debian 12's headers are 7.38).
struct vfsvm_fuse_backing_map {
    int32_t fd;
    uint32_t flags;
    uint64_t padding;
};
static const unsigned long VFSVM_FUSE_DEV_IOC_BACKING_OPEN = _IOW(229, 1, struct vfsvm_fuse_backing_map);
static const unsigned long VFSVM_FUSE_DEV_IOC_BACKING_CLOSE = _IOW(229, 2, uint32_t);

#endif
