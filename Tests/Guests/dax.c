/* The virtio-fs DAX window (`dax=rw` or `dax=ro` on the command line of
 * virtiofs.elf, virtio-pci only): finds shared-memory region 0 through
 * its capability, maps host files into it with FUSE_SETUPMAPPING, reads
 * and writes their bytes through the window with plain loads and stores,
 * unmaps them with FUSE_REMOVEMAPPING, shrinks a mapped file, and sends
 * the mappings a hostile driver would. Every outcome is printed as
 * "dax ...: errno N" or "dax ...: <bytes>" for Tests/Integration/vmm-test.sh
 * to check against the host's files; the guest itself fails only where
 * the protocol leaves no choice (a missing window, a failed LOOKUP).
 *
 * The share holds: dax.txt (2 pages, page 1 starting with a line the host
 * chose), daxw.txt (1 page, written here), daxsmall.txt (5,000 bytes,
 * starting with a line the host chose, ending "end\n"), dir/ (a
 * directory). */
#include "fuse.h"

#define PAGE 4096u

extern u64 virtio_shm_base, virtio_shm_len;

static u8 reply[4096] __attribute__((aligned(64)));

static void say(const char *what, int err) {
    puts("dax ");
    puts(what);
    puts(": errno ");
    put_dec((u64)(err < 0 ? -err : err));
    puts("\n");
}

/* Up to the first newline (at most 80 bytes) of the window at `off`. */
static void say_line(const char *what, u64 off) {
    volatile const u8 *w = (volatile const u8 *)(virtio_shm_base + off);
    char line[81];
    int n = 0;
    while (n < 80 && w[n] != '\n' && w[n] != 0) { line[n] = (char)w[n]; n++; }
    line[n] = 0;
    puts("dax ");
    puts(what);
    puts(": ");
    puts(line);
    puts("\n");
}

static u8 window_byte(u64 off) { return *(volatile const u8 *)(virtio_shm_base + off); }

static u64 lookup(struct vq *q, const char *name) {
    u32 len;
    if (fuse_call(q, FUSE_LOOKUP, FUSE_ROOT_ID, 0, 0, name, reply, sizeof reply, &len) != 0) fail("dax: LOOKUP failed");
    return ((struct fuse_entry_out *)(reply + sizeof(struct fuse_out_header)))->nodeid;
}

static u64 open_node(struct vq *q, u32 opcode, u64 node, u32 flags) {
    u32 len;
    struct fuse_open_in oi = {.flags = flags};
    if (fuse_call(q, opcode, node, &oi, sizeof oi, 0, reply, sizeof reply, &len) != 0) fail("dax: OPEN failed");
    return ((struct fuse_open_out *)(reply + sizeof(struct fuse_out_header)))->fh;
}

static int setup(struct vq *q, u64 node, u64 fh, u64 foffset, u64 len, u64 flags, u64 moffset) {
    struct fuse_setupmapping_in in = {.fh = fh, .foffset = foffset, .len = len, .flags = flags, .moffset = moffset};
    u32 got;
    return fuse_call(q, FUSE_SETUPMAPPING, node, &in, sizeof in, 0, reply, sizeof reply, &got);
}

/* REMOVEMAPPING of one range, with `count` as sent (1 for an honest one). */
static int removemapping(struct vq *q, u64 node, u32 count, u64 moffset, u64 len) {
    struct {
        struct fuse_removemapping_in in;
        struct fuse_removemapping_one one;
    } __attribute__((packed)) r = {{count}, {moffset, len}};
    u32 got;
    return fuse_call(q, FUSE_REMOVEMAPPING, node, &r, sizeof r, 0, reply, sizeof reply, &got);
}

void dax_workload(struct vq *q, u32 init_flags, u16 map_alignment, int readonly, int hosttrunc) {
    const u64 R = FUSE_SETUPMAPPING_FLAG_READ, W = FUSE_SETUPMAPPING_FLAG_WRITE;
    puts("dax init: map_alignment ");
    put_dec(init_flags & FUSE_MAP_ALIGNMENT ? map_alignment : 0);
    puts("\n");
    if (!virtio_shm_len) fail("dax: no shared-memory capability (id 0)");
    puts("dax window: ");
    put_hex(virtio_shm_len);
    puts(" bytes at ");
    put_hex(virtio_shm_base);
    puts("\n");

    u64 data = lookup(q, "dax.txt");
    u64 ro = open_node(q, FUSE_OPEN, data, 0 /* O_RDONLY */);
    /* Page 1 of dax.txt at window offset 0, read-only. */
    say("setup read", setup(q, data, ro, PAGE, PAGE, R, 0));
    say_line("read through the window", 0);
    say("removemapping with a count past the request", removemapping(q, data, 1000, 0, PAGE));
    say_line("still mapped after the refused removal", 0);

    if (hosttrunc) {
        /* dax=hosttrunc: both pages of dax.txt mapped, then a pause in
         * which the host shrinks the file behind vfsvm's back, then a load
         * from the vanished page. */
        say("setup both pages", setup(q, data, ro, 0, 2 * PAGE, R, 0x30000));
        puts("dax waiting for the host\n");
        sleep_ms(3000);
        puts("dax reading the vanished page\n");
        puts("dax the vanished page reads ");
        put_dec(window_byte(0x30000 + PAGE));
        puts("\n");
        return;
    }
    if (readonly) {
        say("setup write on a read-only share", setup(q, data, ro, 0, PAGE, R | W, PAGE));
        return;
    }

    /* daxw.txt page 0 writable at window offset 0x10000: stores reach the file. */
    u64 wnode = lookup(q, "daxw.txt");
    u64 rw = open_node(q, FUSE_OPEN, wnode, 02 /* O_RDWR */);
    say("setup write", setup(q, wnode, rw, 0, PAGE, R | W, 0x10000));
    static const char text[] = "written through the DAX window\n";
    volatile u8 *w = (volatile u8 *)(virtio_shm_base + 0x10000);
    for (u32 i = 0; i < sizeof text - 1; i++) w[i] = (u8)text[i];
    say("removemapping", removemapping(q, wnode, 1, 0x10000, PAGE));
    puts("dax after removemapping the window reads ");
    put_dec(window_byte(0x10000));
    puts("\n");

    /* The hostile driver's mappings. */
    say("setup overlapping a mapping", setup(q, wnode, rw, 0, PAGE, R, 0));
    say_line("the overlapping mapping replaced the old one", 0);
    say("setup past the window", setup(q, data, ro, 0, 2 * PAGE, R, virtio_shm_len - PAGE));
    say("setup past EOF", setup(q, data, ro, 2 * PAGE, PAGE, R, 0x20000));
    u64 dir = lookup(q, "dir");
    u64 dfh = open_node(q, FUSE_OPENDIR, dir, 0);
    say("setup on a directory", setup(q, dir, dfh, 0, PAGE, R, 0x20000));
    say("setup write on a read-only handle", setup(q, data, ro, 0, PAGE, R | W, 0x20000));

    /* dax.txt both pages at 0x30000, then SETATTR size 4096: page 1 is
     * gone from the file, so the window must show a zero page there. */
    say("setup both pages", setup(q, data, ro, 0, 2 * PAGE, R, 0x30000));
    struct fuse_setattr_in sa = {.valid = FATTR_SIZE, .size = PAGE};
    u32 got;
    say("truncate to one page", fuse_call(q, FUSE_SETATTR, data, &sa, sizeof sa, 0, reply, sizeof reply, &got));
    puts("dax after truncate the page past the end reads ");
    put_dec(window_byte(0x30000 + PAGE));
    puts(", the first page ");
    putc((char)window_byte(0x30000));
    puts("\n");

    /* What a Linux guest sends for a file smaller than 2 MiB: no handle,
     * one whole 2 MiB range (FUSE_DAX_SZ, here the whole window) from
     * offset 0, running past EOF; then an extending write as FUSE_WRITE
     * (fuse_dax_write_iter), whose bytes the same range then shows. */
    u64 small = lookup(q, "daxsmall.txt");
    say("setup a 5000-byte file as one 2 MiB range", setup(q, small, ~0ull, 0, 0x200000, R, 0));
    say_line("small file through the window", 0);
    puts("dax small file bytes 4996-4998: ");
    for (u64 i = 4996; i < 4999; i++) putc((char)window_byte(i));
    puts(", past EOF (5000, 8192, 2 MiB - 1): ");
    put_dec(window_byte(5000));
    puts(" ");
    put_dec(window_byte(8192));
    puts(" ");
    put_dec(window_byte(0x1fffff));
    puts("\n");
    u64 sfh = open_node(q, FUSE_OPEN, small, 02 /* O_RDWR */);
    static u8 wbuf[sizeof(struct fuse_write_in) + 64];
    static const char grown[] = "grown through FUSE_WRITE\n";
    struct fuse_write_in *wi = (void *)wbuf;
    memset(wi, 0, sizeof *wi);
    wi->fh = sfh;
    wi->offset = 0x100000;
    wi->size = sizeof grown - 1;
    memcpy(wbuf + sizeof *wi, grown, sizeof grown - 1);
    say("extending FUSE_WRITE at 1 MiB", fuse_call(q, FUSE_WRITE, small, wbuf, (u32)(sizeof *wi + sizeof grown - 1), 0, reply, sizeof reply, &got));
    say_line("the existing range after the extending write", 0x100000);
}
