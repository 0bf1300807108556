#!/bin/bash
# demo-virtiofsd.sh — end-to-end demonstration: a host directory shared with a
# Linux guest over virtio-fs. Starts the backend on a temporary directory with
# a few files, boots the guest under QEMU (boot-qemu.sh) with a command that
# lists, reads, writes and reads back, then shows the host seeing the guest's
# files. Exit 0 only when every check on both sides holds.
#   VFSVM_BACKEND=virtiofsd|vfsvm   backend (Tests/Integration/backend.sh; default virtiofsd)
#   VFSVM_PACKED=on|off             ring type asked of QEMU (default off:
#                                   Debian's virtiofsd has no packed ring)
#   Extra arguments go to boot-qemu.sh (e.g. --queues 2, --log FILE).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
harness=$top/Tests/Integration
. "$harness/backend.sh"
[ -f "$top/Images/out/vmlinuz" ] && [ -f "$top/Images/out/initramfs.cpio.gz" ] || make -C "$top/Images"

work=$(mktemp -d /tmp/vfsvm-demo.XXXXXX)
share=$work/share
trap 'stop_backend; rm -rf "$work"' EXIT
mkdir -p "$share/docs"
echo "hello from the host" > "$share/hello.txt"
printf 'line 1\nline 2\n' > "$share/docs/readme.txt"
head -c 300000 /dev/urandom > "$share/random.bin"
host_md5=$(md5sum < "$share/random.bin" | cut -d' ' -f1)
echo "demo: host directory $share:"
ls -la "$share"

start_backend "$work/sock" "$share" "$work/backend.log"
echo "demo: backend ${VFSVM_BACKEND:-virtiofsd} (pid $BACKEND_PID) on $work/sock"

guest_cmd='set -e
echo "== guest: ls -la /mnt"; ls -la /mnt
echo "== guest: cat /mnt/hello.txt"; cat /mnt/hello.txt
echo "== guest: md5sum /mnt/random.bin"; md5sum /mnt/random.bin
echo "== guest: writing /mnt/from-guest.txt and /mnt/guest-dir/copy.bin"
echo "written by the guest ($(uname -r))" > /mnt/from-guest.txt
mkdir /mnt/guest-dir
cp /mnt/random.bin /mnt/guest-dir/copy.bin
sync; echo 3 > /proc/sys/vm/drop_caches
echo "== guest: read back"; cat /mnt/from-guest.txt; md5sum /mnt/guest-dir/copy.bin
echo "== guest: df -h /mnt"; df -h /mnt'

log=$work/console.log
set +e
"$harness/boot-qemu.sh" --socket "$work/sock" --tag demo --packed "${VFSVM_PACKED:-off}" \
    --cmd "$guest_cmd" --log "$log" --timeout 120 "$@"
status=$?
set -e
stop_backend

fail=0
check() { if eval "$2"; then echo "demo: ok   $1"; else echo "demo: FAIL $1"; fail=1; fi; }
echo "demo: host view after the guest powered off:"
ls -la "$share" "$share/guest-dir" 2>&1 || true
check "guest command exited 0 (status $status)" '[ $status -eq 0 ]'
check "guest read hello.txt" 'tr -d "\r" < "$log" | grep -qx "hello from the host"'
check "guest md5 of random.bin = host md5 $host_md5" 'tr -d "\r" < "$log" | grep -q "^$host_md5  /mnt/random.bin$"'
check "host sees from-guest.txt: $(cat "$share/from-guest.txt" 2>/dev/null)" 'grep -q "^written by the guest" "$share/from-guest.txt"'
check "host copy.bin equals random.bin" 'cmp -s "$share/random.bin" "$share/guest-dir/copy.bin"'
check "guest read back copy.bin with the same md5" 'tr -d "\r" < "$log" | grep -q "^$host_md5  /mnt/guest-dir/copy.bin$"'
[ $fail -eq 0 ] && echo "demo: PASSED" || echo "demo: FAILED (console log lost with $work; rerun with --log FILE to keep it)"
exit $fail
