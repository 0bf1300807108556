// Guest memory a vhost-user front-end shares by fd can be shrunk under our
// mapping (ftruncate on its memfd or file); touching a page past the new end
// of the file raises SIGBUS. These calls let vfsvm seal such files where it
// can and, where it cannot, survive the fault: a SIGBUS inside a guarded
// range maps anonymous zero pages over the rest of the range, marks the
// range faulted and returns, so the access completes (reading zeros) and
// the device can stop the rings and say why. A SIGBUS anywhere else goes
// to the handler that was installed before (or the default action).
#ifndef VFSVM_FAULT_GUARD_H
#define VFSVM_FAULT_GUARD_H

#include <stddef.h>

/// F_SEAL_* (linux/fcntl.h), for the calls below.
static const int VFSVM_F_SEAL_SEAL = 0x0001;
static const int VFSVM_F_SEAL_SHRINK = 0x0002;

/// fcntl(fd, F_GET_SEALS): the seals, or -1/errno (EINVAL: the file is not
/// on a file system that supports sealing, e.g. not a memfd or tmpfs file).
int vfsvm_get_seals(int fd);
/// fcntl(fd, F_ADD_SEALS, seals): 0 or -1/errno (EPERM once F_SEAL_SEAL is set).
int vfsvm_add_seals(int fd, int seals);

/// Installs the SIGBUS handler (once; later calls do nothing). Call it
/// before a seccomp filter that forbids rt_sigaction. 0 or -1/errno.
int vfsvm_fault_guard_install(void);
/// Guards [base, base + size): returns a slot (>= 0) or -1 when all slots
/// are taken. Installs the handler if needed.
int vfsvm_fault_guard_add(void *base, size_t size);
/// Stops guarding `slot` (before the range is unmapped).
void vfsvm_fault_guard_remove(int slot);
/// 1 when a SIGBUS hit `slot`'s range since it was added, else 0.
int vfsvm_fault_guard_faulted(int slot);
/// SIGBUS faults absorbed so far, over all ranges (a cheap first check).
unsigned long vfsvm_fault_guard_count(void);

#endif
