// Out-of-line wrappers for libc calls that are only declared under
// _GNU_SOURCE, which the public header must not define (it is imported next
// to Swift's Glibc module and must agree with it).
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <unistd.h>

#include "CVfsvmLinux.h"

int vfsvm_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
