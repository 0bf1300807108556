/* A virtio-blk driver guest: finds the device over virtio-mmio (the DSDT's
 * LNRO0005 entries) or virtio-pci (`transport=pci`; `msix=off` for INTx), negotiates (split or packed ring: `ring=`), reads the
 * capacity, sector 0 (which the host test filled with a known line), writes
 * two sectors of a pattern at `sector=` (default 8), FLUSHes, reads them
 * back, asks GET_ID, checks that a read past the capacity is an IOERR, and
 * exits 0x10 (status 33) when every step checked out. */
#include "virtio.h"
#include "intr.h"
#include <linux/virtio_blk.h>

#define VIRTIO_ID_BLOCK 2
static const char sector0[] = "vfsvm-blk sector 0\n";

const struct transport *virtio_mmio_find(const struct hvm_start_info *si, u32 device_id, int skip);
const struct transport *virtio_pci_find(u32 device_id, int index, int *msix);

static const struct transport *t;
static struct vq q;
static struct virtio_blk_outhdr hdr;
static u8 status;
static u8 data[1024] __attribute__((aligned(512)));

static void ack_interrupt(void) { t->ack(); }

static void check(int ok, const char *what) {
    if (!ok) fail(what);
    puts("ok: ");
    puts(what);
    puts("\n");
}

/* One request: the header, `len` bytes of data (device-writable when
 * `in`), the status byte. Returns the status. */
static u8 request(u32 type, u64 sector, void *buf, u32 len, int in) {
    hdr.type = type;
    hdr.ioprio = 0;
    hdr.sector = sector;
    status = 0xff;
    struct buf bufs[3] = {{&hdr, sizeof hdr, 0}};
    int n = 1;
    if (len) bufs[n++] = (struct buf){buf, len, in};
    bufs[n++] = (struct buf){&status, 1, 1};
    vq_submit(&q, bufs, n);
    u32 used = vq_wait(&q);
    if (used < 1) fail("used length 0: the device refused the chain");
    return status;
}

void guest_main(struct hvm_start_info *si) {
    intr_init();
    const char *ring = cmdline_arg(si, "ring");
    int packed = ring && starts_with(ring, "packed");
    const char *s = cmdline_arg(si, "sector");
    u64 sector = s ? parse_dec(s) : 8;

    const char *which = cmdline_arg(si, "transport");
    const char *m = cmdline_arg(si, "msix");
    int msix = !(m && starts_with(m, "off")); /* msix=off: INTx even when the function has MSI-X */
    if (which && starts_with(which, "pci")) t = virtio_pci_find(VIRTIO_ID_BLOCK, 0, &msix);
    else { msix = 0; t = virtio_mmio_find(si, VIRTIO_ID_BLOCK, 0); }
    if (!t) fail("no virtio-blk device");
    irq_ack = msix ? 0 : ack_interrupt;

    t->set_status(0);
    t->set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    t->set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    u64 offered = t->get_features();
    if (!(offered & (1UL << VIRTIO_F_VERSION_1))) fail("device does not offer VERSION_1");
    if (packed && !(offered & (1UL << VIRTIO_F_RING_PACKED))) fail("ring=packed but the device does not offer RING_PACKED");
    check(offered & (1UL << VIRTIO_BLK_F_FLUSH), "the device offers FLUSH");
    check(!(offered & (1UL << VIRTIO_BLK_F_RO)), "the disk is writable (no VIRTIO_BLK_F_RO)");
    t->set_features((1UL << VIRTIO_F_VERSION_1) | (1UL << VIRTIO_BLK_F_FLUSH) | (1UL << VIRTIO_BLK_F_BLK_SIZE) |
                    (packed ? 1UL << VIRTIO_F_RING_PACKED : 0));
    u8 st = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    t->set_status(st);
    check(t->get_status() & VIRTIO_CONFIG_S_FEATURES_OK, "FEATURES_OK accepted");

    u64 capacity;
    u32 blk_size;
    t->read_config(0, &capacity, 8);
    t->read_config(20, &blk_size, 4);
    puts("virtio-blk: ");
    put_dec(capacity);
    puts(" sectors, block size ");
    put_dec(blk_size);
    puts(", transport: ");
    puts(t->name);
    puts(", ring: ");
    puts(packed ? "packed" : "split");
    puts(msix ? ", MSI-X\n" : ", GSI\n");
    check(blk_size == 512, "block size 512");
    check(sector + 2 <= capacity, "the pattern's sectors lie inside the disk");

    vq_init(&q, 0, packed);
    if (t->queue_max(0) < VQ_SIZE) fail("queue smaller than 16");
    t->setup_queue(&q);
    t->set_status(st | VIRTIO_CONFIG_S_DRIVER_OK);
    if (t->get_status() & VIRTIO_CONFIG_S_NEEDS_RESET) fail("device needs reset after DRIVER_OK");
    __asm__ volatile("sti");

    check(request(VIRTIO_BLK_T_IN, 0, data, 512, 1) == VIRTIO_BLK_S_OK, "read sector 0");
    check(memcmp(data, sector0, sizeof sector0 - 1) == 0, "sector 0 holds the host's line");

    for (u32 i = 0; i < sizeof data; i++) data[i] = (u8)(i * 7 + 0x5a + i / 512);
    check(request(VIRTIO_BLK_T_OUT, sector, data, sizeof data, 0) == VIRTIO_BLK_S_OK, "write 2 sectors");
    check(request(VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0) == VIRTIO_BLK_S_OK, "flush");
    memset(data, 0, sizeof data);
    check(request(VIRTIO_BLK_T_IN, sector, data, sizeof data, 1) == VIRTIO_BLK_S_OK, "read the 2 sectors back");
    int same = 1;
    for (u32 i = 0; i < sizeof data; i++) same &= data[i] == (u8)(i * 7 + 0x5a + i / 512);
    check(same, "the read-back bytes are the written pattern");

    memset(data, 0, 21);
    check(request(VIRTIO_BLK_T_GET_ID, 0, data, VIRTIO_BLK_ID_BYTES, 1) == VIRTIO_BLK_S_OK, "GET_ID");
    puts("serial: ");
    puts((const char *)data);
    puts("\n");
    check(request(VIRTIO_BLK_T_IN, capacity, data, 512, 1) == VIRTIO_BLK_S_IOERR, "a read past the capacity is IOERR");
    check(request(0x77, 0, 0, 0, 0) == VIRTIO_BLK_S_UNSUPP, "an unknown request type is UNSUPP");

    puts("virtio-blk guest: ");
    put_dec(vq_kicks);
    puts(" kicks, ");
    put_dec(irq_count);
    puts(" interrupts\n");
    t->set_status(0);
    debug_exit(0x10);
}
