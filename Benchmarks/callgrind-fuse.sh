#!/bin/sh
# Instructions per FUSE request (GETATTR, LOOKUP, LOOKUP of a missing name,
# READ and WRITE of 4 KiB, READDIRPLUS of 200 entries) through FUSEServer and the
# passthrough file system, counted exactly by valgrind's callgrind (the
# count does not move with the machine's load). Runs fuse-request-loop
# (Sources/fuse-request-loop) with N=1000 and N=11000 (READDIRPLUS: 100
# and 1100) and divides the difference by the difference, so set-up
# cancels out.
#
#   Benchmarks/callgrind-fuse.sh [path to a fuse-request-loop binary]
#
# CALLGRIND_OPS picks operations (default: all six). Kernel file handles are
# off, as in `vfsvm serve`; FUSE_LOOP_FILE_HANDLES=prefer turns them on.
#
# Without an argument it builds the release binary (callgrind-common.sh
# does that, and strips a copy's debug info for valgrind).
tool=callgrind-fuse product=fuse-request-loop
. "$(dirname "$0")/callgrind-common.sh"
for op in ${CALLGRIND_OPS:-getattr lookup lookup-miss read write readdirplus}; do
    lo=1000 hi=11000
    [ $op = readdirplus ] && lo=100 hi=1100
    for n in $lo $hi; do
        valgrind --tool=callgrind --callgrind-out-file="$work/$op.$n.out" "$work/loop" $op $n 2>"$work/$op.$n.log" || {
            echo "callgrind-fuse: $op $n failed:" >&2; tail -5 "$work/$op.$n.log" >&2; exit 1; }
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/$op.$n.log" >"$work/$op.$n.ir"
    done
    a=$(cat "$work/$op.$lo.ir"); b=$(cat "$work/$op.$hi.ir")
    echo "$op: $(( (b - a) / (hi - lo) )) instructions per request"
done
