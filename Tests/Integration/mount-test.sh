#!/bin/bash
# `vfsvm mount` end to end: mounts a temporary host directory through
# /dev/fuse, runs fs-workload.sh on it, unmounts with SIGTERM and checks a
# clean exit. Also checks the plain errors a user sees.
#
#   mount-test.sh PATH-TO-vfsvm
set -u
VFSVM=$(realpath "${1:?usage: mount-test.sh PATH-TO-vfsvm}")
here=$(cd "$(dirname "$0")" && pwd)
# ok/bad/check/summary
. "$(dirname "$0")/check.sh"

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
    umount -l "$mnt" 2>/dev/null
    rm -rf "$top"
}
trap cleanup EXIT

mounted() { grep -q " $mnt fuse.vfsvm " /proc/mounts; }

"$VFSVM" mount --share "$host" "$mnt" -o xattr >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do mounted && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if mounted; then ok "vfsvm mount mounts $mnt"; else bad "vfsvm mount mounts $mnt" "$(tail -3 "$log")"; fi

if mounted; then
    if "$here/fs-workload.sh" "$mnt" "$host"; then ok "fs-workload on the mount"; else bad "fs-workload on the mount"; fi
fi

# A host ACL entry that denies a user holds through the mount (the server
# opens files as root; without FUSE_POSIX_ACL the kernel checks mode bits
# only). The file is 0666 with user:nobody:--- (mask rw).
if mounted; then
    chmod 0755 "$top"
    echo secret > "$host/acl-file" && chmod 0666 "$host/acl-file"
    python3 - "$host/acl-file" <<'PY'
import os, struct, sys
entries = [(0x01, 6, 0xffffffff), (0x02, 0, 65534), (0x04, 6, 0xffffffff), (0x10, 6, 0xffffffff), (0x20, 6, 0xffffffff)]
os.setxattr(sys.argv[1], "system.posix_acl_access", struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))
PY
    setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "echo hacked > '$mnt/acl-file'" 2>/dev/null; rc=$?
    if [ $rc -ne 0 ] && [ "$(cat "$host/acl-file")" = secret ]; then ok "a host ACL entry denying nobody holds through the mount"
    else bad "a host ACL entry denying nobody holds through the mount" "rc=$rc, host file: $(cat "$host/acl-file")"; fi
    setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "cat '$mnt/acl-file'" >/dev/null 2>&1; rc=$?
    if [ $rc -ne 0 ]; then ok "...and denies reading too"; else bad "...and denies reading too" "nobody read the file"; fi
    chmod 0700 "$top"
fi

kill -TERM $pid 2>/dev/null
status=timeout
for _ in $(seq 1 100); do
    if ! kill -0 $pid 2>/dev/null; then wait $pid; status=$?; break; fi
    sleep 0.1
done
if [ "$status" = 0 ] && ! mounted; then ok "SIGTERM unmounts and exits 0"; else bad "SIGTERM unmounts and exits 0" "status $status, log: $(tail -2 "$log")"; fi
pid=

# Plain errors.
out=$("$VFSVM" mount --share "$host" "$top/nonexistent" 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -q "is not an existing directory"; then ok "missing mount point: clear error"; else bad "missing mount point: clear error" "rc=$rc $out"; fi
out=$("$VFSVM" mount --share "$top/nope" "$mnt" 2>&1); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -qi "nope"; then ok "missing share directory: clear error"; else bad "missing share directory: clear error" "rc=$rc $out"; fi

summary mount-test
