// Out-of-line wrappers for libc calls that are only declared under
// _GNU_SOURCE, which the public header must not define (it is imported next
// to Swift's Glibc module and must agree with it).
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "CVfsvmLinux.h"

int vfsvm_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

void vfsvm_set_thread_name(const char *name) { (void)pthread_setname_np(pthread_self(), name); }

int vfsvm_unshare(int flags) { return unshare(flags); }

int vfsvm_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

// Sets the effective and permitted capability sets to `keep_mask` (bit N =
// capability N) and clears the inheritable set.
int vfsvm_capset(uint64_t keep_mask) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2] = {
        { .effective = (uint32_t)keep_mask, .permitted = (uint32_t)keep_mask, .inheritable = 0 },
        { .effective = (uint32_t)(keep_mask >> 32), .permitted = (uint32_t)(keep_mask >> 32), .inheritable = 0 },
    };
    return (int)syscall(SYS_capset, &header, data);
}

int vfsvm_capbset_drop(int cap) { return prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); }
