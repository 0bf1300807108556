/* no-seccomp.so, preloaded into Debian's virtiofsd 7.2 (the C one) by
 * callgrind-backend.sh: libseccomp's filter calls succeed and install
 * nothing. valgrind 3.19 does not implement the seccomp system call, so
 * the real seccomp_init fails and virtiofsd exits; that virtiofsd has no
 * option to run without its filter (vfsvm serve has --seccomp none, which
 * the script passes to it: both run unfiltered). The filter runs in the
 * kernel, so it adds no user-space instructions callgrind would count. */
#include <stdint.h>

static char context;

void *seccomp_init(uint32_t default_action) { (void)default_action; return &context; }
int seccomp_rule_add(void *ctx, uint32_t action, int syscall, unsigned int arg_count, ...) {
    (void)ctx; (void)action; (void)syscall; (void)arg_count;
    return 0;
}
int seccomp_load(void *ctx) { (void)ctx; return 0; }
void seccomp_release(void *ctx) { (void)ctx; }
