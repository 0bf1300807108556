/* Shared helpers of vfsvm's freestanding test guests: port I/O, COM1,
 * the debug-exit port, hvm_start_info. No libc. */
#ifndef VFSVM_GUEST_H
#define VFSVM_GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline u8 mmio_read8(u64 a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(u64 a) { return *(volatile u16 *)a; }
static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_write8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void mmio_write64(u64 a, u64 v) { *(volatile u64 *)a = v; }

static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

/* Xen's struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h) */
struct hvm_start_info {
    u32 magic;          /* 0x336ec578 */
    u32 version;
    u32 flags;
    u32 nr_modules;
    u64 modlist_paddr;
    u64 cmdline_paddr;
    u64 rsdp_paddr;
    u64 memmap_paddr;
    u32 memmap_entries;
    u32 reserved;
};
#define HVM_START_MAGIC 0x336ec578

void putc(char c);
void puts(const char *s);
void put_hex(u64 v);
void put_dec(u64 v);
void debug_exit(u8 status) __attribute__((noreturn));
void fail(const char *why) __attribute__((noreturn));
int str_eq(const char *a, const char *b);
int starts_with(const char *s, const char *prefix);
u64 parse_dec(const char *s);
/* The value of `key=` in the command line, or 0. */
const char *cmdline_arg(const struct hvm_start_info *si, const char *key);
/* Waits about `ms` milliseconds on the ACPI PM timer (port 0x608). */
void sleep_ms(u32 ms);
void *memset(void *d, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
unsigned long strlen(const char *s);

#endif
