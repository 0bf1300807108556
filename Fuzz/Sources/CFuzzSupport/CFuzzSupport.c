#define _GNU_SOURCE 1
#include <sched.h>
#include "CFuzzSupport.h"

int fuzz_unshare_mount_namespace(void) { return unshare(CLONE_NEWNS); }
