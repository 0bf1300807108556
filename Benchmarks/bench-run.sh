#!/bin/bash
# bench-run.sh — what `vfsvm run` costs over starting the same VM by hand:
# the time from the start to the guest's end marker (VFSVM-GUEST-EXIT) for
#   run:  vfsvm run --share DIR:fs Images/out/guest.img   (--accel auto: the
#         calibration, the private directory, the serve child, QEMU)
#   hand: vfsvm serve --socket-path ... & then qemu-system-x86_64 with the
#         same command line (memory-backend-memfd in place of vfsvm's memfd)
# first for an empty command (boot, mount, power off) REPS times each,
# alternating, then the guest workload (BIG_MB=16, NFILES=300) WREPS times
# each. Prints the medians and the ratio run/hand.
#
#   bench-run.sh PATH-TO-vfsvm [REPS [WREPS]]
set -euo pipefail
VFSVM=$(realpath "${1:?usage: bench-run.sh PATH-TO-vfsvm [REPS]}")
reps=${2:-3}
wreps=${3:-1}
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/Images/out
here=$top/Tests/Integration
work=$(mktemp -d /tmp/vfsvm-benchrun.XXXXXX)
trap 'rm -rf "$work"' EXIT
share=$work/share
mkdir -p "$share"

# stamp FILE: copies stdin to FILE, and the time the marker arrived to FILE.t
stamp() { while IFS= read -r line; do printf '%s\n' "$line" >>"$1"; case $line in VFSVM-GUEST-EXIT*) date +%s.%N >"$1.t" ;; esac; done; }

run_vfsvm() { # APPEND -> seconds
    : >"$work/c"; rm -f "$work/c.t"
    local t0; t0=$(date +%s.%N)
    "$VFSVM" run --share "$share:fs" --append "$1" "$out/guest.img" </dev/null 2>"$work/err" | stamp "$work/c"
    [ -f "$work/c.t" ] || { echo "bench-run: vfsvm run gave no end marker: $(tail -3 "$work/err")" >&2; exit 1; }
    echo "$(cat "$work/c.t") - $t0" | bc
}
run_hand() { # APPEND -> seconds
    : >"$work/c"; rm -f "$work/c.t" "$work/sock"
    local line t0 serve
    line=$("$VFSVM" run --print-qemu-cmdline --kernel "$out/vmlinuz" --initrd "$out/initramfs.cpio.gz" \
        --cmdline "$(cat "$out/cmdline") vfsvm.mount=fs:/mnt/fs $1" --share "$share:fs" "$out/guest.img")
    line=${line//memory-backend-file,id=mem,size=512M,mem-path=\/proc\/self\/fd\/3,share=on/memory-backend-memfd,id=mem,size=512M,share=on}
    line=${line//\/tmp\/vfsvm-run.XXXXXX\/fs0.sock/$work/sock}
    t0=$(date +%s.%N)
    "$VFSVM" serve --socket-path "$work/sock" --shared-dir "$share" --request-queues 1 --log-level warn 2>>"$work/err" &
    serve=$!
    while [ ! -S "$work/sock" ]; do sleep 0.01; done
    eval "$line" </dev/null 2>>"$work/err" | stamp "$work/c"
    wait $serve || true
    [ -f "$work/c.t" ] || { echo "bench-run: hand-written QEMU gave no end marker: $(tail -3 "$work/err")" >&2; exit 1; }
    echo "$(cat "$work/c.t") - $t0" | bc
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

boot_cmd="vfsvm.cmd=true"
runs="" hands=""
for i in $(seq "$reps"); do
    r=$(run_vfsvm "$boot_cmd"); h=$(run_hand "$boot_cmd")
    echo "bench-run: boot $i: vfsvm run $r s, by hand $h s"
    runs+=" $r" hands+=" $h"
done
rm=$(echo "$runs" | median) hm=$(echo "$hands" | median)
echo "bench-run: boot to end marker, median of $reps: vfsvm run $rm s, by hand $hm s, ratio $(echo "scale=3; $rm / $hm" | bc)"

cp "$here/guest-workload.sh" "$share/.vfsvm-test.sh"
cp "$here/check.sh" "$share/.vfsvm-check.sh"
printf 'BIG_MB=16\nNFILES=300\nREQUIRE_XATTR=0\n' >"$share/.vfsvm-test.env"
runs="" hands=""
for i in $(seq "$wreps"); do
    rm -rf "$share/vfsvm-work"
    r=$(run_vfsvm "vfsvm.cmd=test"); grep -q "status=0" "$work/c" || echo "bench-run: the workload failed under vfsvm run" >&2
    rm -rf "$share/vfsvm-work"
    h=$(run_hand "vfsvm.cmd=test"); grep -q "status=0" "$work/c" || echo "bench-run: the workload failed by hand" >&2
    echo "bench-run: workload $i: vfsvm run $r s, by hand $h s"
    runs+=" $r" hands+=" $h"
done
rm=$(echo "$runs" | median) hm=$(echo "$hands" | median)
echo "bench-run: guest workload, median of $wreps: vfsvm run $rm s, by hand $hm s, ratio $(echo "scale=3; $rm / $hm" | bc)"
