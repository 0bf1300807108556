#!/bin/sh
# mkguestimg.sh OUTPUT OUTDIR MEMBER...
# Packs the guest image: a POSIX ustar archive whose members are the regular
# files kernel, initramfs, cmdline and (optionally) vmlinux, taken from OUTDIR
# (vmlinuz, initramfs.cpio.gz, cmdline, vmlinux). Format: Images/README.md.
set -eu
die() { echo "mkguestimg: $*" >&2; exit 1; }
[ $# -ge 3 ] || die "usage: mkguestimg.sh OUTPUT OUTDIR MEMBER..."
output=$1 outdir=$2; shift 2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for m in "$@"; do
    case $m in
        kernel) src=$outdir/vmlinuz ;;
        initramfs) src=$outdir/initramfs.cpio.gz ;;
        cmdline) src=$outdir/cmdline ;;
        vmlinux) src=$outdir/vmlinux ;;
        *) die "unknown member '$m'" ;;
    esac
    [ -f "$src" ] || die "missing $src"
    ln "$src" "$stage/$m" 2>/dev/null || cp "$src" "$stage/$m"
done
# Fixed member order (as given), owner, mode and mtime: the image is reproducible.
tar --format=ustar -C "$stage" --owner=0 --group=0 --numeric-owner \
    --mode=0644 --mtime=@0 -cf "$output" "$@"
echo "mkguestimg: $(stat -c %s "$output") bytes ($*) -> $output"
