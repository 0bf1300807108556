/* The smallest PVH guest: checks hvm_start_info, prints a line on COM1
 * (with its command line), and exits through the debug-exit port with the
 * status `exit=N` on the command line asks for (default 0x21 -> 67). */
#include "guest.h"

void guest_main(struct hvm_start_info *si) {
    if (si->magic != HVM_START_MAGIC) fail("hvm_start_info magic");
    puts("hello from the PVH guest");
    if (si->cmdline_paddr) {
        puts(", cmdline: ");
        puts((const char *)si->cmdline_paddr);
    }
    puts("\n");
    const char *e = cmdline_arg(si, "exit");
    debug_exit(e ? (u8)parse_dec(e) : 0x21);
}
