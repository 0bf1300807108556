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
# Three vfsvm mounts: every READ/WRITE through the server with each I/O
# engine, and FUSE passthrough (the kernel does open files' I/O itself).
configs=(sync uring passthrough)
declare -A flags=([sync]="--io-engine sync --no-passthrough" [uring]="--io-engine uring --no-passthrough"
                  [passthrough]="--io-engine uring --passthrough")
mkdir -p "$top/host/native"
for c in "${configs[@]}"; do
    mkdir -p "$top/host/$c" "$top/mnt-$c"
    # shellcheck disable=SC2086
    "$VFSVM" mount --share "$top/host/$c" "$top/mnt-$c" ${flags[$c]} -o cache=auto > "$top/$c.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 100); do
    all=1
    for c in "${configs[@]}"; do grep -q " $top/mnt-$c fuse.vfsvm " /proc/mounts || all=0; done
    [ $all = 1 ] && break
    sleep 0.1
done
echo "bench-mount: vfsvm $("$VFSVM" --version), $(nproc) CPUs, kernel $(uname -r)"
echo "bench-mount: native = the backing directory on $(df --output=fstype "$top/host" | tail -1); vfsvm-sync/vfsvm-uring = vfsvm mount --no-passthrough with each I/O engine; vfsvm-passthrough = FUSE passthrough; cache=auto, 4 worker threads"
python3 "$here/fs-bench.py" "$@" native="$top/host/native" vfsvm-sync="$top/mnt-sync" vfsvm-uring="$top/mnt-uring" \
    vfsvm-passthrough="$top/mnt-passthrough"
grep -h "passthrough" "$top/passthrough.log" || echo "bench-mount: vfsvm-passthrough: the kernel did not take passthrough (see $top/passthrough.log)"
