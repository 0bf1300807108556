#!/bin/bash
# demo-run.sh — `vfsvm run` end to end: one command boots the Images Linux
# guest with a demo directory shared as "demo" (mounted on /mnt/demo by the
# guest's init); the guest lists it, reads a file, writes one and reads it
# back; then the host shows the guest's file. vfsvm picks the accelerator by
# measurement (--accel auto) and says which on stderr. Exit 0 only when the
# guest's checks and the host's hold.
#   VFSVM_BIN=PATH   the vfsvm binary (default .build/debug/vfsvm)
#   Extra arguments go to vfsvm run (e.g. --ring split, --accel tcg).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
vfsvm=${VFSVM_BIN:-$top/.build/debug/vfsvm}
guest=$top/Images/out/guest.img
[ -f "$guest" ] || make -C "$top/Images"

work=$(mktemp -d /tmp/vfsvm-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
share=$work/demo
mkdir -p "$share/docs"
echo "hello from the host" > "$share/hello.txt"
printf 'line 1\nline 2\n' > "$share/docs/readme.txt"
echo "demo: host directory $share:"
ls -la "$share"

# What the guest runs (in /mnt/demo), through the Images init's vfsvm.cmd64.
cmd='set -e
echo "guest: ls -la /mnt/demo"; ls -la /mnt/demo
echo "guest: cat hello.txt"; cat hello.txt
echo "written by the guest on $(uname -r)" > from-guest.txt
echo "guest: wrote from-guest.txt, reading it back:"; cat from-guest.txt
grep -q "hello from the host" hello.txt'
echo "demo: vfsvm run --share $share:demo${*:+ $*} $guest"
start=$(date +%s.%N)
set +e
"$vfsvm" run --share "$share:demo" --append "vfsvm.cmd64=$(printf '%s' "$cmd" | base64 -w0)" "$@" "$guest" </dev/null | tee "$work/console"
rc=${PIPESTATUS[0]}
set -e
took=$(echo "$(date +%s.%N) - $start" | bc)
status=$(sed -n 's/^VFSVM-GUEST-EXIT status=\([0-9]*\).*/\1/p' "$work/console" | tail -1)
echo "demo: vfsvm run exited $rc after ${took%???????} s; the guest's command exited ${status:-?}"
echo "demo: the host sees the guest's file:"
cat "$share/from-guest.txt"
[ "$rc" -eq 0 ] && [ "$status" = 0 ] && grep -q "written by the guest" "$share/from-guest.txt"
echo "demo: OK"
