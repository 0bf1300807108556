#define _GNU_SOURCE
// FUSE over io_uring rings for `vfsvm mount`; see include/CVfsvmFUSERing.h.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <liburing.h>

#include "CVfsvmFUSERing.h"

struct vfsvm_fuse_ring {
    struct io_uring ring;
};

_Static_assert(sizeof(struct vfsvm_fuse_uring_req_header) == 288, "fuse_uring_req_header is 288 bytes");

/// struct fuse_uring_cmd_req, in the SQE's command area.
struct fuse_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

int vfsvm_fuse_ring_create(unsigned entries, unsigned cq_entries, struct vfsvm_fuse_ring **out) {
    struct vfsvm_fuse_ring *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    // No COOP_TASKRUN: the kernel copies a request into our buffers as
    // task work of this thread, and that must wake it wherever it sleeps.
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    int e = io_uring_queue_init_params(entries, &r->ring, &p);
    if (e < 0) { free(r); return e; }
    *out = r;
    return 0;
}

void vfsvm_fuse_ring_destroy(struct vfsvm_fuse_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

int vfsvm_fuse_ring_queue_cmd(struct vfsvm_fuse_ring *r, int fuse_fd, uint32_t cmd_op,
                              const struct iovec *iov, uint16_t qid, uint64_t commit_id, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    memset(sqe, 0, 128);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = fuse_fd;
    sqe->cmd_op = cmd_op;
    sqe->addr = (uint64_t)(uintptr_t)iov;
    sqe->len = 2;
    struct fuse_cmd_req req = { .flags = 0, .commit_id = commit_id, .qid = qid };
    memcpy(sqe->cmd, &req, sizeof req);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int vfsvm_fuse_ring_queue_read(struct vfsvm_fuse_ring *r, int fd, void *buf, unsigned len, uint64_t tag) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    memset(sqe, 0, 128);
    io_uring_prep_read(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, tag);
    return 0;
}

int vfsvm_fuse_ring_submit_and_wait(struct vfsvm_fuse_ring *r, uint64_t *tags, int32_t *results, unsigned max) {
    int e;
    do { e = io_uring_submit_and_wait(&r->ring, 1); } while (e == -EINTR);
    if (e < 0) return e;
    unsigned n = 0, head;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        if (n == max) break;
        tags[n] = io_uring_cqe_get_data64(cqe);
        results[n] = cqe->res;
        n++;
    }
    io_uring_cq_advance(&r->ring, n);
    return (int)n;
}

int vfsvm_fuse_ring_submit(struct vfsvm_fuse_ring *r) {
    int e;
    do { e = io_uring_submit(&r->ring); } while (e == -EINTR);
    return e < 0 ? e : 0;
}

#include <sched.h>
int vfsvm_fuse_ring_pin_thread(unsigned cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : -errno;
}
