// Out-of-line wrappers for libc calls that are only declared under
// _GNU_SOURCE, which the public header must not define (it is imported next
// to Swift's Glibc module and must agree with it).
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "CVfsvmLinux.h"

int vfsvm_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

void vfsvm_set_thread_name(const char *name) { (void)pthread_setname_np(pthread_self(), name); }
