#!/bin/bash
# `vfsvm mount` end to end: mounts a temporary host directory, runs
# fs-workload.sh on it over each request channel (/dev/fuse reads, FUSE over
# io_uring with the fuse module's enable_uring set for the pass and put back
# after), unmounts with SIGTERM and checks a clean exit; then the fallback
# with enable_uring off. Also checks the plain errors a user sees.
#
#   mount-test.sh PATH-TO-vfsvm
set -u
VFSVM=$(realpath "${1:?usage: mount-test.sh PATH-TO-vfsvm}")
here=$(cd "$(dirname "$0")" && pwd)
# ok/bad/check/summary; mounted/start_mount/terminate_mount
. "$(dirname "$0")/check.sh"
. "$(dirname "$0")/mount-helpers.sh"

if [ ! -c /dev/fuse ] || [ "$(id -u)" -ne 0 ]; then
    bad "mount-test can run here" "needs root and /dev/fuse (uid $(id -u), /dev/fuse $( [ -c /dev/fuse ] && echo present || echo missing))"
    summary mount-test
    exit 1
fi

top=$(mktemp -d /tmp/vfsvm-mount.XXXXXX)
host=$top/host mnt=$top/mnt
mkdir -p "$host" "$mnt"
log=$top/vfsvm.log
cleanup() {
    [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null
    mounted && umount -l "$mnt" 2>/dev/null
    rm -rf "$top"
}
trap cleanup EXIT

# FUSE over io_uring is a module parameter (enable_uring); the passes
# below set it as they need and the original value is put back on exit.
param=/sys/module/fuse/parameters/enable_uring
orig_uring=$(cat "$param" 2>/dev/null || echo none)
restore_uring() { [ "$orig_uring" != none ] && echo "$orig_uring" > "$param" 2>/dev/null; }
set_uring() {  # Y|N; prints why not when the kernel has no such parameter
    if [ "$orig_uring" = none ]; then echo "this kernel has no $param"; return 1; fi
    echo "$1" > "$param" 2>/dev/null || { echo "cannot write $param"; return 1; }
}
trap 'restore_uring; cleanup' EXIT

stop_mount() {  # NAME: SIGTERM unmounts and exits 0
    terminate_mount
    if [ "$status" = 0 ] && ! mounted; then ok "$1: SIGTERM unmounts and exits 0"; else bad "$1: SIGTERM unmounts and exits 0" "status $status, log: $(tail -2 "$log"), threads: $(for t in /proc/$pid/task/*; do printf '%s:%s ' "$(cat $t/comm)" "$(cat $t/wchan)"; done 2>/dev/null), users of the mount: $(fuser -m "$mnt" 2>&1)"; fi
    pid=
}

# The same workload over each request channel: /dev/fuse reads (-o
# no_uring), then FUSE over io_uring where the kernel takes it. The log
# says which channel served, and why.
for channel in dev-fuse uring; do
    rm -rf "${host:?}"/* 2>/dev/null
    if [ $channel = uring ]; then
        if why=$(set_uring Y); then uring_on=1; else uring_on=0; echo "mount-test: FUSE over io_uring cannot be enabled here ($why): the uring pass checks the fallback"; fi
        start_mount -o xattr
    else
        start_mount -o xattr,no_uring
    fi
    if mounted; then ok "$channel: vfsvm mount mounts $mnt"; else bad "$channel: vfsvm mount mounts $mnt" "$(tail -3 "$log")"; continue; fi
    if "$here/fs-workload.sh" "$mnt" "$host"; then ok "$channel: fs-workload on the mount"; else bad "$channel: fs-workload on the mount"; fi
    if [ $channel = dev-fuse ]; then
        if grep -q "request channel: /dev/fuse reads (-o no_uring)" "$log"; then ok "dev-fuse: the log names the channel and why"
        else bad "dev-fuse: the log names the channel and why" "$(grep 'request channel' "$log")"; fi
    elif [ $uring_on = 1 ]; then
        line=$(grep "request channel" "$log")
        if echo "$line" | grep -q "request channel: FUSE over io_uring"; then ok "uring: requests came through FUSE over io_uring ($line)"
        else bad "uring: requests came through FUSE over io_uring" "log: $line"; fi
    else
        if grep -q "request channel: /dev/fuse reads" "$log"; then ok "uring: fallback to /dev/fuse reads is logged"; else bad "uring: fallback to /dev/fuse reads is logged" "$(tail -2 "$log")"; fi
    fi

    # A host ACL entry that denies a user holds through the mount (the server
    # opens files as root; without FUSE_POSIX_ACL the kernel checks mode bits
    # only). The file is 0666 with user:nobody:--- (mask rw).
    chmod 0755 "$top"
    echo secret > "$host/acl-file" && chmod 0666 "$host/acl-file"
    python3 - "$host/acl-file" <<'PY'
import os, struct, sys
entries = [(0x01, 6, 0xffffffff), (0x02, 0, 65534), (0x04, 6, 0xffffffff), (0x10, 6, 0xffffffff), (0x20, 6, 0xffffffff)]
os.setxattr(sys.argv[1], "system.posix_acl_access", struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))
PY
    setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "echo hacked > '$mnt/acl-file'" 2>/dev/null; rc=$?
    if [ $rc -ne 0 ] && [ "$(cat "$host/acl-file")" = secret ]; then ok "$channel: a host ACL entry denying nobody holds through the mount"
    else bad "$channel: a host ACL entry denying nobody holds through the mount" "rc=$rc, host file: $(cat "$host/acl-file")"; fi
    setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "cat '$mnt/acl-file'" >/dev/null 2>&1; rc=$?
    if [ $rc -ne 0 ]; then ok "$channel: ...and denies reading too"; else bad "$channel: ...and denies reading too" "nobody read the file"; fi
    chmod 0700 "$top"
    # A caller waiting for a lock on the mount can be killed, and interrupted
    # (review3 finding 2): the kernel sends FUSE_INTERRUPT, vfsvm wakes the
    # waiting fcntl/flock and answers EINTR. Before, the caller stayed in D
    # state (request_wait_answer) after SIGKILL until the holder let go.
    echo x > "$host/lk"
    rm -f "$top/holder.out"
    python3 -c 'import fcntl, sys, time
fd = open(sys.argv[1], "r+"); fcntl.lockf(fd, fcntl.LOCK_EX); print("held", flush=True); time.sleep(60)' "$host/lk" > "$top/holder.out" &
    holder=$!
    for _ in $(seq 1 50); do grep -q held "$top/holder.out" 2>/dev/null && break; sleep 0.1; done
    python3 -c 'import fcntl, sys
fd = open(sys.argv[1], "r+"); fcntl.lockf(fd, fcntl.LOCK_EX)' "$mnt/lk" &
    waiter=$!
    sleep 1
    state=$(awk '/^State:/ {print $2}' /proc/$waiter/status 2>/dev/null)
    kill -9 $waiter 2>/dev/null
    gone=no
    for _ in $(seq 1 30); do kill -0 $waiter 2>/dev/null || { gone=yes; break; }; sleep 0.1; done
    if [ "$gone" = yes ]; then ok "$channel: kill -9 ends a process waiting for a lock the host holds (it was in state $state)"
    else bad "$channel: kill -9 ends a process waiting for a lock the host holds" "still there after 3 s: $(grep State /proc/$waiter/status) wchan $(cat /proc/$waiter/wchan)"; fi
    wait $waiter 2>/dev/null
    # A handled signal: the wait ends with EINTR, the handler runs.
    out=$(python3 -c 'import fcntl, signal, sys
def on_alarm(*_): raise TimeoutError
signal.signal(signal.SIGALRM, on_alarm); signal.alarm(1)
fd = open(sys.argv[1], "r+")
try: fcntl.lockf(fd, fcntl.LOCK_EX)
except TimeoutError: print("timed out"); sys.exit(0)
print("got the lock the host holds"); sys.exit(1)' "$mnt/lk" 2>&1); rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "timed out" ]; then ok "$channel: an alarm ends a lock wait on the mount (the handler runs)"
    else bad "$channel: an alarm ends a lock wait on the mount (the handler runs)" "rc=$rc $out"; fi
    kill $holder 2>/dev/null; wait $holder 2>/dev/null
    # The mount still serves locks afterwards.
    if python3 -c 'import fcntl, sys
fd = open(sys.argv[1], "r+"); fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)' "$mnt/lk"; then ok "$channel: ...and the mount still grants the lock once the host let go"
    else bad "$channel: ...and the mount still grants the lock once the host let go"; fi

    stop_mount "$channel"
done

# Every READ/WRITE through the server over the rings (--no-passthrough):
# the bytes come back. (The ring threads take their CPUs before the
# seccomp filter: a late one was killed for sched_setaffinity.)
if [ "${uring_on:-0}" = 1 ] && set_uring Y >/dev/null; then
    rm -rf "${host:?}"/* 2>/dev/null
    start_mount --no-passthrough
    head -c 8388608 /dev/urandom > "$top/data"
    if mounted && cp "$top/data" "$mnt/data" && cmp -s "$top/data" "$host/data" && cmp -s "$host/data" "$mnt/data" \
        && grep -q "request channel: FUSE over io_uring" "$log"; then
        ok "uring --no-passthrough: 8 MiB written and read back through the server"
    else
        bad "uring --no-passthrough: 8 MiB written and read back through the server" "$(tail -3 "$log")"
    fi
    mounted && stop_mount "uring --no-passthrough"
fi

# The kernel with FUSE over io_uring off: the mount says so and serves
# through /dev/fuse reads.
if why=$(set_uring N); then
    start_mount
    if mounted && echo kernel-off > "$mnt/off" && [ "$(cat "$mnt/off")" = kernel-off ] && [ "$(cat "$host/off")" = kernel-off ] \
        && grep -q "request channel: /dev/fuse reads (FUSE over io_uring is off in the kernel" "$log"; then
        ok "enable_uring=N: served through /dev/fuse reads, and the log says why"
    else
        bad "enable_uring=N: served through /dev/fuse reads, and the log says why" "$(tail -3 "$log")"
    fi
    mounted && stop_mount "enable_uring=N"
else
    echo "mount-test: not checking the enable_uring=N fallback: $why"
fi
restore_uring

# Plain errors.
out=$("$VFSVM" mount --share "$host" "$top/nonexistent" 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "is not an existing directory"; then ok "missing mount point: clear error"; else bad "missing mount point: clear error" "rc=$rc $out"; fi
out=$("$VFSVM" mount --share "$top/nope" "$mnt" 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -qi "nope"; then ok "missing share directory: clear error"; else bad "missing share directory: clear error" "rc=$rc $out"; fi

out=$("$VFSVM" mount --share "$host" "$mnt" -o uring=1 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "uring takes no value"; then ok "-o uring=1: clear error"; else bad "-o uring=1: clear error" "rc=$rc $out"; fi

summary mount-test
