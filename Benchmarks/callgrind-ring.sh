#!/bin/sh
# Instructions per FUSE request on the device side of `vfsvm serve`, below
# the kick: virtqueue pop, queue runner, virtio-fs chain handler, FUSEServer,
# PassthroughFileSystem, used-ring push and the interrupt decision (not the
# eventfd system calls), counted exactly by valgrind's callgrind inside
# QueueRunner.processAvailable only (--toggle-collect), for a batch of 1 and
# of 32 chains per pass, split and packed rings. Runs ring-request-loop
# (Sources/ring-request-loop).
#
#   Benchmarks/callgrind-ring.sh [path to a ring-request-loop binary]
#
# Without an argument it builds the release binary. Debug info is stripped
# from a copy first (Debian 12's valgrind 3.19 cannot read Swift 6's DWARF 5).
set -eu
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    bin=$1
else
    swift build -c release --product ring-request-loop >/dev/null
    bin=.build/release/ring-request-loop
fi
command -v valgrind >/dev/null || { echo "callgrind-ring: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d /tmp/vfsvm-callgrind-ring-XXXXXX)
trap 'rm -rf "$work"' EXIT
objcopy --strip-debug "$bin" "$work/loop"
total=3200
printf '%-8s %-7s %6s %12s\n' request ring batch "Ir/request"
for op in getattr lookup read; do
    for layout in split packed; do
        for batch in 1 32; do
            passes=$((total / batch))
            out="$work/$op.$layout.$batch"
            valgrind --tool=callgrind --toggle-collect='*processAvailable*' --callgrind-out-file="$out.out" \
                "$work/loop" $op $batch $passes $layout 2>"$out.log" || {
                echo "callgrind-ring: $op $batch $layout failed:" >&2; tail -5 "$out.log" >&2; exit 1; }
            ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out.log")
            printf '%-8s %-7s %6d %12d\n' $op $layout $batch $((ir / total))
        done
    done
done
