#!/bin/bash
# selftest.sh — checks the built artefacts and the host-side scripts without
# booting anything (seconds). Run after `make -C Images`; `make -C Images selftest`.
# Prints PASS/FAIL per check; exit 0 only when all pass.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/out
# The QEMU harness and the workload scripts (checked here without booting).
harness=$(cd "$here/../Tests/Integration" && pwd)
# ok/bad/check/refuse/summary
. "$harness/check.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in vmlinuz vmlinux initramfs.cpio.gz cmdline guest.img; do
    [ -s "$out/$f" ] || { bad "$out/$f exists" "run make -C Images first"; summary selftest; exit 1; }
done

# vmlinuz / vmlinux
check "vmlinuz has the HdrS setup header" \
    bash -c '[ "$(od -An -c -j 0x202 -N 4 "$1" | tr -d " \n")" = HdrS ]' _ "$out/vmlinuz"
check "vmlinux is an x86-64 ELF executable" \
    bash -c 'readelf -h "$1" | grep -q "Type: *EXEC" && readelf -h "$1" | grep -q "X86-64"' _ "$out/vmlinux"
check "vmlinux has the PVH note (Xen type 0x12)" \
    bash -c 'readelf -n "$1" | grep -q "(0x00000012)"' _ "$out/vmlinux"
check "extract-vmlinux reproduces out/vmlinux" \
    bash -c '"$1" "$2" "$3" && cmp "$3" "$4"' _ "$here/scripts/extract-vmlinux.sh" "$out/vmlinuz" "$tmp/vmlinux" "$out/vmlinux"
head -c 600 "$out/vmlinuz" > "$tmp/short"
refuse "extract-vmlinux rejects a truncated bzImage" "$here/scripts/extract-vmlinux.sh" "$tmp/short" "$tmp/x1"
refuse "extract-vmlinux rejects a non-bzImage" "$here/scripts/extract-vmlinux.sh" "$out/vmlinux" "$tmp/x2"
check "extract-vmlinux left no output after failures" bash -c '[ ! -e "$1" ] && [ ! -e "$2" ]' _ "$tmp/x1" "$tmp/x2"
# corrupt the appended size: the size check must catch it
cp "$out/vmlinuz" "$tmp/badsize"
ss=$(od -An -tu1 -j 0x1f1 -N1 "$out/vmlinuz" | tr -d ' ')
po=$(od -An -tu4 -j 0x248 -N4 "$out/vmlinuz" | tr -d ' ')
pl=$(od -An -tu4 -j 0x24c -N4 "$out/vmlinuz" | tr -d ' ')
printf '\001\000\000\000' | dd of="$tmp/badsize" bs=1 seek=$(( (ss + 1) * 512 + po + pl - 4 )) conv=notrunc 2>/dev/null
refuse "extract-vmlinux rejects a wrong appended size" "$here/scripts/extract-vmlinux.sh" "$tmp/badsize" "$tmp/x3"

# initramfs
mkdir "$tmp/ird"
( cd "$tmp/ird" && zcat "$out/initramfs.cpio.gz" | cpio --quiet -id 2>/dev/null )
check "initramfs /init is the repository's init.sh" cmp "$tmp/ird/init" "$here/init.sh"
check "initramfs /init is executable" test -x "$tmp/ird/init"
check "initramfs busybox is static" bash -c 'file "$1" | grep -q "statically linked"' _ "$tmp/ird/bin/busybox"
check "initramfs has sh, insmod, mount, poweroff links" \
    bash -c 'for a in bin/sh sbin/insmod bin/mount sbin/poweroff; do [ -L "$1/$a" ] || exit 1; done' _ "$tmp/ird"
check "initramfs has vfsvm-xattr" test -x "$tmp/ird/bin/vfsvm-xattr"
check "initramfs has vfsvm-bench" cmp "$tmp/ird/bin/vfsvm-bench" "$out/vfsvm-bench"
mkdir "$tmp/benchdir"
check "vfsvm-bench --quick on the host prints all six results and cleans up" \
    bash -c 'o=$("$1" "$2" --quick --no-drop --meta 20 --tar 20 --mib 2 --rand 50) || exit 1
             for n in meta-create-stat-unlink tree-walk-lstat tar-extract seq-write seq-read-cold randread-4k-qd1; do
                 echo "$o" | grep -Eq "^BENCH $n [0-9]+\.[0-9] [A-Za-z/]+ n=[0-9]+ secs=" || { echo "no $n"; exit 1; }
             done
             echo "$o" | grep -qx BENCH-DONE && [ -z "$(ls -A "$2")" ]' _ "$out/vfsvm-bench" "$tmp/benchdir"
refuse "vfsvm-bench rejects a missing directory argument" "$out/vfsvm-bench" --quick
refuse "vfsvm-bench rejects a zero count" "$out/vfsvm-bench" "$tmp/benchdir" --mib 0
refuse "vfsvm-bench fails on a directory that does not exist" "$out/vfsvm-bench" "$tmp/no/such/dir"
check "every module in load-order is a plain ELF .ko" \
    bash -c 'while read -r m; do readelf -h "$1/lib/modules/$m.ko" | grep -q "REL (Relocatable" || { echo "$m"; exit 1; }; done < "$1/lib/modules/load-order"' _ "$tmp/ird"
check "load-order has the virtio-fs chain in dependency order" \
    bash -c 'o=$(tr "\n" " " < "$1"); pos() { echo "$o" | tr " " "\n" | grep -nx "$1" | cut -d: -f1; }
             for m in virtio_ring virtio virtio_pci fuse virtiofs virtio_mmio virtio_blk; do [ -n "$(pos $m)" ] || { echo "no $m"; exit 1; }; done
             [ $(pos virtio_ring) -lt $(pos virtio) ] && [ $(pos virtio) -lt $(pos virtio_pci) ] &&
             [ $(pos virtio_pci_modern_dev) -lt $(pos virtio_pci) ] && [ $(pos fuse) -lt $(pos virtiofs) ] &&
             [ $(pos virtio) -lt $(pos virtiofs) ]' _ "$tmp/ird/lib/modules/load-order"
check "kernel release recorded matches the modules' vermagic" \
    bash -c 'r=$(cat "$1/etc/vfsvm-kernel-release"); strings "$1/lib/modules/virtiofs.ko" | grep -q "^vermagic=$r "' _ "$tmp/ird"
check "init.sh parses (busybox sh -n)" busybox sh -n "$here/init.sh"
check "guest-workload.sh parses (busybox sh -n)" busybox sh -n "$harness/guest-workload.sh"
check "check.sh parses (busybox sh -n)" busybox sh -n "$harness/check.sh"

# guest.img: ustar with kernel, initramfs, cmdline, matching out/
# Walk the headers as a reader following README.md would.
ustar_walk() {
    local img=$1 off=0 size total names="" typ
    total=$(stat -c %s "$img")
    while :; do
        [ $((off + 512)) -le "$total" ] || { echo "header at $off runs past the end"; return 1; }
        if [ -z "$(od -v -An -tx1 -j "$off" -N 512 "$img" | tr -d ' \n0')" ]; then break; fi
        [ "$(od -An -tx1 -j $((off + 257)) -N 8 "$img" | tr -d ' \n')" = 7573746172003030 ] ||
            { echo "no ustar magic at $off"; return 1; }
        typ=$(od -An -tx1 -j $((off + 156)) -N 1 "$img" | tr -d ' \n')
        [ "$typ" = 30 ] || [ "$typ" = 00 ] || { echo "member type $typ at $off"; return 1; }
        size=$((8#$(dd if="$img" bs=1 skip=$((off + 124)) count=11 2>/dev/null)))
        names+="$(dd if="$img" bs=1 skip="$off" count=100 2>/dev/null | tr -d '\0') "
        off=$((off + 512 + (size + 511) / 512 * 512))
        [ "$off" -le "$total" ] || { echo "member data runs past the end"; return 1; }
    done
    echo "$names"
}
export -f ustar_walk
check "guest.img: every header has the ustar magic, type 0, in-bounds size" ustar_walk "$out/guest.img"
check "guest.img members are kernel initramfs cmdline [vmlinux]" \
    bash -c 'm=$(ustar_walk "$1") && { [ "$m" = "kernel initramfs cmdline " ] || [ "$m" = "kernel initramfs cmdline vmlinux " ]; }' _ "$out/guest.img"
mkdir "$tmp/img" && tar -xf "$out/guest.img" -C "$tmp/img"
check "guest.img kernel = out/vmlinuz" cmp "$tmp/img/kernel" "$out/vmlinuz"
check "guest.img initramfs = out/initramfs.cpio.gz" cmp "$tmp/img/initramfs" "$out/initramfs.cpio.gz"
check "guest.img cmdline starts with console=ttyS0" grep -q '^console=ttyS0' "$tmp/img/cmdline"

# verify-manifest.sh
mkdir -p "$tmp/share/vfsvm-work/sub"
printf 'abc' > "$tmp/share/vfsvm-work/a"; printf 'hello\n' > "$tmp/share/vfsvm-work/sub/b"
( cd "$tmp/share/vfsvm-work" && for f in a sub/b; do echo "$f $(stat -c %s "$f") $(md5sum < "$f" | cut -d' ' -f1)"; done ) > "$tmp/share/vfsvm-manifest.txt"
check "verify-manifest accepts a matching tree" "$harness/verify-manifest.sh" "$tmp/share"
printf 'abd' > "$tmp/share/vfsvm-work/a"
refuse "verify-manifest catches changed bytes" "$harness/verify-manifest.sh" "$tmp/share"
printf 'abc' > "$tmp/share/vfsvm-work/a"; echo x > "$tmp/share/vfsvm-work/extra"
refuse "verify-manifest catches an extra file" "$harness/verify-manifest.sh" "$tmp/share"
rm "$tmp/share/vfsvm-work/extra" "$tmp/share/vfsvm-work/sub/b"
refuse "verify-manifest catches a missing file" "$harness/verify-manifest.sh" "$tmp/share"

# boot-qemu.sh argument checking (no QEMU started)
refuse "boot-qemu rejects --tag before --socket" "$harness/boot-qemu.sh" --tag x --dry-run
refuse "boot-qemu rejects --packed maybe" "$harness/boot-qemu.sh" --packed maybe --dry-run
refuse "boot-qemu rejects a 37-byte tag" "$harness/boot-qemu.sh" --socket /x --tag "$(printf 'a%.0s' $(seq 37))" --dry-run
refuse "boot-qemu rejects a command line over 2047 bytes" "$harness/boot-qemu.sh" --cmd "$(head -c 2000 /dev/zero | tr '\0' x)" --dry-run
check "boot-qemu --dry-run builds the vhost-user-fs devices and cmdline" \
    bash -c 'c=$("$1" --dry-run --socket /s1 --tag one --socket /s2 --tag two --ro --packed on --queues 1 --queue-size 256 --cmd "echo a b")
             for w in "tag=one" "tag=two" "packed=on" "num-request-queues=1" "queue-size=256" "share=on" \
                      "vfsvm.mount=one:/mnt" "vfsvm.mount=two:/mnt2:ro" "vfsvm.cmd64=$(printf "echo a b" | base64 -w0)"; do
                 printf "%s" "$c" | sed "s/\\\\//g" | grep -qF -- "$w" || { echo "missing $w in: $c"; exit 1; }
             done' _ "$harness/boot-qemu.sh"

summary selftest
