/* One guest, many endings, chosen by `do=` on the command line:
 *   reset     0xFE to the i8042 command port (the VM ends as a reboot)
 *   triple    a triple fault (empty IDT, then an exception)
 *   poweroff  ACPI S5: SLP_TYP 5 | SLP_EN to PM1a_CNT (0x604)
 *   xsave     an instruction this host's software KVM cannot run
 *   spin      loop forever (the test stops it with a signal)
 *   flood     print a line to COM1 forever (the test closes its reader)
 *   echo      read COM1 (polling LSR.DR) and echo each byte upper-cased
 *             until a newline; exit with the number of bytes read */
#include "guest.h"

static void cmd_echo(void) {
    u8 n = 0;
    for (;;) {
        while (!(inb(0x3f8 + 5) & 1)) {}
        char c = (char)inb(0x3f8);
        n++;
        if (c == '\n') debug_exit(n);
        putc(c >= 'a' && c <= 'z' ? (char)(c - 32) : c);
    }
}

void guest_main(struct hvm_start_info *si) {
    const char *what = cmdline_arg(si, "do");
    if (!what) fail("no do= on the command line");
    puts("events guest: ");
    puts(what);
    puts("\n");
    if (starts_with(what, "reset")) {
        outb(0x64, 0xfe);
    } else if (starts_with(what, "triple")) {
        struct { u16 limit; u64 base; } __attribute__((packed)) idt = {0, 0};
        __asm__ volatile("lidt %0; ud2" : : "m"(idt));
    } else if (starts_with(what, "poweroff")) {
        outw(0x604, (u16)(5 << 10 | 1 << 13));
    } else if (starts_with(what, "xsave")) {
        /* Enable XSAVE (CR4.OSXSAVE) and save x87 state to a buffer. */
        static u8 area[4096] __attribute__((aligned(64)));
        u64 cr4;
        __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
        __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | (1 << 18)));
        __asm__ volatile("xsave %0" : "+m"(area) : "a"(1), "d"(0));
        puts("xsave ran\n");
        debug_exit(0x55);
    } else if (starts_with(what, "spin")) {
        for (;;) __asm__ volatile("pause");
    } else if (starts_with(what, "flood")) {
        for (;;) puts("events guest: flood line\n");
    } else if (starts_with(what, "echo")) {
        cmd_echo();
    }
    fail("still running after the requested ending");
}
