/* COM1 output, the debug-exit port, and the few string routines the test
 * guests need. */
#include "guest.h"

#define COM1 0x3f8

void putc(char c) {
    while (!(inb(COM1 + 5) & 0x20)) {} /* LSR.THRE */
    outb(COM1, (u8)c);
}

void puts(const char *s) {
    while (*s) {
        if (*s == '\n') putc('\r');
        putc(*s++);
    }
}

void put_hex(u64 v) {
    char buf[19];
    buf[0] = '0'; buf[1] = 'x';
    int n = 0;
    u64 t = v;
    do { n++; t >>= 4; } while (t);
    for (int i = 0; i < n; i++) buf[2 + n - 1 - i] = "0123456789abcdef"[(v >> (4 * i)) & 15];
    buf[2 + n] = 0;
    puts(buf);
}

void put_dec(u64 v) {
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts(buf + i);
}

void debug_exit(u8 status) {
    outb(0x501, status);
    for (;;) __asm__ volatile("hlt");
}

void fail(const char *why) {
    puts("FAIL: ");
    puts(why);
    puts("\n");
    debug_exit(0x7e);
}

int str_eq(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

int starts_with(const char *s, const char *p) {
    while (*p) if (*s++ != *p++) return 0;
    return 1;
}

u64 parse_dec(const char *s) {
    u64 v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
    return v;
}

const char *cmdline_arg(const struct hvm_start_info *si, const char *key) {
    if (!si->cmdline_paddr) return 0;
    const char *c = (const char *)si->cmdline_paddr;
    unsigned long k = strlen(key);
    while (*c) {
        while (*c == ' ') c++;
        if (starts_with(c, key) && c[k] == '=') return c + k + 1;
        while (*c && *c != ' ') c++;
    }
    return 0;
}

void sleep_ms(u32 ms) {
    for (u32 i = 0; i < ms; i++) {
        u32 p0 = inl(0x608) & 0xffffff;
        while (((inl(0x608) - p0) & 0xffffff) < 3580) {}
    }
}

void *memset(void *d, int c, unsigned long n) {
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, unsigned long n) {
    u8 *p = d;
    const u8 *q = s;
    while (n--) *p++ = *q++;
    return d;
}

int memcmp(const void *a, const void *b, unsigned long n) {
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++) if (*p != *q) return *p - *q;
    return 0;
}

unsigned long strlen(const char *s) {
    unsigned long n = 0;
    while (s[n]) n++;
    return n;
}
