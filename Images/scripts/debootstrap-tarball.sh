#!/bin/bash
# debootstrap-tarball.sh --suite SUITE --variant VARIANT --output FILE.tar.zst
#                        [--mirror URL]
#
# The one step of the root file system build that needs the network and root:
# debootstrap (Debian's packages, signatures checked against Debian's archive
# keyring) into a temporary directory, then the downloaded .debs and the apt
# lists dropped (the guest has no network; about 80 MB) and the tree packed as
# a zstd tar that keeps owners, modes, device nodes and xattrs. Everything
# after this (build-rootfs.sh) works from the tarball, offline.
# The mirror is the host's own for SUITE, read from /etc/apt/sources.list and
# /etc/apt/sources.list.d/*.list / *.sources, unless --mirror says otherwise.
set -euo pipefail

die() { echo "debootstrap-tarball: $*" >&2; exit 1; }
suite="" variant="" output="" mirror=""
while [ $# -gt 0 ]; do
    case $1 in
        --suite|--variant|--output|--mirror)
            [ $# -ge 2 ] || die "$1 needs a value"
            declare "${1#--}=$2"; shift 2 ;;
        *) die "unknown argument '$1'" ;;
    esac
done
[ -n "$suite" ] && [ -n "$variant" ] && [ -n "$output" ] ||
    die "usage: debootstrap-tarball.sh --suite SUITE --variant VARIANT --output FILE.tar.zst [--mirror URL]"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root (it creates device nodes and chroots)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (make -C Images deps)"

# host_mirror SUITE: the first "deb" source of the host that serves SUITE.
host_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENT...
        awk -v s="$1" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                     if ($(i + 1) == s) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822 stanzas separated by blank lines: Types, URIs, Suites, Enabled
        awk -v s="$1" 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " s " ") && uris != "") { split(uris, u, " "); print u[1]; exit }
                                          types = uris = suites = enabled = "" }
                       /^[ \t]*$/ { flush(); next }
                       /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
                       /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
                       /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
                       /^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = tolower($0) }
                       END { flush() }' "$f"
    done | head -n1
}
[ -n "$mirror" ] || mirror=$(host_mirror "$suite")
[ -n "$mirror" ] || die "no apt source for '$suite' in /etc/apt/sources.list*; name one with --mirror (ROOTFS_MIRROR=)"

out_dir=$(cd "$(dirname "$output")" && pwd)
# Beside the output (same file system; /tmp may be noexec or small).
work=$(mktemp -d "$out_dir/debootstrap.XXXXXX")
cleanup() {
    # debootstrap mounts proc/sys in the target and may leave them behind
    # when it fails: unmount whatever is under the work directory, deepest first.
    local m
    for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

echo "debootstrap-tarball: debootstrap --variant=$variant $suite from $mirror (downloads about 30 MB; log: $work/debootstrap.log)"
start=$SECONDS
if ! debootstrap --variant="$variant" --arch=amd64 "$suite" "$work/root" "$mirror" > "$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [ -f "$work/root/debootstrap/debootstrap.log" ] && tail -n 30 "$work/root/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* "$work/root/etc/resolv.conf"
mkdir -p "$work/root/var/lib/apt/lists/partial"
tar --zstd --sort=name --numeric-owner --xattrs --xattrs-include='*' -C "$work/root" -cpf "$work/tar" .
mv "$work/tar" "$output"
echo "debootstrap-tarball: $(grep -c '^Status: install ok installed' "$work/root/var/lib/dpkg/status") packages," \
     "$(du -sm "$work/root" | cut -f1) MiB, $((SECONDS - start)) s -> $output ($(stat -c %s "$output") bytes)"
