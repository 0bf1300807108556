#!/bin/bash
# build-initramfs.sh --kernel-tree DIR --init FILE --init-lib FILE --busybox FILE
#                    [--extra FILE]... --output FILE MODULE...
#
# Builds a gzip-compressed newc cpio archive holding:
#   /init                       the vfsvm init script (busybox sh)
#   /lib/vfsvm/init-lib.sh      what it shares with the root file system's init
#   /bin/busybox + applet links (as `busybox --list-full` names them)
#   /bin/NAME                   each --extra FILE (static programs)
#   /lib/modules/NAME.ko        the named modules and everything they depend
#                               on, decompressed (busybox insmod wants plain .ko)
#   /lib/modules/load-order     module names, dependencies first (a named
#                               module built into the kernel is left out)
#   /etc/vfsvm-kernel-release   the kernel release the modules belong to
# DIR is a dpkg-deb -x tree of a Debian linux-image package. Debian ships no
# modules.dep in the package (postinst runs depmod), so when it is missing it
# is generated inside DIR with `busybox depmod -b`.
set -euo pipefail

die() { echo "build-initramfs: $*" >&2; exit 1; }
ktree="" init="" initlib="" busybox="" output="" extras=()
while [ $# -gt 0 ]; do
    case $1 in
        --kernel-tree) ktree=$2; shift 2 ;;
        --init) init=$2; shift 2 ;;
        --init-lib) initlib=$2; shift 2 ;;
        --busybox) busybox=$2; shift 2 ;;
        --output) output=$2; shift 2 ;;
        --extra) [ -x "$2" ] || die "--extra: '$2' is not executable"; extras+=("$2"); shift 2 ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done
[ -d "$ktree/lib/modules" ] || die "--kernel-tree: no lib/modules in '$ktree'"
[ -f "$init" ] || die "--init: no such file '$init'"
[ -f "$initlib" ] || die "--init-lib: no such file '$initlib'"
[ -x "$busybox" ] || die "--busybox: '$busybox' is not executable"
[ -n "$output" ] || die "--output missing"
[ $# -gt 0 ] || die "no modules named"
file "$busybox" 2>/dev/null | grep -q 'dynamically linked' && die "$busybox is dynamically linked (need busybox-static)"

releases=("$ktree"/lib/modules/*/)
[ ${#releases[@]} -eq 1 ] && [ -d "${releases[0]}" ] || die "expected one kernel release under $ktree/lib/modules"
kver=$(basename "${releases[0]}")
mdir=$ktree/lib/modules/$kver
if [ ! -s "$mdir/modules.dep" ]; then
    echo "build-initramfs: generating modules.dep for $kver with busybox depmod"
    "$busybox" depmod -b "$ktree" "$kver" || die "depmod failed"
    [ -s "$mdir/modules.dep" ] || die "depmod wrote no modules.dep"
fi

# Module names treat '-' and '_' alike; normalise to '_'.
norm() { local n=${1##*/}; n=${n%%.ko*}; echo "${n//-/_}"; }

declare -A path_of=() deps_of=()
while IFS= read -r line; do
    [ -n "$line" ] || continue
    p=${line%%:*}
    n=$(norm "$p")
    path_of[$n]=$p
    d=""
    for dp in ${line#*:}; do d+=" $(norm "$dp")"; done
    deps_of[$n]=$d
done < "$mdir/modules.dep"

declare -A state=()   # 1 = visiting, 2 = done
order=()
visit() {
    local n=$1
    [ -n "${path_of[$n]+x}" ] || die "module '$n' is not in $kver's modules.dep nor built in (misspelt?)"
    case ${state[$n]:-0} in
        2) return ;;
        1) die "dependency cycle through '$n'" ;;
    esac
    state[$n]=1
    local d
    for d in ${deps_of[$n]}; do visit "$d"; done
    state[$n]=2
    order+=("$n")
}
# A named module the kernel has built in (ext4 in Debian's cloud kernel) needs
# no loading; modules.builtin lists those as kernel/.../NAME.ko.
declare -A builtin=()
if [ -f "$mdir/modules.builtin" ]; then
    while IFS= read -r p; do builtin[$(norm "$p")]=1; done < "$mdir/modules.builtin"
fi
for m in "$@"; do
    n=$(norm "$m")
    if [ -z "${path_of[$n]+x}" ] && [ -n "${builtin[$n]+x}" ]; then
        echo "build-initramfs: $n is built into $kver, not a module"
        continue
    fi
    visit "$n"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,mnt,root,etc,lib/modules}
chmod 1777 "$stage/tmp"
install -m 0755 "$busybox" "$stage/bin/busybox"
for a in $("$busybox" --list-full); do
    [ "$a" = bin/busybox ] && continue
    mkdir -p "$stage/$(dirname "$a")"
    # relative link to /bin/busybox from the applet's directory
    up=$(dirname "$a" | sed 's#[^/][^/]*#..#g')
    ln -sf "$up/bin/busybox" "$stage/$a"
done
install -m 0755 "$init" "$stage/init"
install -D -m 0644 "$initlib" "$stage/lib/vfsvm/init-lib.sh"
for x in "${extras[@]}"; do install -m 0755 "$x" "$stage/bin/$(basename "$x")"; done
echo "$kver" > "$stage/etc/vfsvm-kernel-release"
# The kernel opens /dev/console for init before anything is mounted; the
# built-in initramfs usually has it, but do not rely on that.
mknod -m 0600 "$stage/dev/console" c 5 1 2>/dev/null || echo "build-initramfs: note: cannot mknod /dev/console (not root); relying on the kernel's built-in one"

for n in "${order[@]}"; do
    src=$mdir/${path_of[$n]}
    dst=$stage/lib/modules/$n.ko
    case $src in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" > "$dst" ;;
        *.ko.zst) zstd -qdc "$src" > "$dst" ;;
        *.ko.gz) gzip -dc "$src" > "$dst" ;;
        *) die "unknown module file type: $src" ;;
    esac
    echo "$n" >> "$stage/lib/modules/load-order"
done
echo "build-initramfs: kernel $kver, modules in load order: ${order[*]}"

# Reproducible archive: fixed owner and mtime, sorted names, gzip without name/time.
find "$stage" -exec touch -h -d @0 {} +
( cd "$stage" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
      cpio --quiet -o -H newc -R 0:0 --reproducible ) | gzip -n -9 > "$output"
echo "build-initramfs: $(stat -c %s "$output") bytes -> $output"
