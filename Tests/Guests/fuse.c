#include "fuse.h"

u64 fuse_requests;
static u64 next_unique = 1;
static u8 request[4096] __attribute__((aligned(64)));

int fuse_call(struct vq *q, u32 opcode, u64 nodeid, const void *arg, u32 arg_len, const char *name,
              void *out, u32 out_cap, u32 *out_len) {
    u32 name_len = name ? (u32)strlen(name) + 1 : 0;
    u32 len = (u32)sizeof(struct fuse_in_header) + arg_len + name_len;
    if (len > sizeof request) fail("FUSE request too large");
    struct fuse_in_header *h = (void *)request;
    memset(h, 0, sizeof *h);
    h->len = len;
    h->opcode = opcode;
    h->unique = next_unique++;
    h->nodeid = nodeid;
    if (arg_len) memcpy(request + sizeof *h, arg, arg_len);
    if (name_len) memcpy(request + sizeof *h + arg_len, name, name_len);
    struct buf bufs[2] = {{request, len, 0}, {out, out_cap, 1}};
    memset(out, 0, sizeof(struct fuse_out_header));
    vq_submit(q, bufs, 2);
    u32 used = vq_wait(q);
    fuse_requests++;
    struct fuse_out_header *o = out;
    if (used < sizeof *o || o->len != used) {
        puts("FUSE opcode ");
        put_dec(opcode);
        puts(": used length ");
        put_dec(used);
        puts(", header length ");
        put_dec(o->len);
        puts("\n");
        fail("bad FUSE reply length");
    }
    if (o->unique != h->unique) fail("FUSE reply for another request");
    if (out_len) *out_len = used;
    return o->error;
}

void fuse_forget(struct vq *hiprio, u64 nodeid, u64 nlookup) {
    static u8 forget[sizeof(struct fuse_in_header) + sizeof(struct fuse_forget_in)] __attribute__((aligned(64)));
    struct fuse_in_header *h = (void *)forget;
    memset(forget, 0, sizeof forget);
    h->len = sizeof forget;
    h->opcode = FUSE_FORGET;
    h->unique = next_unique++;
    h->nodeid = nodeid;
    ((struct fuse_forget_in *)(forget + sizeof *h))->nlookup = nlookup;
    struct buf b = {forget, sizeof forget, 0};
    vq_submit(hiprio, &b, 1);
    vq_wait(hiprio);
    fuse_requests++;
}
