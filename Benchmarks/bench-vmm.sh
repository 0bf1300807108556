#!/bin/bash
# bench-vmm.sh — vfsvm's in-process KVM VMM against QEMU on the same
# freestanding guests (Tests/Guests):
#   1. start-up: process start -> the PVH guest's debug-exit, wall and CPU
#      time and peak RSS, median of N runs, `vfsvm run` vs
#      `qemu-system-x86_64 -M microvm -accel kvm` (ratios vfsvm/QEMU);
#   2. FUSE round trips per second seen by the virtio-fs guest (small
#      READs, one in flight), vfsvm run over each transport and ring, and
#      the same guest under QEMU microvm + `vfsvm serve` (vhost-user-fs on
#      virtio-mmio) for comparison.
#
#   Benchmarks/bench-vmm.sh [--runs N] [--reads N] VFSVM_BIN GUESTS_DIR
set -u
runs=20 reads=2000
while [ $# -gt 2 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --reads) reads=$2; shift 2 ;;
        *) echo "bench-vmm: unknown option $1" >&2; exit 64 ;;
    esac
done
VFSVM=$(realpath "${1:?usage: bench-vmm.sh [--runs N] [--reads N] VFSVM_BIN GUESTS_DIR}")
GUESTS=$(realpath "${2:?usage: bench-vmm.sh [--runs N] [--reads N] VFSVM_BIN GUESTS_DIR}")
QEMU=${QEMU:-qemu-system-x86_64}
top=$(mktemp -d /tmp/vfsvm-bench-vmm.XXXXXX)
trap 'kill ${serve_pid:-} 2>/dev/null; rm -rf "$top"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# measure NAME CMD...: N runs under rusage-run (the child's own wall
# clock, CPU and peak RSS at microsecond and KiB resolution); the guest
# must exit 67.
gcc -O2 -o "$top/rusage-run" "$(dirname "$0")/rusage-run.c" || exit 1
measure() {
    local name=$1
    shift
    : >"$top/$name.tsv"
    for _ in $(seq 1 "$runs"); do
        read -r wall cpu rss st < <("$top/rusage-run" "$@")
        if [ "$st" != 67 ]; then echo "bench-vmm: $name exited $st" >&2; exit 1; fi
        echo "$wall $cpu $rss" >>"$top/$name.tsv"
    done
    for col in 1 2 3; do cut -d' ' -f$col "$top/$name.tsv" | median; done | paste -sd' ' >"$top/$name.median"
}

echo "== start-up: process start to the guest's debug-exit ($runs runs, median) =="
measure vfsvm "$VFSVM" run --accel kvm --memory 128M "$GUESTS/hello.elf"
measure qemu "$QEMU" -M microvm -accel kvm -m 128M -nodefaults -no-user-config -display none -serial stdio \
    -device isa-debug-exit,iobase=0x501,iosize=1 -kernel "$GUESTS/hello.elf"
read -r vw vc vr <"$top/vfsvm.median"
read -r qw qc qr <"$top/qemu.median"
printf "%-28s %10s %10s %12s\n" "" "wall ms" "CPU ms" "peak RSS MiB"
printf "%-28s %10.1f %10.1f %12.1f\n" "vfsvm run" "$vw" "$vc" "$vr"
printf "%-28s %10.1f %10.1f %12.1f\n" "qemu -M microvm -accel kvm" "$qw" "$qc" "$qr"
printf "%-28s %10.2f %10.2f %12.2f\n" "vfsvm / QEMU" "$(echo "$vw / $qw" | bc -l)" "$(echo "$vc / $qc" | bc -l)" "$(echo "$vr / $qr" | bc -l)"

echo
echo "== FUSE round trips seen by the guest ($reads small READs, one in flight) =="
share=$top/share
mkdir -p "$share"
printf 'hello from the host over virtio-fs\n' >"$share/hello.txt"
rate() { sed -n 's/.* us: \([0-9]*\) round trips\/s/\1/p' "$1"; }
printf "%-44s %14s\n" "" "round trips/s"
for transport in mmio pci; do
    for ring in split packed; do
        timeout 600 "$VFSVM" run --accel kvm --memory 128M --transport "$transport" --share "$share:myfs" \
            --cmdline "transport=$transport ring=$ring bench=$reads" "$GUESTS/virtiofs.elf" </dev/null >"$top/out" 2>"$top/err"
        st=$?
        if [ $st -eq 33 ]; then
            printf "%-44s %14s\n" "vfsvm run, $transport, $ring" "$(rate "$top/out")"
        else
            printf "%-44s %14s\n" "vfsvm run, $transport, $ring" "n/a (exit $st: $(grep -h -m1 -e FAIL -e vfsvm: "$top/out" "$top/err" | cut -c1-60))"
        fi
    done
done
sock=$top/fs.sock
for ring in split packed; do
    packed=off; [ $ring = packed ] && packed=on
    "$VFSVM" serve --socket-path "$sock" --shared-dir "$share" --sandbox none 2>"$top/serve.log" &
    serve_pid=$!
    for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
    timeout 600 "$QEMU" -M microvm,memory-backend=mem,rtc=on -accel kvm -m 128M \
        -object memory-backend-memfd,id=mem,size=128M,share=on -nodefaults -no-user-config -display none -serial stdio \
        -global virtio-mmio.force-legacy=false -device isa-debug-exit,iobase=0x501,iosize=1 \
        -chardev socket,id=fs0,path="$sock" -device vhost-user-fs-device,chardev=fs0,tag=myfs,packed=$packed \
        -kernel "$GUESTS/virtiofs.elf" -append "ring=$ring bench=$reads" </dev/null >"$top/out" 2>"$top/err"
    st=$?
    kill $serve_pid 2>/dev/null
    wait $serve_pid 2>/dev/null
    rm -f "$sock"
    if [ $st -eq 33 ]; then
        printf "%-44s %14s\n" "QEMU microvm + vfsvm serve, mmio, $ring" "$(rate "$top/out")"
    else
        printf "%-44s %14s\n" "QEMU microvm + vfsvm serve, mmio, $ring" "n/a (exit $st)"
    fi
done
