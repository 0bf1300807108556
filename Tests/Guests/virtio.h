/* A small virtio 1.x driver for the test guests: one request in flight
 * per queue, split (virtio 1.2, 2.7) or packed (2.8) ring, over
 * virtio-mmio (4.2) or virtio-pci (4.1). */
#ifndef VFSVM_VIRTIO_H
#define VFSVM_VIRTIO_H
#include "guest.h"
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#define VQ_SIZE 16

struct buf {
    void *addr;
    u32 len;
    int writable;
};

struct vq {
    u16 index, size;
    int packed;
    /* split */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    u16 last_used;
    /* packed */
    struct vring_packed_desc *pdesc;
    struct vring_packed_desc_event *driver_event, *device_event;
    u16 next_avail, next_used, chain_len;
    int avail_wrap, used_wrap;
    /* where a kick goes: the transport fills these */
    u64 notify_addr;
    u32 notify_data;
    int notify_pio;
};

/* What a transport provides. */
struct transport {
    const char *name;
    u64 (*get_features)(void);
    void (*set_features)(u64);
    u8 (*get_status)(void);
    void (*set_status)(u8);
    void (*read_config)(u32 offset, void *buf, u32 len);
    u16 (*queue_max)(u16 index);
    /* Publishes q's ring addresses and size and enables it; fills q->notify_*. */
    void (*setup_queue)(struct vq *q);
    void (*ack)(void);
};

void vq_init(struct vq *q, u16 index, int packed);
/* Returns every ring to the pool (after a device reset). */
void vq_free_all(void);
/* Posts bufs[0..n) (readable ones first) as one chain and kicks. */
void vq_submit(struct vq *q, const struct buf *bufs, int n);
/* Waits (hlt) until the chain comes back; returns the used length. */
u32 vq_wait(struct vq *q);
/* How many kicks were sent (for the exit count check). */
extern u64 vq_kicks;

#endif
