#!/bin/bash
# virtio-blk against Linux's own driver: the Images kernel under
# qemu-system-x86_64 TCG boots root=/dev/vda from a copy of out/rootfs.img
# served by vfsvm's VirtioBlockDevice over vhost-user (vfsvm-blk-probe serve,
# QEMU's vhost-user-blk-pci, 2 request queues, 2 vCPUs), and
#   - reads the device's serial (GET_ID), hardware queue count (MQ), discard
#     and write-zeroes limits from sysfs;
#   - runs dpkg -l | wc -l from the Debian userland on the disk;
#   - writes a 1 MiB file and syncs (OUT + FLUSH), which the host then finds
#     byte for byte in the image (debugfs);
#   - writes, syncs and removes an 8 MiB file, then fstrim / (DISCARD), which
#     must report bytes trimmed;
#   - on a second disk (a 16 MiB scratch image of 0xFF bytes, /dev/vdb):
#     blkdiscard -z (WRITE_ZEROES) and blkdiscard (DISCARD) on two ranges,
#     which the host then reads as zeros (the discarded one a hole), the
#     rest untouched;
# then a kill: the guest writes 1 MiB to a scratch /dev/vdb with O_DIRECT
# and fsync (OUT + FLUSH), says so, and the backend serving vdb is killed
# with SIGKILL (QEMU stopped after it): the bytes are in the image; then a
# fresh copy read-only (IMAGE:ro): /sys/block/vda/ro is 1, a write
# fails with EROFS, and the image is unchanged.
#
#   blk-test.sh PATH-TO-vfsvm-blk-probe
#
# Prints PASS/FAIL per check and "N passed, N failed"; exits non-zero on any
# failure. Keeps the work directory of a failed run and names it.
set -u
PROBE=$(realpath "${1:?usage: blk-test.sh PATH-TO-vfsvm-blk-probe}")
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/Images/out
. "$top/Tests/Integration/check.sh"

boot_qemu=$top/Tests/Integration/boot-qemu.sh
missing=""
command -v qemu-system-x86_64 >/dev/null || missing+=" qemu-system-x86_64"
command -v debugfs >/dev/null || missing+=" debugfs (e2fsprogs)"
[ -x "$PROBE" ] || missing+=" $PROBE (swift build)"
for f in vmlinuz initramfs.cpio.gz rootfs.img rootfs.stamp; do [ -f "$out/$f" ] || missing+=" Images/out/$f"; done
if [ -n "$missing" ]; then
    echo "blk-test: cannot run: missing$missing (make -C Images; swift build)"
    echo "blk-test: 0 passed, 1 failed"
    exit 1
fi

work=$(mktemp -d /tmp/vfsvm-blk.XXXXXX)
serve_pid="" scratch_pid=""
cleanup() {
    [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null
    [ -z "$scratch_pid" ] || kill "$scratch_pid" 2>/dev/null
    if [ "$fail" -eq 0 ]; then rm -rf "$work"; else echo "blk-test: kept $work"; fi
}
trap cleanup EXIT

disk=$work/disk.img
cp --sparse=always "$out/rootfs.img" "$disk"
sock=$work/blk.sock

# boot-qemu.sh knows vhost-user-fs shares, not disks: this wrapper (its
# VFSVM_QEMU) adds the vhost-user-blk-pci device, and $QEMU_EXTRA.
cat > "$work/qemu" <<EOF
#!/bin/sh
# shellcheck disable=SC2086  # word splitting intended; paths hold no blanks
exec qemu-system-x86_64 "\$@" -chardev socket,id=blk0,path=$sock -device vhost-user-blk-pci,chardev=blk0,num-queues=2 \$QEMU_EXTRA
EOF
chmod +x "$work/qemu"
export VFSVM_QEMU=$work/qemu QEMU_EXTRA=""

# serve IMAGE-SPEC [SOCKET]: the probe serving the disk, waits for its socket
serve() {
    local s=${2:-$sock}
    rm -f "$s"
    "$PROBE" serve "$s" "$1" 2 >>"$work/serve.log" 2>&1 &
    if [ -z "${2:-}" ]; then serve_pid=$!; else scratch_pid=$!; fi
    for _ in $(seq 100); do [ -S "$s" ] && return 0; sleep 0.05; done
    echo "vfsvm-blk-probe did not create $s: $(tail -3 "$work/serve.log")" >&2
    return 1
}
# unserve: the probe exits when QEMU disconnects; TERM it if not
unserve() {
    for _ in $(seq 50); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
    kill "$serve_pid" 2>/dev/null
    wait "$serve_pid" 2>/dev/null
    serve_pid=""
}
boot() {
    local name=$1; shift
    "$boot_qemu" --quiet --timeout 240 --smp 2 --log "$work/$name.log" "$@" >>"$work/boot-qemu.stderr" 2>&1
    rc=$?
}
console() { tr -d '\r' < "$work/$1.log" | sed -n "s/^$2=//p" | tail -n1; }

mkdir "$work/admin"
debugfs -R 'cat /var/lib/dpkg/status' "$disk" > "$work/admin/status" 2>/dev/null
want_dpkg=$(dpkg-query --admindir="$work/admin" -l | wc -l)
report='echo "serial=$(cat /sys/block/vda/serial)"
echo "hwqueues=$(ls /sys/block/vda/mq | wc -l)"
echo "discard-max=$(cat /sys/block/vda/queue/discard_max_bytes)"
echo "write-zeroes-max=$(cat /sys/block/vda/queue/write_zeroes_max_bytes)"
echo "ro=$(cat /sys/block/vda/ro)"
echo "root-mount=$(grep "^[^ ]* / " /proc/mounts | tail -n1 | cut -d" " -f1-4)"
echo "dpkg-lines=$(dpkg -l | wc -l)"
if (echo "written in the guest" > /guest-wrote) 2>/tmp/err; then echo "root-write=ok"; else echo "root-write=$(sed "s/.*: //" /tmp/err)"; fi'

scratch=$work/scratch.img
head -c $((16 << 20)) /dev/zero | tr '\0' '\377' > "$scratch"
serve "$disk"
serve "$scratch" "$work/scratch.sock"
QEMU_EXTRA="-chardev socket,id=blk1,path=$work/scratch.sock -device vhost-user-blk-pci,chardev=blk1"
boot rw --append "root=/dev/vda" --cmd "$report"'
blkdiscard -z -o 1048576 -l 1048576 /dev/vdb && echo "vdb-write-zeroes=ok"
blkdiscard -o 4194304 -l 4194304 /dev/vdb && echo "vdb-discard=ok"
i=0; : > /pattern.bin; while [ $i -lt 16 ]; do printf "%065535d\n" $i >> /pattern.bin; i=$((i + 1)); done
sync
echo "pattern-sum=$(md5sum < /pattern.bin | cut -d" " -f1)"
rm -f /trim-me; dd if=/dev/zero of=/trim-me bs=1M count=8 2>/dev/null; sync; rm /trim-me; sync
echo "fstrim=$(fstrim -v / 2>&1)"'
unserve
for _ in $(seq 50); do kill -0 "$scratch_pid" 2>/dev/null || break; sleep 0.1; done
kill "$scratch_pid" 2>/dev/null; wait "$scratch_pid" 2>/dev/null; scratch_pid=""
QEMU_EXTRA=""
want_pattern=$(i=0; while [ $i -lt 16 ]; do printf "%065535d\n" $i; i=$((i + 1)); done | md5sum | cut -d' ' -f1)

if [ $rc -eq 0 ] && [ "$(console rw root-mount)" = "/dev/vda / ext4 rw,relatime" ]; then
    ok "root=/dev/vda on vfsvm's virtio-blk (vhost-user-blk-pci): Linux boots from it read-write"
else
    bad "root=/dev/vda on vfsvm's virtio-blk boots" "status $rc, root-mount '$(console rw root-mount)'; $(tail -2 "$work/serve.log" | tr '\n' ' ')"
fi
[ "$(console rw serial)" = vfsvm-blk-test ] && ok "GET_ID: /sys/block/vda/serial is the device's serial" ||
    bad "GET_ID: /sys/block/vda/serial" "got '$(console rw serial)'"
[ "$(console rw hwqueues)" = 2 ] && ok "MQ: Linux runs 2 hardware queues" || bad "MQ: 2 hardware queues" "got '$(console rw hwqueues)'"
# max_discard_sectors 4194304 (2 GiB); Linux caps discard at UINT_MAX bytes too.
[ "$(console rw discard-max)" = 2147483648 ] && ok "DISCARD: discard_max_bytes is max_discard_sectors * 512" ||
    bad "DISCARD: discard_max_bytes" "got '$(console rw discard-max)'"
[ "$(console rw write-zeroes-max)" = 2147483648 ] && ok "WRITE_ZEROES: write_zeroes_max_bytes is max_write_zeroes_sectors * 512" ||
    bad "WRITE_ZEROES: write_zeroes_max_bytes" "got '$(console rw write-zeroes-max)'"
[ "$(console rw dpkg-lines)" = "$want_dpkg" ] && [ "$want_dpkg" -gt 5 ] &&
    ok "dpkg -l | wc -l from the disk = $want_dpkg, as the host reads the image" ||
    bad "dpkg -l | wc -l from the disk" "guest '$(console rw dpkg-lines)', host $want_dpkg"
debugfs -R 'dump /pattern.bin '"$work/pattern.bin" "$disk" >/dev/null 2>&1
got_sum=$(md5sum < "$work/pattern.bin" 2>/dev/null | cut -d' ' -f1)
if [ "$(console rw pattern-sum)" = "$want_pattern" ] && [ "$got_sum" = "$want_pattern" ]; then
    ok "OUT + FLUSH: the 1 MiB file the guest wrote and synced is in the image byte for byte"
else
    bad "OUT + FLUSH: the guest's file is in the image" "guest sum '$(console rw pattern-sum)', image sum '$got_sum', want $want_pattern"
fi
case $(console rw fstrim) in
    "/: "*" bytes were trimmed"|"/: "*" trimmed") ok "DISCARD: fstrim / succeeds ($(console rw fstrim))" ;;
    *) bad "DISCARD: fstrim /" "got '$(console rw fstrim)'" ;;
esac
# scratch_is FROM LEN OCTAL: bytes [FROM, FROM + LEN) of the scratch image
# are all the byte OCTAL
scratch_is() { [ -z "$(tail -c +$(($1 + 1)) "$scratch" | head -c "$2" | tr -d "\\$3")" ]; }
if [ "$(console rw vdb-write-zeroes)" = ok ] && scratch_is $((1 << 20)) $((1 << 20)) 000; then
    ok "WRITE_ZEROES: blkdiscard -z on /dev/vdb zeroes [1 MiB, 2 MiB) of the image"
else
    bad "WRITE_ZEROES: blkdiscard -z on /dev/vdb" "guest '$(console rw vdb-write-zeroes)'"
fi
if [ "$(console rw vdb-discard)" = ok ] && scratch_is $((4 << 20)) $((4 << 20)) 000 &&
   [ "$(stat -c %b "$scratch")" -le $(((12 << 20) / 512 + 128)) ]; then  # + 64 KiB of extent blocks
    ok "DISCARD: blkdiscard on /dev/vdb punches a 4 MiB hole (reads as zeros; $(($(stat -c %b "$scratch") / 2048)) of 16 MiB left allocated)"
else
    bad "DISCARD: blkdiscard on /dev/vdb punches a hole" "guest '$(console rw vdb-discard)', $(stat -c %b "$scratch") blocks allocated"
fi
if scratch_is 0 $((1 << 20)) 377 && scratch_is $((2 << 20)) $((2 << 20)) 377 && scratch_is $((8 << 20)) $((8 << 20)) 377; then
    ok "WRITE_ZEROES / DISCARD: the rest of the scratch image is untouched"
else
    bad "WRITE_ZEROES / DISCARD: the rest of the scratch image is untouched"
fi
grep -q "O_DIRECT true" "$work/serve.log" && ok "the image was opened with O_DIRECT (ext4 here)" ||
    bad "the image was opened with O_DIRECT" "$(head -1 "$work/serve.log")"

# --- SIGKILL after a FLUSH ---------------------------------------------------
kill_img=$work/kill.img
head -c $((16 << 20)) /dev/zero > "$kill_img"
serve "$disk"
serve "$kill_img" "$work/scratch.sock"
QEMU_EXTRA="-chardev socket,id=blk1,path=$work/scratch.sock -device vhost-user-blk-pci,chardev=blk1"
"$boot_qemu" --quiet --timeout 240 --smp 2 --log "$work/kill.log" --append "root=/dev/vda" --cmd '
i=0; : > /tmp/pattern.bin; while [ $i -lt 16 ]; do printf "%065535d\n" $i >> /tmp/pattern.bin; i=$((i + 1)); done
dd if=/tmp/pattern.bin of=/dev/vdb bs=65536 oflag=direct conv=fsync 2>/dev/null && echo "vdb-flushed=yes"
sleep 600' >>"$work/boot-qemu.stderr" 2>&1 &
boot_pid=$!
flushed=0
for _ in $(seq 2400); do
    if tr -d '\r' 2>/dev/null < "$work/kill.log" | grep -q '^vdb-flushed=yes'; then flushed=1; break; fi
    kill -0 "$boot_pid" 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$scratch_pid" 2>/dev/null
wait "$scratch_pid" 2>/dev/null
killed=$?
scratch_pid=""
kill -TERM "$boot_pid" 2>/dev/null
wait "$boot_pid" 2>/dev/null
unserve
QEMU_EXTRA=""
got_sum=$(head -c $((1 << 20)) "$kill_img" | md5sum | cut -d' ' -f1)
if [ $flushed -eq 1 ] && [ $killed -eq 137 ] && [ "$got_sum" = "$want_pattern" ] &&
   [ -z "$(tail -c +$((1 << 20 + 1)) "$kill_img" | tr -d '\000')" ]; then
    ok "SIGKILL: 1 MiB the guest wrote to /dev/vdb and flushed is in the image after the backend is killed"
else
    bad "SIGKILL: flushed writes survive a kill of the backend" "flushed $flushed, backend status $killed, image sum $got_sum, want $want_pattern"
fi

# A pristine copy: the read-write boot's power-off leaves a journal to
# replay, which ext4 cannot do on a read-only device.
disk=$work/ro.img
cp --sparse=always "$out/rootfs.img" "$disk"
sum_before=$(md5sum < "$disk" | cut -d' ' -f1)
serve "$disk:ro"
boot ro --append "root=/dev/vda ro" --cmd "$report"
unserve
if [ $rc -eq 0 ] && [ "$(console ro ro)" = 1 ] && [ "$(console ro root-mount)" = "/dev/vda / ext4 ro,relatime" ] &&
   [ "$(console ro root-write)" = "Read-only file system" ] && [ "$(console ro dpkg-lines)" = "$want_dpkg" ]; then
    ok "IMAGE:ro: VIRTIO_BLK_F_RO reaches Linux (/sys/block/vda/ro = 1), dpkg works, a write fails with EROFS"
else
    bad "IMAGE:ro: a read-only disk" "status $rc, ro '$(console ro ro)', root-mount '$(console ro root-mount)', root-write '$(console ro root-write)'"
fi
[ "$(md5sum < "$disk" | cut -d' ' -f1)" = "$sum_before" ] && ok "IMAGE:ro: the image is unchanged" || bad "IMAGE:ro: the image is unchanged"

summary blk-test
