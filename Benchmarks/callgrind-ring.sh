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
# CALLGRIND_OPS picks operations (default: getattr lookup read read-linux;
# read-linux is READ with Linux's reply layout, out-header and data in two
# buffers).
#
# Without an argument it builds the release binary (callgrind-common.sh
# does that, and strips a copy's debug info for valgrind).
tool=callgrind-ring product=ring-request-loop
. "$(dirname "$0")/callgrind-common.sh"
total=3200
printf '%-8s %-7s %6s %12s\n' request ring batch "Ir/request"
for op in ${CALLGRIND_OPS:-getattr lookup read read-linux}; do
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
