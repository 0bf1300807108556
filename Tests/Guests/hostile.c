/* A hostile virtio-fs driver: garbage in every virtio-mmio register at
 * every width (with `transport=pci`: in every byte of the function's
 * configuration space but its BAR, and in every register of BAR0), then rings with a looping chain, descriptors pointing past
 * guest memory and a next index past the ring, kicked. The device must
 * survive (ignore, or set DEVICE_NEEDS_RESET); after a reset a proper
 * driver must still get FUSE INIT and LOOKUP served. Exits 0x10 (status
 * 33) when it does. */
#include "fuse.h"
#include "intr.h"
#include <linux/virtio_mmio.h>
#include <linux/virtio_pci.h>

#define VIRTIO_ID_FS 26
const struct transport *virtio_mmio_find(const struct hvm_start_info *si, u32 device_id, int skip);
extern u64 virtio_mmio_base;
const struct transport *virtio_pci_find(u32 device_id, int index, int *msix);
extern u64 virtio_pci_bar0;
u32 virtio_pci_cfg_read(u32 reg, int size);
void virtio_pci_cfg_write(u32 reg, int size, u32 v);

static const struct transport *t;
static u8 reply[4096] __attribute__((aligned(64)));
static u64 seed = 0x9e3779b97f4a7c15;

static u64 next_random(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

static void ack_interrupt(void) { t->ack(); }

static void garbage(u64 base) {
    u32 writes = 0;
    for (u32 off = 0; off < 0x200; off += 4) {
        if (off == VIRTIO_MMIO_STATUS) continue; /* below, on purpose */
        u64 r = next_random();
        mmio_write32(base + off, (u32)r);
        mmio_write16(base + off + 2, (u16)(r >> 32));
        mmio_write8(base + off + 1, (u8)(r >> 48));
        (void)mmio_read32(base + off);
        (void)mmio_read16(base + off + 1);
        writes += 3;
    }
    /* Status values out of order: DRIVER_OK before anything, FAILED, junk. */
    u8 statuses[] = {4, 0xff, 8, 0x80, 0x40, 0x0f, 0};
    for (unsigned i = 0; i < sizeof statuses; i++) mmio_write32(base + VIRTIO_MMIO_STATUS, statuses[i]);
    /* Kicks for queues that do not exist. */
    for (u32 q = 2; q < 40; q += 7) mmio_write32(base + VIRTIO_MMIO_QUEUE_NOTIFY, q);
    mmio_write32(base + VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
    puts("hostile: ");
    put_dec(writes);
    puts(" garbage register writes, bad statuses, bogus kicks\n");
}

/* virtio-pci: configuration space garbage (all but BAR0, which would move
 * the function over RAM), then every BAR0 register at every width. */
static void pci_garbage(void) {
    u32 writes = 0;
    for (u32 reg = 0; reg < 0x100; reg++) {
        if (reg >= 0x10 && reg < 0x18) continue;
        u64 r = next_random();
        virtio_pci_cfg_write(reg, 1, (u8)r);
        (void)virtio_pci_cfg_read(reg, 1);
        if (reg % 2 == 0 && (reg < 0x0e || reg >= 0x18)) virtio_pci_cfg_write(reg, 2, (u16)(r >> 8));
        if (reg % 4 == 0 && (reg < 0x0c || reg >= 0x18)) virtio_pci_cfg_write(reg, 4, (u32)(r >> 24));
        writes += 3;
    }
    virtio_pci_cfg_write(0x04, 2, 0x6); /* memory decoding back on for the BAR garbage */
    u64 base = virtio_pci_bar0;
    for (u32 off = 0; off < 0x8000; off += 4) {
        if (off == VIRTIO_PCI_COMMON_STATUS) continue; /* below, on purpose */
        u64 r = next_random();
        mmio_write32(base + off, (u32)r);
        mmio_write16(base + off + 2, (u16)(r >> 32));
        mmio_write8(base + off + 1, (u8)(r >> 48));
        if (off % 8 == 0) mmio_write64(base + off, r * 0x9e3779b97f4a7c15);
        (void)mmio_read32(base + off);
        (void)mmio_read16(base + off + 1);
        writes += 4;
    }
    u8 statuses[] = {4, 0xff, 8, 0x80, 0x40, 0x0f, 0};
    for (unsigned i = 0; i < sizeof statuses; i++) mmio_write8(base + VIRTIO_PCI_COMMON_STATUS, statuses[i]);
    puts("hostile: ");
    put_dec(writes);
    puts(" garbage configuration and BAR0 writes, bad statuses, bogus kicks\n");
}

static u8 init_device(int packed) {
    t->set_status(0);
    t->set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    t->set_features((1UL << VIRTIO_F_VERSION_1) | (packed ? 1UL << VIRTIO_F_RING_PACKED : 0));
    u8 s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    t->set_status(s);
    if (!(t->get_status() & VIRTIO_CONFIG_S_FEATURES_OK)) fail("FEATURES_OK refused");
    return s;
}

static void kick(struct vq *q) { mmio_write32(q->notify_addr, q->notify_data); }

/* One bad chain on a fresh device; reports what the device did. */
static void bad_chain(const char *what, int packed, void (*poison)(struct vq *)) {
    static struct vq hiprio, req;
    u8 s = init_device(packed);
    vq_free_all();
    vq_init(&hiprio, 0, packed);
    vq_init(&req, 1, packed);
    t->setup_queue(&hiprio);
    t->setup_queue(&req);
    t->set_status(s | VIRTIO_CONFIG_S_DRIVER_OK);
    poison(&req);
    kick(&req);
    sleep_ms(50);
    u8 status = t->get_status();
    puts("hostile: ");
    puts(what);
    puts(": device status ");
    put_hex(status);
    puts(status & VIRTIO_CONFIG_S_NEEDS_RESET ? " (NEEDS_RESET)\n" : "\n");
}

static void looping(struct vq *q) {
    q->desc[0] = (struct vring_desc){.addr = 0x300000, .len = 64, .flags = VRING_DESC_F_NEXT, .next = 1};
    q->desc[1] = (struct vring_desc){.addr = 0x300100, .len = 64, .flags = VRING_DESC_F_NEXT, .next = 0};
    q->avail->ring[0] = 0;
    barrier();
    q->avail->idx = 1;
}

static void out_of_range(struct vq *q) {
    q->desc[0] = (struct vring_desc){.addr = 0xfffffffffff00000UL, .len = 4096, .flags = 0, .next = 0};
    q->avail->ring[0] = 0;
    barrier();
    q->avail->idx = 1;
}

static void next_past_ring(struct vq *q) {
    q->desc[0] = (struct vring_desc){.addr = 0x300000, .len = 64, .flags = VRING_DESC_F_NEXT, .next = 200};
    q->avail->ring[0] = 7000; /* head past the ring, too */
    barrier();
    q->avail->idx = 3;
}

static void packed_out_of_range(struct vq *q) {
    q->pdesc[0] = (struct vring_packed_desc){.addr = 0x7fffffff0000UL, .len = 0xffffffff, .id = 99,
                                             .flags = (u16)(1 << VRING_PACKED_DESC_F_AVAIL | VRING_DESC_F_WRITE)};
}

void guest_main(struct hvm_start_info *si) {
    intr_init();
    const char *which = cmdline_arg(si, "transport");
    int pci = which && starts_with(which, "pci");
    int msix = 1;
    if (pci) {
        t = virtio_pci_find(VIRTIO_ID_FS, 0, &msix);
        if (!t) fail("no virtio-fs PCI function");
        pci_garbage();
        /* Find it again: command register, capabilities and MSI-X table as a
         * driver sets them up (the garbage left them anything). */
        msix = 1;
        t = virtio_pci_find(VIRTIO_ID_FS, 0, &msix);
        if (!t) fail("the virtio-fs PCI function is gone after the garbage");
        irq_ack = msix ? 0 : ack_interrupt;
    } else {
        t = virtio_mmio_find(si, VIRTIO_ID_FS, 0);
        if (!t) fail("no virtio-fs device");
        irq_ack = ack_interrupt;
    }
    __asm__ volatile("sti");

    if (!pci) {
        u64 base = virtio_mmio_base;
        garbage(base);
        garbage(base + 0x100); /* the configuration space, read-only */
    }
    bad_chain("looping chain", 0, looping);
    bad_chain("descriptor past guest memory", 0, out_of_range);
    bad_chain("next and head past the ring", 0, next_past_ring);
    bad_chain("packed descriptor past guest memory", 1, packed_out_of_range);

    /* A proper driver after a reset is served. */
    static struct vq hiprio, req;
    u8 s = init_device(0);
    vq_free_all();
    vq_init(&hiprio, 0, 0);
    vq_init(&req, 1, 0);
    t->setup_queue(&hiprio);
    t->setup_queue(&req);
    t->set_status(s | VIRTIO_CONFIG_S_DRIVER_OK);
    u32 len;
    struct fuse_init_in init = {.major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION};
    if (fuse_call(&req, FUSE_INIT, 0, &init, sizeof init, 0, reply, sizeof reply, &len) != 0) fail("INIT after the abuse");
    if (fuse_call(&req, FUSE_LOOKUP, FUSE_ROOT_ID, 0, 0, "hello.txt", reply, sizeof reply, &len) != 0) fail("LOOKUP after the abuse");
    puts("hostile: after a reset the device serves FUSE INIT and LOOKUP\n");
    t->set_status(0);
    debug_exit(0x10);
}
