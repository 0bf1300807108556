#!/bin/sh
# tree-guest.sh — nightly's 2,000-file tree, run in the guest as the share's
# .vfsvm-test.sh (busybox). Builds the tree in the guest's RAM (/tmp):
# 10 top directories × 10 subdirectories × 20 files, sizes cycling through
# 0, 1, 17, 511 bytes, one page ±1, two pages +1, 64 KiB, 128 KiB +1, random
# bytes; writes the manifest ("name size md5", the format verify-manifest.sh
# checks) from the RAM copy, so it owes nothing to the share; then copies the
# tree into the share's vfsvm-work and syncs. The host checks every file.
set -e
root=$(pwd)
T=/tmp/tree
mkdir -p "$T"
cd "$T"
set -- 0 1 17 511 4095 4096 4097 8193 65536 131073
n=0
for a in 0 1 2 3 4 5 6 7 8 9; do
    for b in 0 1 2 3 4 5 6 7 8 9; do
        mkdir -p "d$a/s$b"
        for f in 00 01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16 17 18 19; do
            i=$(( n % 10 + 1 ))
            eval "sz=\${$i}"
            head -c "$sz" /dev/urandom >"d$a/s$b/f$f"
            n=$((n + 1))
        done
    done
done
find . -type f | sed 's#^\./##' | LC_ALL=C sort >/tmp/names
xargs stat -c '%n %s' </tmp/names >/tmp/sizes
xargs md5sum </tmp/names | awk '{print $2, $1}' >/tmp/sums
awk 'NR==FNR {s[$1]=$2; next} {print $1, s[$1], $2}' /tmp/sizes /tmp/sums >/tmp/manifest
echo "tree-guest: $(wc -l </tmp/manifest) files, $(du -s . | cut -f1) KiB in RAM"
rm -rf "$root/vfsvm-work"
cp -r "$T" "$root/vfsvm-work"
cp /tmp/manifest "$root/vfsvm-manifest.txt"
sync
echo "tree-guest: copied into the share"
