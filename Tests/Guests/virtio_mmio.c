/* virtio-mmio version 2 (virtio 1.2, 4.2.2) for the test guests. */
#include "virtio.h"
#include <linux/virtio_mmio.h>

u64 virtio_mmio_base;
#define base virtio_mmio_base

extern u64 virtio_shm_base, virtio_shm_len;

static u32 rd(u32 off) { return mmio_read32(base + off); }
static void wr(u32 off, u32 v) { mmio_write32(base + off, v); }

static u64 get_features(void) {
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    u64 hi = rd(VIRTIO_MMIO_DEVICE_FEATURES);
    wr(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    return hi << 32 | rd(VIRTIO_MMIO_DEVICE_FEATURES);
}

static void set_features(u64 f) {
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (u32)(f >> 32));
    wr(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(VIRTIO_MMIO_DRIVER_FEATURES, (u32)f);
}

static u8 get_status(void) { return (u8)rd(VIRTIO_MMIO_STATUS); }
static void set_status(u8 s) { wr(VIRTIO_MMIO_STATUS, s); }

static void read_config(u32 off, void *buf, u32 len) {
    u8 *b = buf;
    for (u32 i = 0; i < len; i++) b[i] = mmio_read8(base + VIRTIO_MMIO_CONFIG + off + i);
}

static u16 queue_max(u16 index) {
    wr(VIRTIO_MMIO_QUEUE_SEL, index);
    return (u16)rd(VIRTIO_MMIO_QUEUE_NUM_MAX);
}

static void setup_queue(struct vq *q) {
    wr(VIRTIO_MMIO_QUEUE_SEL, q->index);
    wr(VIRTIO_MMIO_QUEUE_NUM, q->size);
    u64 d = q->packed ? (u64)q->pdesc : (u64)q->desc;
    u64 drv = q->packed ? (u64)q->driver_event : (u64)q->avail;
    u64 dev = q->packed ? (u64)q->device_event : (u64)q->used;
    wr(VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)d);
    wr(VIRTIO_MMIO_QUEUE_DESC_HIGH, (u32)(d >> 32));
    wr(VIRTIO_MMIO_QUEUE_AVAIL_LOW, (u32)drv);
    wr(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (u32)(drv >> 32));
    wr(VIRTIO_MMIO_QUEUE_USED_LOW, (u32)dev);
    wr(VIRTIO_MMIO_QUEUE_USED_HIGH, (u32)(dev >> 32));
    wr(VIRTIO_MMIO_QUEUE_READY, 1);
    q->notify_addr = base + VIRTIO_MMIO_QUEUE_NOTIFY;
    q->notify_data = q->index;
    q->notify_pio = 0;
}

/* 4.2.3.3 (and Linux's vm_interrupt): read InterruptStatus, acknowledge it. */
static void ack(void) {
    u32 status = rd(VIRTIO_MMIO_INTERRUPT_STATUS);
    if (status) wr(VIRTIO_MMIO_INTERRUPT_ACK, status);
}

static const struct transport mmio_transport = {
    "virtio-mmio", get_features, set_features, get_status, set_status, read_config, queue_max, setup_queue, ack,
};

/* The transport for a virtio-mmio device at `address`, or 0 when the
 * window holds no virtio device of type `device_id`. */
const struct transport *virtio_mmio_probe(u64 address, u32 device_id) {
    base = address;
    if (rd(VIRTIO_MMIO_MAGIC_VALUE) != 0x74726976) return 0; /* "virt" */
    if (rd(VIRTIO_MMIO_VERSION) != 2) return 0;
    if (rd(VIRTIO_MMIO_DEVICE_ID) != device_id) return 0;
    /* Shared-memory region 0 (4.2.2: SHMSel, SHMLen, SHMBase); a length
     * of -1 means there is none. */
    wr(VIRTIO_MMIO_SHM_SEL, 0);
    u64 len = rd(VIRTIO_MMIO_SHM_LEN_LOW) | (u64)rd(VIRTIO_MMIO_SHM_LEN_HIGH) << 32;
    virtio_shm_base = virtio_shm_len = 0;
    if (len != ~0ull) {
        virtio_shm_len = len;
        virtio_shm_base = rd(VIRTIO_MMIO_SHM_BASE_LOW) | (u64)rd(VIRTIO_MMIO_SHM_BASE_HIGH) << 32;
    }
    return &mmio_transport;
}
