// See vfsvm_fault_guard.h.
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfsvm_fault_guard.h"

int vfsvm_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

int vfsvm_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }

// vhost-user allows 32 memory slots per connection; a few connections'
// worth of ranges, with room to spare.
#define GUARD_SLOTS 256

struct guard {
    _Atomic uintptr_t base;
    _Atomic size_t size;
    _Atomic int faulted;
};

static struct guard guards[GUARD_SLOTS];
static _Atomic unsigned long fault_count;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_result = -1;
static int install_errno;
static struct sigaction previous;
static uintptr_t page_mask;

// Async-signal-safe: atomics, mmap (a plain system call) and sigaction.
static void on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t base = atomic_load_explicit(&guards[i].base, memory_order_acquire);
        size_t size = atomic_load_explicit(&guards[i].size, memory_order_acquire);
        if (base == 0 || address < base || address - base >= size) continue;
        uintptr_t page = address & page_mask;
        void *fill = mmap((void *)page, base + size - page, PROT_READ | PROT_WRITE,
                          MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (fill == MAP_FAILED) break;
        atomic_store_explicit(&guards[i].faulted, 1, memory_order_release);
        atomic_fetch_add_explicit(&fault_count, 1, memory_order_relaxed);
        return;  // the faulting access is retried on the zero pages
    }
    // Not ours: what would have happened without us.
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        // Back to the default action; returning re-runs the access, which
        // faults again and ends the process as it would have.
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGBUS, &dfl, NULL);
    }
}

static void install(void) {
    page_mask = ~((uintptr_t)sysconf(_SC_PAGESIZE) - 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    install_result = sigaction(SIGBUS, &sa, &previous);
    install_errno = errno;
}

int vfsvm_fault_guard_install(void) {
    pthread_once(&install_once, install);
    if (install_result != 0) errno = install_errno;
    return install_result;
}

int vfsvm_fault_guard_add(void *base, size_t size) {
    if (vfsvm_fault_guard_install() != 0) return -1;
    pthread_mutex_lock(&slots_lock);
    int slot = -1;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        if (atomic_load_explicit(&guards[i].base, memory_order_relaxed) == 0) {
            atomic_store_explicit(&guards[i].faulted, 0, memory_order_relaxed);
            atomic_store_explicit(&guards[i].size, size, memory_order_release);
            atomic_store_explicit(&guards[i].base, (uintptr_t)base, memory_order_release);
            slot = i;
            break;
        }
    }
    pthread_mutex_unlock(&slots_lock);
    if (slot < 0) errno = ENOSPC;
    return slot;
}

void vfsvm_fault_guard_remove(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return;
    pthread_mutex_lock(&slots_lock);
    atomic_store_explicit(&guards[slot].base, 0, memory_order_release);
    atomic_store_explicit(&guards[slot].size, 0, memory_order_release);
    pthread_mutex_unlock(&slots_lock);
}

int vfsvm_fault_guard_faulted(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return 0;
    return atomic_load_explicit(&guards[slot].faulted, memory_order_acquire);
}

unsigned long vfsvm_fault_guard_count(void) {
    return atomic_load_explicit(&fault_count, memory_order_relaxed);
}
