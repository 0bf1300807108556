/* virtio-pci, modern (virtio 1.2, 4.1), for the test guests: finds the
 * index-th function of a device type on bus 0 by configuration mechanism #1, walks its vendor
 * capabilities (common, notify, ISR, device config), and uses MSI-X when
 * the function has it (vector 0 for configuration changes, vector 1 for
 * every queue, both to IRQ_VECTOR on APIC 0). BARs are where the VMM put
 * them; above 4 GiB they are reached through the guest's identity map. */
#include "virtio.h"
#include "intr.h"
#include <linux/virtio_pci.h>

static u32 bdf;
static u64 common, notify, isr, device;
/* Where the common configuration's BAR decodes (the hostile guest's target). */
u64 virtio_pci_bar0;
/* Set by the caller: move BAR0 1 MiB up (decoding off, new address,
 * decoding on) before using the function, as an OS reassigning it would. */
int virtio_pci_move_bar;
/* Set by the caller: INTx as a level-triggered, active-low IOAPIC pin. */
int virtio_pci_level_intx;
/* Shared-memory region 0 (VIRTIO_PCI_CAP_SHARED_MEMORY_CFG, id 0: the
 * virtio-fs DAX window): guest-physical base and length, 0 when none. */
u64 virtio_shm_base, virtio_shm_len;
/* The MSI-X table and pending bit array, once found. */
static u64 msix_table, msix_pba;

void virtio_pci_mask_vector(int v, int masked) { mmio_write32(msix_table + 16 * (u64)v + 12, masked ? 1 : 0); }
int virtio_pci_vector_pending(int v) { return (int)(mmio_read32(msix_pba + 4 * (u64)(v / 32)) >> (v % 32) & 1); }
static u32 notify_multiplier;

static u32 cfg_read(u32 reg, int size) {
    outl(0xcf8, 0x80000000u | bdf | (reg & 0xfc));
    switch (size) {
    case 1: return inb((u16)(0xcfc + (reg & 3)));
    case 2: return inw((u16)(0xcfc + (reg & 2)));
    default: return inl(0xcfc);
    }
}

static void cfg_write(u32 reg, int size, u32 v) {
    outl(0xcf8, 0x80000000u | bdf | (reg & 0xfc));
    if (size == 1) outb((u16)(0xcfc + (reg & 3)), (u8)v);
    else if (size == 2) outw((u16)(0xcfc + (reg & 2)), (u16)v);
    else outl(0xcfc, v);
}

/* Configuration space of the function virtio_pci_find found. */
u32 virtio_pci_cfg_read(u32 reg, int size) { return cfg_read(reg, size); }
void virtio_pci_cfg_write(u32 reg, int size, u32 v) { cfg_write(reg, size, v); }

static u64 bar_address(int bar) {
    u32 lo = cfg_read(0x10 + 4 * (u32)bar, 4);
    u64 a = lo & ~0xfu;
    if ((lo & 6) == 4) a |= (u64)cfg_read(0x14 + 4 * (u32)bar, 4) << 32;
    return a;
}

#define COMMON(field) (common + __builtin_offsetof(struct virtio_pci_common_cfg, field))

static u64 get_features(void) {
    mmio_write32(COMMON(device_feature_select), 1);
    u64 hi = mmio_read32(COMMON(device_feature));
    mmio_write32(COMMON(device_feature_select), 0);
    return hi << 32 | mmio_read32(COMMON(device_feature));
}

static void set_features(u64 f) {
    mmio_write32(COMMON(guest_feature_select), 1);
    mmio_write32(COMMON(guest_feature), (u32)(f >> 32));
    mmio_write32(COMMON(guest_feature_select), 0);
    mmio_write32(COMMON(guest_feature), (u32)f);
}

static u8 get_status(void) { return mmio_read8(COMMON(device_status)); }
static void set_status(u8 s) { mmio_write8(COMMON(device_status), s); }

static void read_config(u32 off, void *buf, u32 len) {
    u8 *b = buf;
    for (u32 i = 0; i < len; i++) b[i] = mmio_read8(device + off + i);
}

static u16 queue_max(u16 index) {
    mmio_write16(COMMON(queue_select), index);
    return mmio_read16(COMMON(queue_size));
}

static int use_msix;

static void setup_queue(struct vq *q) {
    mmio_write16(COMMON(queue_select), q->index);
    mmio_write16(COMMON(queue_size), q->size);
    if (use_msix) {
        mmio_write16(COMMON(queue_msix_vector), 1);
        if (mmio_read16(COMMON(queue_msix_vector)) != 1) fail("queue MSI-X vector not accepted");
    }
    u64 d = q->packed ? (u64)q->pdesc : (u64)q->desc;
    u64 drv = q->packed ? (u64)q->driver_event : (u64)q->avail;
    u64 dev = q->packed ? (u64)q->device_event : (u64)q->used;
    mmio_write64(COMMON(queue_desc_lo), d);
    mmio_write64(COMMON(queue_avail_lo), drv);
    mmio_write64(COMMON(queue_used_lo), dev);
    u16 off = mmio_read16(COMMON(queue_notify_off));
    mmio_write16(COMMON(queue_enable), 1);
    q->notify_addr = notify + (u64)off * notify_multiplier;
    q->notify_data = q->index;
    q->notify_pio = 0;
}

/* INTx: reading the ISR status acknowledges it (4.1.4.5). */
static void ack(void) { (void)mmio_read8(isr); }

static const struct transport pci_transport = {
    "virtio-pci", get_features, set_features, get_status, set_status, read_config, queue_max, setup_queue, ack,
};

const struct transport *virtio_pci_find(u32 device_id, int index, int *msix) {
    u32 slot;
    for (slot = 0; slot < 32; slot++) {
        bdf = slot << 11;
        u32 id = cfg_read(0, 4);
        if ((id & 0xffff) == 0x1af4 && (id >> 16) == 0x1040 + device_id && index-- == 0) break;
    }
    if (slot == 32) return 0;
    common = notify = isr = device = 0;
    virtio_shm_base = virtio_shm_len = 0;
    use_msix = 0;
    puts("virtio-pci: function at 00:");
    put_hex(slot);
    puts(".0\n");
    if (virtio_pci_move_bar) {
        u64 old = bar_address(0);
        cfg_write(0x04, 2, cfg_read(0x04, 2) & ~0x2u);
        cfg_write(0x10, 4, (u32)(old + 0x100000) | (cfg_read(0x10, 4) & 0xf));
        cfg_write(0x14, 4, (u32)((old + 0x100000) >> 32));
        puts("virtio-pci: BAR0 moved from ");
        put_hex(old);
        puts(" to ");
        put_hex(bar_address(0));
        puts("\n");
    }
    /* Memory space decoding and bus mastering on. */
    cfg_write(0x04, 2, cfg_read(0x04, 2) | 0x6);
    u32 msix_cap = 0;
    for (u32 cap = cfg_read(0x34, 1) & 0xfc; cap; cap = cfg_read(cap + 1, 1) & 0xfc) {
        u32 id = cfg_read(cap, 1);
        if (id == 0x11) msix_cap = cap;
        if (id != 0x09) continue; /* vendor-specific: struct virtio_pci_cap */
        u32 type = cfg_read(cap + 3, 1), bar = cfg_read(cap + 4, 1), off = cfg_read(cap + 8, 4);
        u64 a = bar_address((int)bar) + off;
        if (type == VIRTIO_PCI_CAP_COMMON_CFG && !common) { common = a; virtio_pci_bar0 = bar_address((int)bar); }
        if (type == VIRTIO_PCI_CAP_NOTIFY_CFG && !notify) { notify = a; notify_multiplier = cfg_read(cap + 16, 4); }
        if (type == VIRTIO_PCI_CAP_ISR_CFG && !isr) isr = a;
        if (type == VIRTIO_PCI_CAP_DEVICE_CFG && !device) device = a;
        if (type == VIRTIO_PCI_CAP_SHARED_MEMORY_CFG && cfg_read(cap + 5, 1) == 0 && !virtio_shm_len) {
            /* struct virtio_pci_cap64: offset_hi and length_hi follow. */
            virtio_shm_base = a + ((u64)cfg_read(cap + 16, 4) << 32);
            virtio_shm_len = cfg_read(cap + 12, 4) | (u64)cfg_read(cap + 20, 4) << 32;
        }
    }
    if (!common || !notify || !isr || !device) fail("virtio-pci capabilities incomplete");
    puts("virtio-pci: common config at ");
    put_hex(common);
    puts("\n");
    /* *msix on entry: whether the caller allows MSI-X (msix=off says not). */
    int allowed = *msix;
    *msix = 0;
    if (msix_cap && allowed) {
        /* MSI-X table: BAR and offset in the capability (PCI 3.0, 6.8.2). */
        u32 table = cfg_read(msix_cap + 4, 4);
        u64 entries = bar_address((int)(table & 7)) + (table & ~7u);
        u32 pba = cfg_read(msix_cap + 8, 4);
        msix_table = entries;
        msix_pba = bar_address((int)(pba & 7)) + (pba & ~7u);
        for (int v = 0; v < 2; v++) {
            mmio_write32(entries + 16 * (u64)v, 0xfee00000);   /* address: APIC 0 */
            mmio_write32(entries + 16 * (u64)v + 4, 0);
            mmio_write32(entries + 16 * (u64)v + 8, IRQ_VECTOR); /* data: fixed, edge */
            mmio_write32(entries + 16 * (u64)v + 12, 0);         /* unmasked */
        }
        cfg_write(msix_cap + 2, 2, cfg_read(msix_cap + 2, 2) | 0x8000); /* MSI-X enable */
        mmio_write16(COMMON(msix_config), 0);
        if (mmio_read16(COMMON(msix_config)) != 0) fail("config MSI-X vector not accepted");
        use_msix = 1;
        *msix = 1;
    } else {
        /* INTx: the pin's GSI is in config space (interrupt line, set by the VMM). */
        if (virtio_pci_level_intx) ioapic_route_level(IOAPIC_BASE, cfg_read(0x3c, 1), IRQ_VECTOR);
        else ioapic_route(IOAPIC_BASE, cfg_read(0x3c, 1), IRQ_VECTOR);
    }
    return &pci_transport;
}
