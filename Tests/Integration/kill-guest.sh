#!/bin/sh
# kill-guest.sh — nightly's "guest killed mid-write", run in the guest as the
# share's .vfsvm-test.sh (busybox). First durable files: four random files
# and the 1 MiB block the big file repeats, made in RAM, copied into
# vfsvm-work, listed in vfsvm-manifest.txt (md5 from the RAM copies) and
# synced, then the marker durable-done (synced). Then it writes big.bin
# until the host kills the VM: chunk i is the line "chunk %08d\n" followed by
# the block, so the host can check that whatever reached the share is a
# prefix of that stream.
set -e
W=$(pwd)
mkdir -p /tmp/k "$W/vfsvm-work"
head -c 1048576 /dev/urandom >/tmp/k/block
for i in 1 2 3 4; do head -c $((i * 300000 + 7)) /dev/urandom >"/tmp/k/durable-$i"; done
cd /tmp/k
md5sum block durable-* | awk '{print $2, $1}' | while read -r n m; do echo "$n $(stat -c %s "$n") $m"; done >/tmp/manifest
cp block durable-* "$W/vfsvm-work/"
cp /tmp/manifest "$W/vfsvm-manifest.txt"
sync
echo ready >"$W/durable-done"
sync
echo "kill-guest: durable files synced, writing big.bin until killed"
i=0
while :; do
    printf 'chunk %08d\n' $i
    cat /tmp/k/block
    i=$((i + 1))
done >"$W/big.bin"
