// What the fuzz harnesses need from libc that Swift's Glibc does not show
// (it needs _GNU_SOURCE).
#ifndef CFUZZ_SUPPORT_H
#define CFUZZ_SUPPORT_H

/// unshare(CLONE_NEWNS): a mount namespace of the fuzzer's own.
int fuzz_unshare_mount_namespace(void);

#endif
