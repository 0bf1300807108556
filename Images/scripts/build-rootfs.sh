#!/bin/bash
# build-rootfs.sh --tarball FILE --init FILE --init-lib FILE --busybox FILE
#                 [--extra FILE]... [--deb FILE]... (--tree DIR | --image FILE --size SIZE)
#
# Makes the vfsvm Debian root file system from a debootstrap tarball
# (debootstrap-tarball.sh), offline:
#   --tree DIR               as a directory (for a virtio-fs root); replaced whole
#   --image FILE --size N    as a raw ext4 disk of N bytes (e.g. 512M), made
#                            with mkfs.ext4 -d: no loop device, no mount
# Both get the same additions to Debian's tree:
#   /sbin/vfsvm-init, /sbin/init -> vfsvm-init   --init (rootfs-init.sh)
#   /lib/vfsvm/init-lib.sh                       --init-lib
#   /usr/lib/vfsvm/bin/{busybox,poweroff,cttyhack}  for the init (minbase has no poweroff)
#   /usr/local/bin/NAME                          each --extra FILE (static helpers)
#   each --deb FILE installed with dpkg --root (offline; a package of the
#   same suite whose dependencies minbase has, e.g. acl for setfacl/getfacl)
#   /etc/hostname (vfsvm), /etc/fstab (no entries: the initramfs mounts the
#   root), /etc/vfsvm-rootfs (what it was built from)
# Not byte-reproducible: mkfs.ext4 -d copies each file's ctime (the time of
# the extraction) and picks a fresh UUID.
set -euo pipefail

die() { echo "build-rootfs: $*" >&2; exit 1; }
tarball="" init="" initlib="" busybox="" tree="" image="" size="" extras=() debs=()
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case $1 in
        --tarball) tarball=$2 ;;
        --init) init=$2 ;;
        --init-lib) initlib=$2 ;;
        --busybox) busybox=$2 ;;
        --extra) [ -x "$2" ] || die "--extra: '$2' is not executable"; extras+=("$2") ;;
        --deb) [ -f "$2" ] || die "--deb: no such file '$2'"; debs+=("$2") ;;
        --tree) tree=$2 ;;
        --image) image=$2 ;;
        --size) size=$2 ;;
        *) die "unknown argument '$1'" ;;
    esac
    shift 2
done
[ -f "$tarball" ] || die "--tarball: no such file '$tarball'"
[ -f "$init" ] || die "--init: no such file '$init'"
[ -f "$initlib" ] || die "--init-lib: no such file '$initlib'"
[ -x "$busybox" ] || die "--busybox: '$busybox' is not executable"
if [ -n "$tree" ] && [ -n "$image" ]; then die "give one of --tree DIR and --image FILE, not both"; fi
if [ -z "$tree" ] && [ -z "$image" ]; then die "give --tree DIR or --image FILE"; fi
if [ -n "$image" ]; then
    [[ $size =~ ^[1-9][0-9]*[KMG]$ ]] || die "--image needs --size like 512M (got '${size}')"
fi
[ "$(id -u)" -eq 0 ] || die "needs root: the tree keeps root-owned files, setuid bits and device nodes"

dest=${tree:-$image}
stage=$(mktemp -d "$(dirname "$dest")/.rootfs-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
tar --zstd --numeric-owner --xattrs --xattrs-include='*' -C "$stage" -xpf "$tarball"
[ -x "$stage/usr/bin/dpkg" ] || die "$tarball does not hold a Debian tree (no usr/bin/dpkg)"
[ ! -e "$stage/sbin/init" ] && [ ! -L "$stage/sbin/init" ] ||
    die "$tarball already has an /sbin/init; this script installs its own"

# Directory paths through the tree's own /sbin -> usr/sbin and /lib -> usr/lib
# links (relative, so they resolve inside the stage).
install -m 0755 "$init" "$stage/sbin/vfsvm-init"
ln -s vfsvm-init "$stage/sbin/init"
install -D -m 0644 "$initlib" "$stage/lib/vfsvm/init-lib.sh"
install -D -m 0755 "$busybox" "$stage/usr/lib/vfsvm/bin/busybox"
for a in poweroff cttyhack; do ln -s busybox "$stage/usr/lib/vfsvm/bin/$a"; done
for x in "${extras[@]}"; do install -m 0755 "$x" "$stage/usr/local/bin/$(basename "$x")"; done
# dpkg of the host, rooted in the stage (its maintainer scripts run chrooted
# into it): the package is unpacked through the tree's merged-/usr links and
# recorded in its dpkg status like any other.
for d in "${debs[@]}"; do
    dpkg --root="$(realpath "$stage")" --install "$(realpath "$d")" >/dev/null ||
        die "dpkg --root could not install $(basename "$d") (its dependencies must be in the tarball)"
done
echo vfsvm > "$stage/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvfsvm\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$stage/etc/hosts"
echo "# The vfsvm initramfs mounts the root (root=/dev/vda or rootfstype=virtiofs root=TAG); nothing else." > "$stage/etc/fstab"
{
    echo "tarball=$(basename "$tarball")"
    echo "packages=$(grep -c '^Status: install ok installed' "$stage/var/lib/dpkg/status")"
} > "$stage/etc/vfsvm-rootfs"
# Fixed mtimes for what was added here, like the tarball's own files.
touch -h -d @0 "$stage/sbin/vfsvm-init" "$stage/sbin/init" "$stage/lib/vfsvm" "$stage/lib/vfsvm/init-lib.sh" \
    "$stage/usr/lib/vfsvm" "$stage/usr/lib/vfsvm/bin" "$stage/usr/lib/vfsvm/bin/"* "$stage/usr/local/bin" \
    "$stage/usr/local/bin/"* "$stage/etc/hostname" "$stage/etc/hosts" "$stage/etc/fstab" "$stage/etc/vfsvm-rootfs"

mib=$(du -sm "$stage" | cut -f1)
if [ -n "$tree" ]; then
    rm -rf "$tree"
    mv "$stage" "$tree"
    trap - EXIT
    echo "build-rootfs: $mib MiB tree -> $tree"
    exit 0
fi

rm -f "$image"
truncate -s "$size" "$image"
mkfs.ext4 -q -F -L vfsvm-root -E root_owner=0:0 -d "$stage" "$image" ||
    die "mkfs.ext4 -d failed (is --size $size large enough for $mib MiB?)"
e2fsck -fn "$image" > "$stage/fsck.log" 2>&1 || { cat "$stage/fsck.log" >&2; die "e2fsck found errors in $image"; }
used=$(dumpe2fs -h "$image" 2>/dev/null | awk -F: '/^Block count/ { total = $2 } /^Free blocks/ { free = $2 } /^Block size/ { bs = $2 }
                                              END { printf "%d MiB used of %d MiB", (total - free) * bs / 1048576, total * bs / 1048576 }')
echo "build-rootfs: $mib MiB tree -> $image ($used)"
