#!/bin/bash
# `vfsvm run` end to end with the Images Linux guest, on whichever path
# --accel auto measures (tcg on this project's software-KVM machines): two
# shares and the guest workload with the host-side manifest check over the
# split and the packed ring, the Debian root disk, --rootfs DIR, a kernel
# panic, QEMU killed, SIGINT and --timeout leaving no process, socket or
# directory behind, and bad command lines refused with one line before
# anything starts.
#
#   run-test.sh PATH-TO-vfsvm [GUESTS-DIR]
#
# With GUESTS-DIR (Tests/Guests built), the console checks of pty-console.py
# run on the tcg path too (raw mode, Ctrl-A h and x, the terminal restored).
#
# Prints PASS/FAIL per check and "N passed, N failed"; exits non-zero on any
# failure. Keeps the work directory of a failed run and names it.
set -u
VFSVM=$(realpath "${1:?usage: run-test.sh PATH-TO-vfsvm}")
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/Tests/Integration
out=$top/Images/out
guest=$out/guest.img
. "$here/check.sh"

missing=""
command -v qemu-system-x86_64 >/dev/null || missing+=" qemu-system-x86_64"
for f in guest.img rootfs.img rootfs.stamp; do [ -f "$out/$f" ] || missing+=" Images/out/$f"; done
[ -d "$out/rootfs/usr" ] || missing+=" Images/out/rootfs/"
if [ -n "$missing" ]; then
    echo "run-test: cannot run: missing$missing (make -C Images)"
    echo "run-test: 0 passed, 1 failed"
    exit 1
fi

work=$(mktemp -d /tmp/vfsvm-runtest.XXXXXX)
cleanup() { if [ "$fail" -eq 0 ]; then rm -rf "$work"; else echo "run-test: kept $work"; fi; }
trap cleanup EXIT
# vfsvm's private directories go to $TMPDIR: this run's alone are checked.
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR"

# vrun NAME ARGS...: vfsvm run, stdin /dev/null, console in $work/NAME.out,
# stderr in $work/NAME.err; sets rc.
vrun() {
    local name=$1; shift
    timeout 300 "$VFSVM" run "$@" </dev/null >"$work/$name.out" 2>"$work/$name.err"
    rc=$?
}
guest_status() { sed -n 's/^VFSVM-GUEST-EXIT status=\([0-9]*\).*/\1/p' "$work/$1.out" | tail -1; }
# leftovers TEXT: processes whose command line holds TEXT, private
# directories not there at the start.
leftovers() {
    local procs dirs
    procs=$(pgrep -f -- "$1" | grep -vx "$$" | tr '\n' ' ')
    dirs=$(ls -d "$TMPDIR"/vfsvm-run.* 2>/dev/null | tr '\n' ' ')
    echo "${procs:+processes: $procs}${dirs:+directories: $dirs}"
}
no_leftovers() { # NAME TEXT
    local left
    left=$(leftovers "$2")
    if [ -z "$left" ]; then ok "$1: no process, socket or directory left"; else bad "$1: no process, socket or directory left" "$left"; fi
}

# --- refusals: one line, a non-zero exit, nothing started (no calibration
# line, no output)
refusal() { # NAME TEXT ARGS...
    local name=$1 text=$2; shift 2
    vrun refusal "$@"
    if [ $rc -ne 0 ] && [ ! -s "$work/refusal.out" ] && [ "$(wc -l <"$work/refusal.err")" -eq 1 ] && grep -qF -- "$text" "$work/refusal.err"; then
        ok "$name: one line, exit $rc ($(cat "$work/refusal.err"))"
    else
        bad "$name" "exit $rc, stdout $(wc -c <"$work/refusal.out") bytes, stderr: $(head -c 300 "$work/refusal.err")"
    fi
}
mkdir -p "$work/a" "$work/b"
refusal "a missing kernel" "cannot read $work/none" --kernel "$work/none" --initrd "$out/initramfs.cpio.gz"
refusal "an unreadable disk" "disk $work/none.img: no such file" --disk "$work/none.img" "$guest"
refusal "a share that does not exist" "share $work/nowhere: not a directory" --share "$work/nowhere:x" "$guest"
refusal "two shares with one tag" "two shares use the tag 't'" --share "$work/a:t" --share "$work/b:t" "$guest"
refusal "--memory 10" "--memory 10 MiB is too small for a Linux guest" --memory 10 "$guest"
refusal "--accel tcg --transport mmio" "--transport mmio is not available on the tcg path" --accel tcg --transport mmio --share "$work/a:t" "$guest"

# --- the generated QEMU command line
vrun print --print-qemu-cmdline --ring split --share "$work/a:one" --share "$work/b:two:ro" --disk "$out/rootfs.img:ro" "$guest"
line=$(cat "$work/print.out")
want=(" -M q35 -accel tcg -cpu max " "memory-backend-file,id=mem,size=512M,mem-path=/proc/self/fd/" ",share=on -numa node,memdev=mem"
      "vhost-user-fs-pci,chardev=fs0,tag=one,queue-size=1024,num-request-queues=1,packed=off" "tag=two,"
      "vfsvm.mount=one:/mnt/one vfsvm.mount=two:/mnt/two:ro" "readonly=on -device virtio-blk-pci,drive=disk0"
      "isa-debug-exit,iobase=0x501,iosize=1")
missing_bits=""
for w in "${want[@]}"; do [[ $line == *"$w"* ]] || missing_bits+=" [$w]"; done
if [ $rc -eq 0 ] && [ -z "$missing_bits" ]; then ok "--print-qemu-cmdline: q35, TCG, shared memfd RAM, a vhost-user-fs-pci per share, the disk, debug-exit"; else bad "--print-qemu-cmdline" "exit $rc, missing$missing_bits in: $line"; fi
vrun print2 --print-qemu-cmdline --ring packed --share "$work/a:one" "$guest"
if grep -q "packed=on" "$work/print2.out"; then ok "--ring packed gives packed=on"; else bad "--ring packed gives packed=on" "$(cat "$work/print2.out")"; fi

# --- two shares, the guest workload and the host manifest check, split and
# packed. The test script writes to the second share, then runs the workload
# in the first.
for ring in split packed; do
    s1=$work/$ring-one s2=$work/$ring-two
    mkdir -p "$s1" "$s2"
    cp "$here/guest-workload.sh" "$s1/guest-workload.sh"
    cp "$here/check.sh" "$s1/.vfsvm-check.sh"
    printf 'BIG_MB=16\nNFILES=300\nREQUIRE_XATTR=0\n' >"$s1/.vfsvm-test.env"
    printf 'echo "from the guest" > /mnt/second/hello || exit 1\nexec sh "$PWD/guest-workload.sh" "$PWD"\n' >"$s1/.vfsvm-test.sh"
    vrun "$ring" --ring "$ring" --share "$s1:first" --share "$s2:second" --append "vfsvm.mount=first:/mnt/first vfsvm.mount=second:/mnt/second vfsvm.cmd=test" "$guest"
    if grep -qE '^vfsvm: --accel auto: (tcg \(QEMU\)|kvm \(the in-process VMM\)), because the 40002-instruction calibration guest took [0-9.]+ ms' "$work/$ring.err"; then
        ok "$ring: --accel auto says which path and why: $(grep -o 'auto: [a-z]*' "$work/$ring.err"), $(grep -oE 'took [0-9.]+ ms' "$work/$ring.err")"
    else
        bad "$ring: --accel auto says which path and why" "$(head -c 300 "$work/$ring.err")"
    fi
    gs=$(guest_status "$ring")
    if [ $rc -eq 0 ] && [ "$gs" = 0 ]; then ok "$ring: the guest workload passed and the guest powered off (exit 0)"; else bad "$ring: guest workload" "exit $rc, guest status '$gs': $(grep -E 'FAIL|vfsvm' "$work/$ring.out" | head -5 | tr '\n' ' ')"; fi
    if [ "$(grep -c "ring=$ring" "$work/$ring.out")" -eq 2 ]; then ok "$ring: both virtiofs devices use the $ring ring"; else bad "$ring: both devices on the $ring ring" "$(grep 'ring=' "$work/$ring.out" | tr '\n' ' ')"; fi
    if m=$("$here/verify-manifest.sh" "$s1" 2>&1); then ok "$ring: host manifest check ($(echo "$m" | tail -1))"; else bad "$ring: host manifest check" "$(echo "$m" | tail -3 | tr '\n' ' ')"; fi
    if [ "$(cat "$s2/hello" 2>/dev/null)" = "from the guest" ]; then ok "$ring: the second share has the guest's file"; else bad "$ring: the second share has the guest's file"; fi
done
no_leftovers "after the workload runs" "$work/packed-one"

# --- the Debian root disk (a sparse copy: the guest boots it read-write)
cp --sparse=always "$out/rootfs.img" "$work/rootfs.img"
mkdir -p "$work/data"
echo "host data" >"$work/data/in"
vrun disk --share "$work/data:data" --append 'vfsvm.cmd=cat%20/mnt/data/in;dpkg%20-l|grep%20-c%20^ii;echo%20disk>/mnt/data/out' "$work/rootfs.img"
if [ $rc -eq 0 ] && [ "$(guest_status disk)" = 0 ] && grep -q "^host data" "$work/disk.out" && [ "$(cat "$work/data/out" 2>/dev/null)" = disk ]; then
    ok "the rootfs disk as GUEST boots (root=/dev/vda), reads and writes the share ($(grep -m1 -E '^[0-9]+$' "$work/disk.out") packages)"
else
    bad "the rootfs disk boots and reads the share" "exit $rc, status '$(guest_status disk)': $(grep -E 'vfsvm|root' "$work/disk.out" | tail -4 | tr '\n' ' ')"
fi

# --- --rootfs DIR:ro (the Images tree itself, read-only) with a share to
# write to, mounted by default on /run/mnt/TAG (the root is read-only)
vrun rootfs --rootfs "$out/rootfs:ro" --share "$work/data:data" --append 'vfsvm.cmd=dpkg%20-l|grep%20-c%20^ii>/run/mnt/data/count;touch%20/x||echo%20refused>/run/mnt/data/ro' "$out/guest.img"
want=$(grep -c '^Package:' "$out/rootfs/var/lib/dpkg/status")
got=$(cat "$work/data/count" 2>/dev/null)
if [ $rc -eq 0 ] && [ "$(guest_status rootfs)" = 0 ] && [ "$got" = "$want" ] && [ "$(cat "$work/data/ro" 2>/dev/null)" = refused ]; then
    ok "--rootfs DIR:ro boots the host tree over virtio-fs: dpkg -l counts $got packages, writes to / are refused, the share is on /run/mnt/data"
else
    bad "--rootfs DIR:ro boots" "exit $rc, status '$(guest_status rootfs)', count '$got' (host $want): $(grep -E 'vfsvm' "$work/rootfs.out" | tail -4 | tr '\n' ' ')"
fi

# --- a kernel panic: non-zero, one line naming it
vrun panic --append 'vfsvm.cmd=echo%20c>/proc/sysrq-trigger' "$guest"
if [ $rc -ne 0 ] && grep -q "^vfsvm: the guest kernel panicked: Kernel panic - not syncing" "$work/panic.err"; then ok "a guest kernel panic: exit $rc and one line ($(grep panicked "$work/panic.err" | cut -c1-80))"; else bad "a guest kernel panic" "exit $rc: $(tail -2 "$work/panic.err")"; fi

# hung SHARE NAME [ARGS...]: starts a guest that sleeps; sets pid once it is up.
hung() {
    mkdir -p "$1"
    "$VFSVM" run "${@:3}" --share "$1:s" --append 'vfsvm.cmd=echo%20sleeping;sleep%201000' "$guest" </dev/null >"$work/$2.out" 2>"$work/$2.err" &
    pid=$!
    for _ in $(seq 600); do grep -q "^sleeping" "$work/$2.out" && return 0; sleep 0.1; done
    return 1
}

# --- SIGINT: status 130, the backends and QEMU gone, the directory removed;
# meanwhile each backend's root is its share (the namespace sandbox)
if hung "$work/int-share" int --timeout 120; then
    serve=$(pgrep -f -- "serve --fd .* --shared-dir[= ]$work/int-share" | head -1)
    root=$(ls "/proc/$serve/root/" 2>&1 | tr '\n' ' ')
    if [ -n "$serve" ] && [ "$root" = "" ] && grep -qs "CapEff" "/proc/$serve/status"; then ok "the share's backend is sandboxed: its / is the (empty) share"; else bad "the share's backend is sandboxed" "pid '$serve', / holds: $root"; fi
    # QEMU has read the kernel and connected its sockets: the private
    # directory is gone already, so not even a SIGKILL of vfsvm leaves it
    dirs=$(ls -d "$TMPDIR"/vfsvm-run.* 2>/dev/null | tr '\n' ' ')
    if [ -z "$dirs" ]; then ok "while the guest runs, no private directory is left to leak"; else bad "while the guest runs, no private directory is left to leak" "$dirs"; fi
    kill -INT $pid
    wait $pid; rc=$?
    if [ $rc -eq 130 ]; then ok "SIGINT: exit 130"; else bad "SIGINT: exit 130" "exit $rc: $(tail -2 "$work/int.err")"; fi
else
    bad "SIGINT case: the guest came up" "$(tail -3 "$work/int.err")"; kill -9 $pid 2>/dev/null; wait $pid
fi
no_leftovers "SIGINT" "$work/int-share"

# --- --timeout with a hung guest: 124, everything gone
hung "$work/to-share" to --timeout 15
wait $pid; rc=$?
if [ $rc -eq 124 ] && grep -q "still running after --timeout 15 s" "$work/to.err"; then ok "--timeout 15 with a hung guest: exit 124 and one line"; else bad "--timeout with a hung guest" "exit $rc: $(tail -2 "$work/to.err")"; fi
no_leftovers "--timeout" "$work/to-share"

# --- QEMU killed under vfsvm: non-zero with one line, nothing left
if hung "$work/kill-share" kill --timeout 120; then
    pkill -9 -P $pid -f qemu-system-x86_64
    wait $pid; rc=$?
    if [ $rc -ne 0 ] && grep -q "qemu-system-x86_64 was killed by signal 9" "$work/kill.err"; then ok "QEMU killed: exit $rc and one line"; else bad "QEMU killed" "exit $rc: $(tail -2 "$work/kill.err")"; fi
else
    bad "QEMU-killed case: the guest came up" "$(tail -3 "$work/kill.err")"; kill -9 $pid 2>/dev/null; wait $pid
fi
no_leftovers "QEMU killed" "$work/kill-share"

# --- the console on a terminal, through QEMU (the freestanding events guest)
if [ -n "${2:-}" ]; then
    timeout 120 python3 "$here/pty-console.py" "$VFSVM" --accel tcg --memory 64M --cmdline do=spin "$2/events.elf" >"$work/pty" 2>&1
    while read -r line; do
        case $line in PASS:*) ok "tcg console: ${line#PASS: }" ;; FAIL:*) bad "tcg console: ${line#FAIL: }" ;; esac
    done <"$work/pty"
    no_leftovers "the console runs" "events.elf"
fi

summary run-test
