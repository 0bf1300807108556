// FUSE over io_uring (Linux 6.14+, fs/fuse/dev_uring.c): the request
// channel of `vfsvm mount` where the kernel enables it. The kernel hands
// each FUSE request to a buffer the server registered on a ring
// (IORING_OP_URING_CMD on /dev/fuse, FUSE_IO_URING_CMD_REGISTER) and takes
// the reply with the next fetch in one command (COMMIT_AND_FETCH).
//
// Layouts from linux/fuse.h 7.42 (the installed header predates them).
// A ring is used by one thread only; liburing does the ring bookkeeping.
#ifndef CVFSVM_FUSE_RING_H
#define CVFSVM_FUSE_RING_H

#include <stdint.h>
#include <sys/uio.h>

/// fuse_uring_cmd: sqe->cmd_op of IORING_OP_URING_CMD on /dev/fuse.
#define VFSVM_FUSE_IO_URING_CMD_REGISTER 1u
#define VFSVM_FUSE_IO_URING_CMD_COMMIT_AND_FETCH 2u

/// struct fuse_uring_ent_in_out: the trailer of the header buffer.
struct vfsvm_fuse_uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;   // the request's unique, echoed in the commit
    uint32_t payload_sz;  // bytes valid in the payload buffer, either way
    uint32_t padding;
    uint64_t reserved;
};

/// struct fuse_uring_req_header: iov[0] of a REGISTER. in_out holds the
/// fuse_in_header of a fetched request, the fuse_out_header of a commit;
/// op_in the request's first argument (its per-opcode struct).
struct vfsvm_fuse_uring_req_header {
    char in_out[128];
    char op_in[128];
    struct vfsvm_fuse_uring_ent_in_out ring_ent_in_out;
};

struct vfsvm_fuse_ring;

/// A ring with 128-byte SQEs (the FUSE command lives in the SQE's 80-byte
/// command area) and `cq_entries` completions (at least as many as
/// commands can be in flight: past that the kernel keeps completions on an
/// overflow list, slower): 0 and *out set, or -errno (io_uring disabled,
/// seccomp, a kernel without SQE128).
int vfsvm_fuse_ring_create(unsigned entries, unsigned cq_entries, struct vfsvm_fuse_ring **out);
void vfsvm_fuse_ring_destroy(struct vfsvm_fuse_ring *ring);

/// Queues (does not submit) one FUSE command on `fuse_fd`: `iov` is the
/// entry's two buffers (header, payload) and must stay valid while the
/// entry is registered. 0, or -EBUSY when the submission queue is full.
int vfsvm_fuse_ring_queue_cmd(struct vfsvm_fuse_ring *ring, int fuse_fd, uint32_t cmd_op,
                              const struct iovec *iov, uint16_t qid, uint64_t commit_id, uint64_t tag);

/// Queues a read(2) of `len` bytes into `buf` (an eventfd's counter).
int vfsvm_fuse_ring_queue_read(struct vfsvm_fuse_ring *ring, int fd, void *buf, unsigned len, uint64_t tag);

/// Submits what is queued without waiting: 0 or -errno.
int vfsvm_fuse_ring_submit(struct vfsvm_fuse_ring *ring);

/// Submits what is queued and waits for at least one completion; stores
/// up to `max` (tag, result) pairs and returns their number, or -errno.
int vfsvm_fuse_ring_submit_and_wait(struct vfsvm_fuse_ring *ring, uint64_t *tags, int32_t *results, unsigned max);

/// Runs the calling thread on `cpu` only: 0 or -errno.
int vfsvm_fuse_ring_pin_thread(unsigned cpu);

#endif
