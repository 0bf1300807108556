#include "virtio.h"
#include "intr.h"

u64 vq_kicks;

/* Static ring memory: two queues per device are all the guests use. */
static u8 ring_memory[4][8192] __attribute__((aligned(4096)));
static int rings_used;

void vq_free_all(void) { rings_used = 0; }

void vq_init(struct vq *q, u16 index, int packed) {
    if (rings_used == 4) fail("out of ring memory");
    u8 *m = ring_memory[rings_used++];
    memset(m, 0, sizeof ring_memory[0]);
    memset(q, 0, sizeof *q);
    q->index = index;
    q->size = VQ_SIZE;
    q->packed = packed;
    if (packed) {
        q->pdesc = (void *)m;                                     /* 16 * 16 bytes */
        q->driver_event = (void *)(m + 1024);
        q->device_event = (void *)(m + 2048);
        q->avail_wrap = 1;
        q->used_wrap = 1;
        q->driver_event->flags = VRING_PACKED_EVENT_FLAG_ENABLE;  /* interrupts wanted */
    } else {
        q->desc = (void *)m;                                      /* 16 * 16 bytes, 16-aligned */
        q->avail = (void *)(m + 1024);                            /* 2-aligned */
        q->used = (void *)(m + 2048);                             /* 4-aligned */
    }
}

static void kick(struct vq *q) {
    barrier();
    vq_kicks++;
    if (q->notify_pio) outw((u16)q->notify_addr, (u16)q->notify_data);
    else mmio_write32(q->notify_addr, q->notify_data);
}

void vq_submit(struct vq *q, const struct buf *bufs, int n) {
    if (n > q->size) fail("chain longer than the ring");
    if (!q->packed) {
        for (int i = 0; i < n; i++) {
            q->desc[i].addr = (u64)bufs[i].addr;
            q->desc[i].len = bufs[i].len;
            q->desc[i].flags = (u16)((bufs[i].writable ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0));
            q->desc[i].next = (u16)(i + 1);
        }
        q->avail->ring[q->avail->idx % q->size] = 0;
        barrier();
        q->avail->idx++;
    } else {
        /* 2.8.6: descriptors after the first are made available first,
         * the head's flags last, so the device never sees half a chain. */
        u16 head = q->next_avail;
        u16 head_flags = 0;
        u16 pos = head;
        int wrap = q->avail_wrap;
        for (int i = 0; i < n; i++) {
            struct vring_packed_desc *d = &q->pdesc[pos];
            d->addr = (u64)bufs[i].addr;
            d->len = bufs[i].len;
            d->id = 0;
            u16 flags = (u16)((bufs[i].writable ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0));
            flags |= wrap ? (1 << VRING_PACKED_DESC_F_AVAIL) : (1 << VRING_PACKED_DESC_F_USED);
            if (i == 0) head_flags = flags;
            else d->flags = flags;
            if (++pos == q->size) { pos = 0; wrap = !wrap; }
        }
        barrier();
        q->pdesc[head].flags = head_flags;
        q->next_avail = pos;
        q->avail_wrap = wrap;
        q->chain_len = (u16)n;
    }
    kick(q);
}

static int packed_used(struct vq *q) {
    u16 flags = *(volatile u16 *)&q->pdesc[q->next_used].flags;
    int avail = !!(flags & (1 << VRING_PACKED_DESC_F_AVAIL));
    int used = !!(flags & (1 << VRING_PACKED_DESC_F_USED));
    return avail == used && used == q->used_wrap;
}

u32 vq_wait(struct vq *q) {
    for (;;) {
        u32 seen = irq_count;
        barrier();
        if (!q->packed && *(volatile u16 *)&q->used->idx != q->last_used) {
            barrier();
            u32 len = q->used->ring[q->last_used % q->size].len;
            q->last_used++;
            return len;
        }
        if (q->packed && packed_used(q)) {
            barrier();
            u32 len = q->pdesc[q->next_used].len;
            q->next_used = (u16)(q->next_used + q->chain_len);
            if (q->next_used >= q->size) { q->next_used = (u16)(q->next_used - q->size); q->used_wrap = !q->used_wrap; }
            return len;
        }
        wait_irq(seen);
    }
}
