#!/bin/sh
# extract-vmlinux.sh BZIMAGE OUTPUT
#
# Writes the uncompressed kernel ELF (vmlinux) carried inside an x86 bzImage.
# The setup header tells where the compressed payload lies (boot protocol
# 2.08+: payload_offset at 0x248 and payload_length at 0x24c, both relative to
# the start of the protected-mode code, which follows (setup_sects + 1) * 512
# bytes of real-mode setup). The kernel build appends the uncompressed size as
# a little-endian u32 to the LZ4 stream; it is dropped before decompression and
# used to check the result. Other compressors (gzip, xz, zstd) are handled by
# their magic as well. The result must be an x86-64 ELF with a PVH entry note
# (Xen ELF note type 0x12, XEN_ELFNOTE_PHYS32_ENTRY).
set -eu

die() { echo "extract-vmlinux: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: extract-vmlinux.sh BZIMAGE OUTPUT"
img=$1 out=$2
[ -f "$img" ] || die "no such file: $img"

# u8/u16/u32 little-endian readers (od prints in host order; this is x86-64).
rd() { od -An -tu"$2" -j "$1" -N "$2" "$img" | tr -d ' \n'; }

magic=$(od -An -c -j 0x202 -N 4 "$img" 2>/dev/null | tr -d ' \n')
[ "$magic" = "HdrS" ] || die "$img: no bzImage setup header (HdrS magic missing)"
version=$(rd 0x206 2)
[ "$version" -ge $((0x208)) ] || die "$img: boot protocol $version too old (need 2.08 for payload_offset)"
setup_sects=$(rd 0x1f1 1)
[ "$setup_sects" -ne 0 ] || setup_sects=4
payload_offset=$(rd 0x248 4)
payload_length=$(rd 0x24c 4)
size=$(stat -c %s "$img")
start=$(( (setup_sects + 1) * 512 + payload_offset ))
[ "$payload_length" -gt 4 ] && [ $((start + payload_length)) -le "$size" ] ||
    die "$img: payload [$start, +$payload_length) outside the file ($size bytes)"

payload() { tail -c +$((start + 1)) "$img" | head -c "$1"; }
head4=$(payload 4 | od -An -tx1 | tr -d ' \n')
tmp="$out.part"
trap 'rm -f "$tmp"' EXIT
case $head4 in
    02214c18)
        # LZ4 legacy frame + appended size.
        payload $((payload_length - 4)) | lz4 -dc > "$tmp" || die "lz4 failed"
        expect=$(tail -c +$((start + payload_length - 3)) "$img" | head -c 4 | od -An -tu4 | tr -d ' \n')
        got=$(stat -c %s "$tmp")
        [ "$got" -eq "$expect" ] || die "decompressed $got bytes, header says $expect"
        ;;
    1f8b*) payload "$payload_length" | gzip -dc > "$tmp" 2>/dev/null || [ -s "$tmp" ] || die "gzip failed" ;;
    fd377a58) payload "$payload_length" | xz -dc > "$tmp" 2>/dev/null || [ -s "$tmp" ] || die "xz failed" ;;
    28b52ffd) payload "$payload_length" | zstd -dc > "$tmp" 2>/dev/null || [ -s "$tmp" ] || die "zstd failed" ;;
    *) die "$img: unknown payload compression (magic $head4)" ;;
esac

readelf -h "$tmp" 2>/dev/null | grep -q 'Machine: *Advanced Micro Devices X86-64' ||
    die "payload is not an x86-64 ELF"
readelf -n "$tmp" | grep -Eq 'Xen[[:space:]]+0x[0-9a-f]+[[:space:]]+.*\(0x00000012\)|XEN_ELFNOTE_PHYS32_ENTRY' ||
    die "vmlinux has no PVH entry note (Xen ELF note type 0x12)"
mv "$tmp" "$out"
trap - EXIT
echo "extract-vmlinux: $(stat -c %s "$out") bytes, x86-64 ELF with PVH note -> $out"
