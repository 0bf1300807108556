#ifndef VFSVM_FUSE_GUEST_H
#define VFSVM_FUSE_GUEST_H
#include "virtio.h"
#include <linux/fuse.h>

/* One FUSE request on `q`: header + `arg` + `name` (NUL included when
 * given) readable, the reply into `out` (header included). Returns the
 * reply's error (0 or -errno); *out_len gets the reply length. */
int fuse_call(struct vq *q, u32 opcode, u64 nodeid, const void *arg, u32 arg_len, const char *name,
              void *out, u32 out_cap, u32 *out_len);
/* FORGET on the hiprio queue (no reply; waits for the buffer to come back). */
void fuse_forget(struct vq *hiprio, u64 nodeid, u64 nlookup);
extern u64 fuse_requests;
#endif
