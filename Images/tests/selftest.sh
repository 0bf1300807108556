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

for f in vmlinuz vmlinux initramfs.cpio.gz cmdline guest.img rootfs.img rootfs.size rootfs.stamp; do
    [ -s "$out/$f" ] || { [ "$f" = rootfs.stamp ] && [ -e "$out/$f" ]; } ||
        { bad "$out/$f exists" "run make -C Images first"; summary selftest; exit 1; }
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
check "initramfs /lib/vfsvm/init-lib.sh is the repository's init-lib.sh" cmp "$tmp/ird/lib/vfsvm/init-lib.sh" "$here/init-lib.sh"
check "load-order has virtio_blk; ext4 is loaded or built into the kernel" \
    bash -c 'grep -qx virtio_blk "$1/lib/modules/load-order" &&
             { grep -qx ext4 "$1/lib/modules/load-order" || grep -q "/ext4\.ko" "$2"/lib/modules/*/modules.builtin; }' _ "$tmp/ird" "$(ls -d "$here"/cache/linux-image-*/ | head -n1)"
check "init.sh parses (busybox sh -n)" busybox sh -n "$here/init.sh"
check "init-lib.sh parses (busybox sh -n, dash -n)" bash -c 'busybox sh -n "$1" && dash -n "$1"' _ "$here/init-lib.sh"
check "rootfs-init.sh parses (dash -n)" dash -n "$here/rootfs-init.sh"
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

# init-lib.sh's command line parser, in both shells that run it (busybox sh
# in the initramfs, Debian's dash in the root file system)
parse() { # parse SHELL CMDLINE: prints what parse_cmdline set, or "bad"
    printf '%s\n' "$2" > "$tmp/cmdline"
    $1 -c '. "$1"; if parse_cmdline "$2" >/dev/null; then
               printf "root=%s type=%s ro=%s init=%s have_cmd=%s cmd=%s mounts=%s\n" "$root" "$rootfstype" "$root_ro" "$init" "$have_cmd" "$cmd" "$mounts"
           else echo bad; fi' _ "$here/init-lib.sh" "$tmp/cmdline"
}
export -f parse; export tmp here
for sh in "busybox sh" dash; do
    check "$sh: root=/dev/vda ro, vfsvm.mount and vfsvm.cmd64 parsed" \
        bash -c '[ "$(parse "$1" "console=ttyS0 root=/dev/vda ro vfsvm.mount=a:/m:ro vfsvm.cmd64=$(printf "echo a  b" | base64 -w0)")" = \
                  "root=/dev/vda type= ro=1 init=/sbin/init have_cmd=1 cmd=echo a  b mounts= a:/m:ro" ]' _ "$sh"
    check "$sh: rootfstype=virtiofs root=TAG rw init=..., default read-write" \
        bash -c '[ "$(parse "$1" "rootfstype=virtiofs root=myroot init=/bin/sh")" = "root=myroot type=virtiofs ro=0 init=/bin/sh have_cmd=0 cmd= mounts=" ] &&
                 [ "$(parse "$1" "root=/dev/vda ro rw" | cut -d" " -f3)" = ro=0 ]' _ "$sh"
    check "$sh: vfsvm.cmd=%XX decoded (a backslash and * kept)" \
        bash -c '[ "$(parse "$1" "vfsvm.cmd=echo%20%5Cn%3B*%25")" = "root= type= ro=0 init=/sbin/init have_cmd=1 cmd=echo \\n;*% mounts=" ]' _ "$sh"
    refuse "$sh: unknown vfsvm.* argument refused" bash -c '[ "$(parse "$1" "vfsvm.bogus=1")" != bad ]' _ "$sh"
    refuse "$sh: bad base64 refused (a character outside the alphabet)" bash -c '[ "$(parse "$1" "vfsvm.cmd64=YW!J")" != bad ]' _ "$sh"
    refuse "$sh: bad base64 refused (truncated)" bash -c '[ "$(parse "$1" "vfsvm.cmd64=YWJjZ")" != bad ]' _ "$sh"
done

# rootfs.img (read with debugfs: no mount) and out/rootfs
img=$out/rootfs.img
dbg() { debugfs -R "$1" "$img" 2>/dev/null; }
export -f dbg; export img
check "rootfs.img: e2fsck -fn finds no errors" e2fsck -fn "$img"
check "rootfs.img: ext4, label vfsvm-root, ROOTFS_SIZE bytes" \
    bash -c 'dumpe2fs -h "$1" 2>/dev/null | grep -q "^Filesystem volume name: *vfsvm-root$" &&
             [ "$(stat -c %s "$1")" = "$(numfmt --from=iec "$(cat "$2")")" ]' _ "$img" "$out/rootfs.size"
check "rootfs.img: /sbin/vfsvm-init is rootfs-init.sh, /lib/vfsvm/init-lib.sh is init-lib.sh" \
    bash -c 'cmp <(dbg "cat /usr/sbin/vfsvm-init") "$1/rootfs-init.sh" && cmp <(dbg "cat /usr/lib/vfsvm/init-lib.sh") "$1/init-lib.sh"' _ "$here"
check "rootfs.img: /sbin/init -> vfsvm-init, init mode 0755, owner root" \
    bash -c '[ "$(dbg "stat /usr/sbin/init" | grep -o "Fast link dest: .*")" = "Fast link dest: \"vfsvm-init\"" ] &&
             dbg "stat /usr/sbin/vfsvm-init" | grep -Eq "Mode: +0755" && dbg "stat /usr/sbin/vfsvm-init" | grep -q "User: *0 *Group: *0"' _
check "rootfs.img: Debian userland (dpkg, dash as /bin/sh) and busybox poweroff for the init" \
    bash -c 'dbg "stat /usr/bin/dpkg" | grep -q "Type: regular" && [ "$(dbg "stat /usr/bin/sh" | grep -o "Fast link dest: .*")" = "Fast link dest: \"dash\"" ] &&
             dbg "stat /usr/lib/vfsvm/bin/busybox" | grep -q "Type: regular" && dbg "stat /usr/lib/vfsvm/bin/poweroff" | grep -q "Type: symlink"' _
check "rootfs.img: setuid root /usr/bin/mount kept (owners and modes from the tarball)" \
    bash -c 'dbg "stat /usr/bin/mount" | grep -Eq "Mode: +04755" && dbg "stat /usr/bin/mount" | grep -q "User: *0 *Group: *0"' _
check "out/rootfs: same init, init-lib, helpers; setuid root mount" \
    bash -c 'cmp "$1/sbin/vfsvm-init" "$2/rootfs-init.sh" && cmp "$1/lib/vfsvm/init-lib.sh" "$2/init-lib.sh" && [ "$(readlink "$1/sbin/init")" = vfsvm-init ] &&
             cmp "$1/usr/local/bin/vfsvm-bench" "$3/vfsvm-bench" && [ "$(stat -c %a:%u:%g "$1/usr/bin/mount")" = 4755:0:0 ]' _ "$out/rootfs" "$here" "$out"
check "out/rootfs and rootfs.img hold the same packages (one tarball)" \
    bash -c 'cmp <(dbg "cat /var/lib/dpkg/status") "$1/var/lib/dpkg/status" && [ "$(grep -c "^Package:" "$1/var/lib/dpkg/status")" -gt 50 ]' _ "$out/rootfs"
check "rootfs.img and out/rootfs: the acl package installed (setfacl/getfacl for rootfs-test's --posix-acl case)" \
    bash -c 'dbg "stat /usr/bin/setfacl" | grep -q "Type: regular" && [ -x "$1/usr/bin/getfacl" ] &&
             grep -A1 "^Package: acl$" "$1/var/lib/dpkg/status" | grep -q "^Status: install ok installed"' _ "$out/rootfs"
check "rootfs has no apt lists or cached .debs (trimmed)" \
    bash -c '[ -z "$(ls "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"*Packages* 2>/dev/null)" ]' _ "$out/rootfs"

# build-rootfs.sh and debootstrap-tarball.sh argument checks; a too small
# image fails and leaves nothing behind
tarball=$(ls "$here"/cache/debootstrap-*.tar.zst | head -n1)
rargs=(--tarball "$tarball" --init "$here/rootfs-init.sh" --init-lib "$here/init-lib.sh" --busybox "$(command -v busybox)")
refuse "build-rootfs rejects --tree with --image" "$here/scripts/build-rootfs.sh" "${rargs[@]}" --tree "$tmp/t" --image "$tmp/i" --size 1G
refuse "build-rootfs rejects --image without a size" "$here/scripts/build-rootfs.sh" "${rargs[@]}" --image "$tmp/i"
refuse "build-rootfs rejects a --deb that does not exist" "$here/scripts/build-rootfs.sh" "${rargs[@]}" --deb "$tmp/none.deb" --tree "$tmp/t"
refuse "build-rootfs rejects a tarball that is not a Debian tree" "$here/scripts/build-rootfs.sh" "${rargs[@]/$tarball/$out/guest.img}" --tree "$tmp/t"
refuse "build-rootfs fails on an image too small for the tree" "$here/scripts/build-rootfs.sh" "${rargs[@]}" --image "$tmp/small.img" --size 16M
check "build-rootfs left no stage directories behind" bash -c '[ -z "$(ls -A "$1" | grep -E "^\.rootfs-stage|^t$")" ]' _ "$tmp"
refuse "debootstrap-tarball needs --suite, --variant and --output" "$here/scripts/debootstrap-tarball.sh" --suite bookworm

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
