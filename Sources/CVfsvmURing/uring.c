// io_uring data path for the FUSE passthrough file system (liburing); see
// include/CVfsvmURing.h.
//
// Each thread that does I/O gets its own ring, created on first use and
// freed when the thread exits (pthread key destructor), so no ring is ever
// shared between threads and no lock is needed. Each call submits one
// readv/writev and waits for its completion: the seam for a later engine
// that keeps several requests in flight.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <liburing.h>

#include "CVfsvmURing.h"

static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;
static int ring_key_ok;

static void ring_free(void *p) {
    struct io_uring *ring = p;
    io_uring_queue_exit(ring);
    free(ring);
}

static void ring_key_make(void) { ring_key_ok = pthread_key_create(&ring_key, ring_free) == 0; }

/// The only operations a vfsvm data ring may carry, registered before the
/// ring is enabled (IORING_SETUP_R_DISABLED, IORING_REGISTER_RESTRICTIONS,
/// Linux 5.10): io_uring runs its operations past seccomp, so a ring that
/// could take an IORING_OP_OPENAT or a CONNECT would be a second, unfiltered
/// system call table. No register operation is allowed once enabled.
static const struct io_uring_restriction ring_restrictions[] = {
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV },
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV },
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FSYNC },
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FALLOCATE },
    { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_ASYNC_CANCEL },
};

/// A ring of `entries` restricted to `ring_restrictions`; where the kernel
/// predates restrictions (EINVAL for R_DISABLED), an unrestricted one.
/// The register calls are made directly: liburing 2.3 has wrappers, but
/// the raw call keeps this independent of which liburing symbols a
/// static link resolves.
static int restricted_ring_init(unsigned entries, struct io_uring *ring) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    params.flags = IORING_SETUP_R_DISABLED;
    int r = io_uring_queue_init_params(entries, ring, &params);
    if (r == -EINVAL) return io_uring_queue_init(entries, ring, 0);
    if (r < 0) return r;
    unsigned count = sizeof ring_restrictions / sizeof ring_restrictions[0];
    if (syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_RESTRICTIONS, ring_restrictions, count) < 0
        || syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
        r = -errno;
        io_uring_queue_exit(ring);
        return r;
    }
    return 0;
}

long vfsvm_uring_openat_probe(const char *path, int as_data_ring) {
    struct io_uring ring;
    int r = as_data_ring ? restricted_ring_init(2, &ring) : io_uring_queue_init(2, &ring, 0);
    if (r < 0) return r;
    long answer = -EIO;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (sqe) {
        io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
        struct io_uring_cqe *cqe = NULL;
        if (io_uring_submit(&ring) == 1 && io_uring_wait_cqe(&ring, &cqe) == 0) {
            answer = cqe->res;
            if (answer >= 0) close((int)answer);
            io_uring_cqe_seen(&ring, cqe);
        }
    }
    io_uring_queue_exit(&ring);
    return answer;
}

static struct io_uring *thread_ring(int *err) {
    pthread_once(&ring_once, ring_key_make);
    if (!ring_key_ok) { *err = -ENOMEM; return NULL; }
    struct io_uring *ring = pthread_getspecific(ring_key);
    if (ring) return ring;
    ring = calloc(1, sizeof *ring);
    if (!ring) { *err = -ENOMEM; return NULL; }
    int r = restricted_ring_init(8, ring);
    if (r < 0) { free(ring); *err = r; return NULL; }
    if (pthread_setspecific(ring_key, ring) != 0) { ring_free(ring); *err = -ENOMEM; return NULL; }
    return ring;
}

int vfsvm_uring_available(void) {
    int err = 0;
    return thread_ring(&err) != NULL ? 1 : 0;
}

/// Frees this thread's ring after a failure that may have left an SQE
/// unsubmitted or a request in flight: the next call starts a new ring,
/// so nothing stale is ever submitted or mistaken for its answer.
static void drop_ring(struct io_uring *ring) {
    pthread_setspecific(ring_key, NULL);
    ring_free(ring);
}

/// The tag of this thread's latest SQE (user_data).
static __thread uint64_t ring_seq;

/// Waiting for a completion failed with the request `tag` in flight: the
/// kernel may still read or write the caller's buffers, which the caller
/// reuses once we return. Cancel the request and wait for its completion
/// before the ring goes; if even that cannot be seen, the ring is left
/// allocated (and this thread starts a new one) rather than freed under
/// the request.
static void abandon_in_flight(struct io_uring *ring, uint64_t tag) {
    pthread_setspecific(ring_key, NULL);
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe) {
        io_uring_prep_cancel64(sqe, tag, 0);
        io_uring_sqe_set_data64(sqe, 0);
        int r;
        do { r = io_uring_submit(ring); } while (r == -EINTR);
    }
    for (int failures = 0; failures < 8;) {
        struct io_uring_cqe *cqe = NULL;
        int r = io_uring_wait_cqe(ring, &cqe);
        if (r == -EINTR) continue;
        if (r < 0) { failures++; continue; }
        uint64_t seen = io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(ring, cqe);
        if (seen == tag) { ring_free(ring); return; }
    }
    // Leaked on purpose: freeing it could let the kernel finish the
    // request into memory that belongs to someone else by then.
}

/// Submits the one SQE the caller filled on this thread's ring and waits
/// for the completion carrying its tag: the result, or -errno.
static long submit_and_wait(struct io_uring *ring, struct io_uring_sqe *sqe) {
    uint64_t tag = ++ring_seq;
    io_uring_sqe_set_data64(sqe, tag);
    int r;
    do { r = io_uring_submit(ring); } while (r == -EINTR);
    if (r != 1) { drop_ring(ring); return r < 0 ? r : -EIO; }
    for (;;) {
        struct io_uring_cqe *cqe = NULL;
        do { r = io_uring_wait_cqe(ring, &cqe); } while (r == -EINTR);
        if (r < 0) { abandon_in_flight(ring, tag); return r; }
        uint64_t seen = io_uring_cqe_get_data64(cqe);
        long res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        if (seen == tag) return res;
        // A completion of an earlier request: not ours, skip it.
    }
}

static struct io_uring_sqe *next_sqe(struct io_uring **ring, long *err) {
    int e = 0;
    *ring = thread_ring(&e);
    if (!*ring) { *err = e; return NULL; }
    struct io_uring_sqe *sqe = io_uring_get_sqe(*ring);
    if (!sqe) *err = -EBUSY;
    return sqe;
}

static long ring_rw(int write, int fd, const struct iovec *iov, unsigned nr, int64_t offset) {
    struct io_uring *ring;
    long err = 0;
    struct io_uring_sqe *sqe = next_sqe(&ring, &err);
    if (!sqe) return err;
    if (write) io_uring_prep_writev(sqe, fd, iov, nr, (unsigned long long)offset);
    else io_uring_prep_readv(sqe, fd, iov, nr, (unsigned long long)offset);
    return submit_and_wait(ring, sqe);
}

long vfsvm_uring_fsync(int fd, int data_only) {
    struct io_uring *ring;
    long err = 0;
    struct io_uring_sqe *sqe = next_sqe(&ring, &err);
    if (!sqe) return err;
    io_uring_prep_fsync(sqe, fd, data_only ? IORING_FSYNC_DATASYNC : 0);
    return submit_and_wait(ring, sqe);
}

long vfsvm_uring_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    struct io_uring *ring;
    long err = 0;
    struct io_uring_sqe *sqe = next_sqe(&ring, &err);
    if (!sqe) return err;
    io_uring_prep_fallocate(sqe, fd, mode, (uint64_t)offset, (uint64_t)length);
    return submit_and_wait(ring, sqe);
}

long vfsvm_uring_readv(int fd, const struct iovec *iov, unsigned nr, int64_t offset) {
    return ring_rw(0, fd, iov, nr, offset);
}

long vfsvm_uring_writev(int fd, const struct iovec *iov, unsigned nr, int64_t offset) {
    return ring_rw(1, fd, iov, nr, offset);
}
