#!/bin/bash
# `vfsvm mount` against the host directory behind it, side by side in one
# run: the same operations on the backing directory (native), on a vfsvm
# mount with the synchronous I/O engine, and on one with io_uring, printed
# with ratios to native (Benchmarks/fs-bench.py).
#
#   bench-mount.sh PATH-TO-vfsvm [--quick] [--runs N]
set -eu
VFSVM=$(realpath "${1:?usage: bench-mount.sh PATH-TO-vfsvm [--quick] [--runs N]}")
shift
here=$(cd "$(dirname "$0")" && pwd)
top=$(mktemp -d /var/tmp/vfsvm-bench.XXXXXX)   # /var/tmp: on disk, not tmpfs
pids=()
cleanup() {
    for m in "$top"/mnt-*; do umount -l "$m" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$top"
}
trap cleanup EXIT
mkdir -p "$top/host" "$top/mnt-sync" "$top/mnt-uring"
mkdir -p "$top/host/native" "$top/host/sync" "$top/host/uring"
for engine in sync uring; do
    "$VFSVM" mount --share "$top/host/$engine" "$top/mnt-$engine" --io-engine "$engine" -o cache=auto \
        > "$top/$engine.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 100); do
    grep -q " $top/mnt-sync fuse.vfsvm " /proc/mounts && grep -q " $top/mnt-uring fuse.vfsvm " /proc/mounts && break
    sleep 0.1
done
echo "bench-mount: vfsvm $("$VFSVM" --version), $(nproc) CPUs, kernel $(uname -r)"
echo "bench-mount: native = the backing directory on $(df --output=fstype "$top/host" | tail -1); vfsvm-sync/vfsvm-uring = vfsvm mount, cache=auto, 4 worker threads"
python3 "$here/fs-bench.py" "$@" native="$top/host/native" vfsvm-sync="$top/mnt-sync" vfsvm-uring="$top/mnt-uring"
