/* A virtio-fs driver guest: finds the device (virtio-mmio or virtio-pci,
 * `transport=` on the command line; `msix=off` for INTx over pci, `intx=level`
 * for a level-triggered pin, `movebar=1`
 * to move BAR0 first), reads the tag, negotiates (split or
 * packed ring: `ring=`), sets up the hiprio and one request queue, and
 * runs FUSE INIT, LOOKUP, GETATTR, OPEN, READ, RELEASE, CREATE, WRITE,
 * UNLINK and FORGET against the share, waiting for each completion in
 * hlt until its interrupt (IOAPIC pin or MSI-X vector on 0x30). With
 * `bench=N` it then times N small READs; `msixmask=1` checks MSI-X masking;
 * `dax=rw|ro|hosttrunc` runs the DAX window steps of dax.c instead. Exits 0x10 (status 33) when
 * every step checked out. */
#include "fuse.h"
#include "intr.h"

#define VIRTIO_ID_FS 26
static const char expected[] = "hello from the host over virtio-fs\n";

const struct transport *virtio_mmio_find(const struct hvm_start_info *si, u32 device_id, int skip);
const struct transport *virtio_pci_find(u32 device_id, int index, int *msix);
extern int virtio_pci_move_bar;
extern int virtio_pci_level_intx;
void virtio_pci_mask_vector(int v, int masked);
int virtio_pci_vector_pending(int v);

static u8 reply[8192] __attribute__((aligned(64)));
static const struct transport *t;

static void ack_interrupt(void) { t->ack(); }

static void check(int ok, const char *what) {
    if (!ok) fail(what);
    puts("ok: ");
    puts(what);
    puts("\n");
}

static u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (u64)hi << 32 | lo;
}

static u8 rtc_seconds(void) {
    outb(0x70, 0);
    return inb(0x71);
}

/* TSC ticks per second, against one tick of the CMOS clock's seconds
 * (every PC-like board has one; an ACPI PM timer is not on all). */
static u64 tsc_hz(void) {
    u8 s = rtc_seconds();
    while (rtc_seconds() == s) {}
    s = rtc_seconds();
    u64 t0 = rdtsc();
    while (rtc_seconds() == s) {}
    return rdtsc() - t0;
}

void dax_workload(struct vq *q, u32 init_flags, u16 map_alignment, int readonly, int hosttrunc);
/* dax=rw|ro: the DAX window steps (dax.c) after INIT. */
static const char *dax;

static void workload(struct vq *hiprio, struct vq *req, const char *ring, const char *transport, u64 bench) {
    u32 len;
    struct fuse_init_in init = {.major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION, .max_readahead = 65536,
                                .flags = dax ? FUSE_MAP_ALIGNMENT : 0};
    check(fuse_call(req, FUSE_INIT, 0, &init, sizeof init, 0, reply, sizeof reply, &len) == 0, "FUSE_INIT");
    struct fuse_init_out *io = (void *)(reply + sizeof(struct fuse_out_header));
    check(io->major == FUSE_KERNEL_VERSION, "FUSE_INIT major version 7");
    if (dax) {
        dax_workload(req, io->flags, io->map_alignment, starts_with(dax, "ro"), starts_with(dax, "hosttrunc"));
        return;
    }

    check(fuse_call(req, FUSE_LOOKUP, FUSE_ROOT_ID, 0, 0, "hello.txt", reply, sizeof reply, &len) == 0, "FUSE_LOOKUP hello.txt");
    struct fuse_entry_out entry = *(struct fuse_entry_out *)(reply + sizeof(struct fuse_out_header));
    check(entry.attr.size == sizeof expected - 1, "LOOKUP size matches the host file");

    struct fuse_getattr_in ga = {0};
    check(fuse_call(req, FUSE_GETATTR, entry.nodeid, &ga, sizeof ga, 0, reply, sizeof reply, &len) == 0, "FUSE_GETATTR");
    struct fuse_attr_out *ao = (void *)(reply + sizeof(struct fuse_out_header));
    check((ao->attr.mode & 0170000) == 0100000 && ao->attr.size == entry.attr.size, "GETATTR: a regular file of that size");

    struct fuse_open_in oi = {.flags = 0 /* O_RDONLY */};
    check(fuse_call(req, FUSE_OPEN, entry.nodeid, &oi, sizeof oi, 0, reply, sizeof reply, &len) == 0, "FUSE_OPEN");
    u64 fh = ((struct fuse_open_out *)(reply + sizeof(struct fuse_out_header)))->fh;

    struct fuse_read_in ri = {.fh = fh, .offset = 0, .size = 4096};
    check(fuse_call(req, FUSE_READ, entry.nodeid, &ri, sizeof ri, 0, reply, sizeof reply, &len) == 0, "FUSE_READ");
    u32 got = len - (u32)sizeof(struct fuse_out_header);
    reply[sizeof(struct fuse_out_header) + got] = 0;
    puts("read hello.txt: ");
    puts((const char *)reply + sizeof(struct fuse_out_header));
    check(got == sizeof expected - 1 && memcmp(reply + sizeof(struct fuse_out_header), expected, got) == 0, "READ returns the host file's bytes");

    if (bench) {
        u64 hz = tsc_hz();
        struct fuse_read_in small = {.fh = fh, .offset = 0, .size = 64};
        u64 kicks0 = vq_kicks, t0 = rdtsc();
        for (u64 i = 0; i < bench; i++)
            if (fuse_call(req, FUSE_READ, entry.nodeid, &small, sizeof small, 0, reply, sizeof reply, &len) != 0) fail("bench READ");
        u64 ticks = rdtsc() - t0;
        u64 us = ticks * 1000000 / hz;
        puts("bench: ");
        put_dec(bench);
        puts(" small READs (");
        put_dec(vq_kicks - kicks0);
        puts(" kicks) in ");
        put_dec(us);
        puts(" us: ");
        put_dec(us ? bench * 1000000 / us : 0);
        puts(" round trips/s\n");
    }

    struct fuse_release_in rel = {.fh = fh};
    check(fuse_call(req, FUSE_RELEASE, entry.nodeid, &rel, sizeof rel, 0, reply, sizeof reply, &len) == 0, "FUSE_RELEASE");

    struct fuse_create_in ci = {.flags = 01 /* O_WRONLY */ | 0100 /* O_CREAT */ | 01000 /* O_TRUNC */, .mode = 0100644, .umask = 022};
    check(fuse_call(req, FUSE_CREATE, FUSE_ROOT_ID, &ci, sizeof ci, "from-guest.txt", reply, sizeof reply, &len) == 0, "FUSE_CREATE from-guest.txt");
    struct fuse_entry_out created = *(struct fuse_entry_out *)(reply + sizeof(struct fuse_out_header));
    u64 wfh = ((struct fuse_open_out *)(reply + sizeof(struct fuse_out_header) + sizeof(struct fuse_entry_out)))->fh;

    static u8 wbuf[sizeof(struct fuse_write_in) + 256];
    char text[128] = "written by the guest over ";
    unsigned long n = strlen(text);
    memcpy(text + n, transport, strlen(transport)); n += strlen(transport);
    memcpy(text + n, " with the ", 10); n += 10;
    memcpy(text + n, ring, strlen(ring)); n += strlen(ring);
    memcpy(text + n, " ring\n", 7); n += 6;
    struct fuse_write_in *wi = (void *)wbuf;
    memset(wi, 0, sizeof *wi);
    wi->fh = wfh;
    wi->size = (u32)n;
    memcpy(wbuf + sizeof *wi, text, n);
    check(fuse_call(req, FUSE_WRITE, created.nodeid, wbuf, (u32)(sizeof *wi + n), 0, reply, sizeof reply, &len) == 0, "FUSE_WRITE");
    check(((struct fuse_write_out *)(reply + sizeof(struct fuse_out_header)))->size == n, "WRITE wrote every byte");
    rel.fh = wfh;
    check(fuse_call(req, FUSE_RELEASE, created.nodeid, &rel, sizeof rel, 0, reply, sizeof reply, &len) == 0, "FUSE_RELEASE of the new file");

    check(fuse_call(req, FUSE_CREATE, FUSE_ROOT_ID, &ci, sizeof ci, "doomed.txt", reply, sizeof reply, &len) == 0, "FUSE_CREATE doomed.txt");
    struct fuse_entry_out doomed = *(struct fuse_entry_out *)(reply + sizeof(struct fuse_out_header));
    rel.fh = ((struct fuse_open_out *)(reply + sizeof(struct fuse_out_header) + sizeof(struct fuse_entry_out)))->fh;
    check(fuse_call(req, FUSE_RELEASE, doomed.nodeid, &rel, sizeof rel, 0, reply, sizeof reply, &len) == 0, "FUSE_RELEASE doomed.txt");
    check(fuse_call(req, FUSE_UNLINK, FUSE_ROOT_ID, 0, 0, "doomed.txt", reply, sizeof reply, &len) == 0, "FUSE_UNLINK doomed.txt");
    check(fuse_call(req, FUSE_LOOKUP, FUSE_ROOT_ID, 0, 0, "doomed.txt", reply, sizeof reply, &len) == -2, "LOOKUP after UNLINK: ENOENT");

    fuse_forget(hiprio, entry.nodeid, 1);
    fuse_forget(hiprio, created.nodeid, 1);
    fuse_forget(hiprio, doomed.nodeid, 1);
    check(1, "FUSE_FORGET on the hiprio queue (3 buffers returned)");
}

/* msixmask=1 (virtio-pci with MSI-X, split ring): a request completes
 * while the queues' vector (1) is masked: no interrupt, its pending bit
 * set; unmasking delivers it and clears the bit (PCI 3.0, 6.8.3.4). */
static void msix_mask_check(struct vq *req) {
    static u8 request[sizeof(struct fuse_in_header) + sizeof(struct fuse_getattr_in)] __attribute__((aligned(64)));
    struct fuse_in_header *h = (void *)request;
    memset(request, 0, sizeof request);
    h->len = sizeof request;
    h->opcode = FUSE_GETATTR;
    h->unique = 0x4d53;
    h->nodeid = FUSE_ROOT_ID;
    struct buf bufs[2] = {{request, sizeof request, 0}, {reply, sizeof reply, 1}};
    sleep_ms(10); /* any late interrupt of the workload lands first */
    virtio_pci_mask_vector(1, 1);
    u32 before = irq_count;
    vq_submit(req, bufs, 2);
    for (int i = 0; i < 2000 && *(volatile u16 *)&req->used->idx == req->last_used; i++) sleep_ms(1);
    check(*(volatile u16 *)&req->used->idx != req->last_used, "msixmask: the request completed with its vector masked");
    sleep_ms(20);
    check(irq_count == before, "msixmask: no interrupt while the vector is masked");
    check(virtio_pci_vector_pending(1), "msixmask: the PBA shows vector 1 pending");
    virtio_pci_mask_vector(1, 0);
    for (int i = 0; i < 1000 && irq_count == before; i++) sleep_ms(1);
    check(irq_count == before + 1, "msixmask: unmasking delivered the pending interrupt");
    check(!virtio_pci_vector_pending(1), "msixmask: the pending bit cleared");
    check(vq_wait(req) >= sizeof(struct fuse_out_header) && ((struct fuse_out_header *)reply)->error == 0, "msixmask: GETATTR of the root answered");
    fuse_requests++;
}

void guest_main(struct hvm_start_info *si) {
    intr_init();
    const char *ring = cmdline_arg(si, "ring");
    int packed = ring && starts_with(ring, "packed");
    const char *which = cmdline_arg(si, "transport");
    int pci = which && starts_with(which, "pci");
    dax = cmdline_arg(si, "dax");
    const char *b = cmdline_arg(si, "bench");
    u64 bench = b ? parse_dec(b) : 0;

    virtio_pci_move_bar = cmdline_arg(si, "movebar") != 0; /* movebar=1: BAR0 reassigned first */
    const char *m = cmdline_arg(si, "msix");
    int msix = !(m && starts_with(m, "off")); /* msix=off: INTx even when the function has MSI-X */
    const char *lv = cmdline_arg(si, "intx");
    virtio_pci_level_intx = lv && starts_with(lv, "level"); /* intx=level: as Linux programs a _PRT pin */
    /* The device whose tag is `tag=` (default: the first). */
    const char *want = cmdline_arg(si, "tag");
    int allowed = msix;
    for (int i = 0;; i++) {
        msix = allowed;
        t = pci ? virtio_pci_find(VIRTIO_ID_FS, i, &msix) : virtio_mmio_find(si, VIRTIO_ID_FS, i);
        if (!t) fail(pci ? "no virtio-fs PCI function with the wanted tag on bus 0" : "no virtio-fs device with the wanted tag");
        if (!pci) msix = 0;
        char tag[37] = {0};
        t->read_config(0, tag, 36);
        unsigned long n = 0;
        while (want && want[n] && want[n] != ' ') n++;
        if (!want || (strlen(tag) == n && memcmp(tag, want, n) == 0)) break;
    }
    irq_ack = msix ? 0 : ack_interrupt;

    /* 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK. */
    t->set_status(0);
    t->set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    t->set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    u64 offered = t->get_features();
    if (!(offered & (1UL << VIRTIO_F_VERSION_1))) fail("device does not offer VERSION_1");
    if (packed && !(offered & (1UL << VIRTIO_F_RING_PACKED))) fail("ring=packed but the device does not offer RING_PACKED");
    t->set_features((1UL << VIRTIO_F_VERSION_1) | (packed ? 1UL << VIRTIO_F_RING_PACKED : 0));
    u8 s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    t->set_status(s);
    check(t->get_status() & VIRTIO_CONFIG_S_FEATURES_OK, "FEATURES_OK accepted");

    char tag[37] = {0};
    t->read_config(0, tag, 36);
    u32 nreq;
    t->read_config(36, &nreq, 4);
    puts("virtio-fs tag: ");
    puts(tag);
    puts(", request queues: ");
    put_dec(nreq);
    puts(", transport: ");
    puts(t->name);
    puts(", ring: ");
    puts(packed ? "packed" : "split");
    puts(msix ? ", MSI-X\n" : ", GSI\n");

    static struct vq hiprio, req;
    vq_init(&hiprio, 0, packed);
    vq_init(&req, 1, packed);
    if (t->queue_max(0) < VQ_SIZE || t->queue_max(1) < VQ_SIZE) fail("queues smaller than 16");
    t->setup_queue(&hiprio);
    t->setup_queue(&req);
    t->set_status(s | VIRTIO_CONFIG_S_DRIVER_OK);
    if (t->get_status() & VIRTIO_CONFIG_S_NEEDS_RESET) fail("device needs reset after DRIVER_OK");
    __asm__ volatile("sti");

    workload(&hiprio, &req, packed ? "packed" : "split", t->name, bench);
    if (cmdline_arg(si, "msixmask")) {
        if (!msix || packed) fail("msixmask needs virtio-pci with MSI-X and the split ring");
        msix_mask_check(&req);
    }
    puts("virtio-fs guest: ");
    put_dec(fuse_requests);
    puts(" FUSE requests, ");
    put_dec(vq_kicks);
    puts(" kicks, ");
    put_dec(irq_count);
    puts(" interrupts\n");
    t->set_status(0);
    debug_exit(0x10);
}
