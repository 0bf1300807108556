// CVfsvmURing: the io_uring data path of the passthrough file system
// (liburing). A target of its own so only what does file I/O through
// io_uring links liburing (the FUSE protocol and the virtio layers do not).
//
// Each thread that does I/O gets its own ring, created on first use and
// freed when the thread exits; every call submits one operation and waits
// for its completion. Results are byte counts or 0, or a negative errno.
#ifndef CVFSVM_URING_H
#define CVFSVM_URING_H

#include <stdint.h>
#include <sys/uio.h>

#include "CVfsvmFUSERing.h"

/// 1 when this thread's ring could be set up (io_uring_queue_init), else 0
/// (kernel without io_uring, disabled by sysctl or seccomp).
int vfsvm_uring_available(void);

/// For tests: an IORING_OP_OPENAT of `path` (O_RDONLY) submitted to a ring
/// set up as the data rings are (`as_data_ring`: restricted to readv,
/// writev, fsync, fallocate and cancel), or to a plain ring of the kind
/// code that is not vfsvm's could make. Returns the completion's result:
/// -EACCES where the restriction holds, an fd (closed again) where the
/// open ran, another -errno, or a setup error.
long vfsvm_uring_openat_probe(const char *path, int as_data_ring);
/// preadv(fd, iov, nr, offset) through this thread's ring.
long vfsvm_uring_readv(int fd, const struct iovec *iov, unsigned nr, int64_t offset);
/// pwritev(fd, iov, nr, offset) through this thread's ring.
long vfsvm_uring_writev(int fd, const struct iovec *iov, unsigned nr, int64_t offset);
/// fsync (data_only: fdatasync) through this thread's ring.
long vfsvm_uring_fsync(int fd, int data_only);
/// fallocate(2) through this thread's ring.
long vfsvm_uring_fallocate(int fd, int mode, int64_t offset, int64_t length);

#endif
