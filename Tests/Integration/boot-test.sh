#!/bin/bash
# Boot-and-mount tests: real Linux guests (Images/, under qemu-system-x86_64
# TCG) mount shares served by `vfsvm serve` over vhost-user, and both sides
# are checked.
#
#   boot-test.sh PATH-TO-vfsvm
#
# Prints PASS/FAIL per check and "N passed, N failed"; exits non-zero on any
# failure. Keeps the work directory of a failed check and names it.
set -u
VFSVM=$(realpath "${1:?usage: boot-test.sh PATH-TO-vfsvm}")
top=$(cd "$(dirname "$0")/../.." && pwd)
images=$top/Images
# ok/bad/check/summary
. "$(dirname "$0")/check.sh"

if ! command -v qemu-system-x86_64 >/dev/null || [ ! -f "$images/out/vmlinuz" ]; then
    bad "boot-test can run here" "needs qemu-system-x86_64 and Images/out (make -C Images)"
    summary boot-test
    exit 1
fi

# --- the full guest workload with host-side manifest checks, over both ring
# layouts and with two request queues
for variant in "--packed off --expect-ring split" "--packed on --expect-ring packed" "--packed on --queues 2 --expect-ring packed"; do
    # shellcheck disable=SC2086
    if out=$(VFSVM_BACKEND=vfsvm VFSVM_BIN=$VFSVM "$top/Tests/Integration/run-workload.sh" $variant 2>&1); then
        ok "guest workload + host manifest check ($variant)"
    else
        bad "guest workload + host manifest check ($variant)" "$(echo "$out" | grep -E 'FAIL|kept|status' | head -5 | tr '\n' ' ')"
    fi
done

work=$(mktemp -d /tmp/vfsvm-boot.XXXXXX)
share=$work/share
mkdir -p "$share"
serve_pid=
start_serve() { # start_serve EXTRA-ARGS...
    rm -f "$work/sock"
    "$VFSVM" serve --socket-path="$work/sock" -o source="$share" -o cache=auto "$@" >"$work/serve.log" 2>&1 &
    serve_pid=$!
    for _ in $(seq 100); do [ -S "$work/sock" ] && return 0; sleep 0.05; done
    return 1
}
wait_serve() { # wait for serve to exit; sets serve_status
    serve_status=timeout
    for _ in $(seq 100); do
        if ! kill -0 "$serve_pid" 2>/dev/null; then wait "$serve_pid"; serve_status=$?; return; fi
        sleep 0.1
    done
    kill -9 "$serve_pid" 2>/dev/null
}
boot() { "$top/Tests/Integration/boot-qemu.sh" --socket "$work/sock" --tag fs --quiet --timeout 120 --log "$work/console.log" "$@"; }

# --- the sandbox: serve's root is the share, not the host's /
echo sandboxed > "$share/inside"
start_serve
# serve listens before it enters the sandbox (the socket's path is outside
# the share) and accepts only after: give it a moment to get there.
for _ in $(seq 50); do
    root_view=$(ls "/proc/$serve_pid/root/" 2>&1 | tr '\n' ' ')
    [ "$root_view" = "inside " ] && break
    sleep 0.1
done
if [ "$root_view" = "inside " ]; then ok "serve's root is the share (namespace sandbox)"; else bad "serve's root is the share (namespace sandbox)" "saw: $root_view"; fi
caps=$(grep CapEff "/proc/$serve_pid/status" | awk '{print $2}')
if [ -n "$caps" ] && [ "$caps" != 000001ffffffffff ] && [ $((16#$caps & (1 << 21))) -eq 0 ]; then ok "serve dropped CAP_SYS_ADMIN (CapEff $caps)"; else bad "serve dropped capabilities" "CapEff $caps"; fi

# --- a file created on the host while the guest runs becomes visible
guest_cmd='touch /mnt/guest-ready; i=0; while [ ! -e /mnt/host-made ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; cat /mnt/host-made'
( for _ in $(seq 600); do [ -e "$share/guest-ready" ] && break; sleep 0.1; done; echo "made on the host" > "$share/host-made" ) &
watcher=$!
boot --cmd "$guest_cmd" >/dev/null 2>&1; rc=$?
wait $watcher
if [ $rc -eq 0 ] && grep -q "made on the host" "$work/console.log"; then ok "a host-created file appears in the running guest"; else bad "a host-created file appears in the running guest" "rc=$rc, console in $work"; fi
wait_serve
if [ "$serve_status" = 0 ]; then ok "serve exits 0 when the guest powers off"; else bad "serve exits 0 when the guest powers off" "status $serve_status: $(tail -2 "$work/serve.log")"; fi

# --- a read-only share refuses writes with EROFS
start_serve --readonly
boot --cmd 'mkdir -p /tmp; cat /mnt/inside && if (echo x > /mnt/new) 2>/tmp/err; then exit 1; fi; cat /tmp/err; grep -q "Read-only file system" /tmp/err' >/dev/null 2>&1; rc=$?
wait_serve
if [ $rc -eq 0 ] && [ ! -e "$share/new" ]; then ok "read-only share: reads work, writes fail with EROFS"; else bad "read-only share refuses writes with EROFS" "rc=$rc"; fi

# --- a driver reset (virtiofs reloaded in the guest: the device is reset,
# QEMU stops the rings with GET_VRING_BASE and sets them up again)
start_serve
boot --packed on --cmd 'cd /; cat /mnt/inside && umount /mnt && rmmod virtiofs && insmod /lib/modules/virtiofs.ko && mount -t virtiofs fs /mnt && cat /mnt/inside && echo after-reset > /mnt/post' >/dev/null 2>&1; rc=$?
wait_serve
if [ $rc -eq 0 ] && [ "$(cat "$share/post" 2>/dev/null)" = after-reset ]; then ok "driver reset in the guest: the share works again afterwards (packed ring)"; else bad "driver reset in the guest: the share works again" "rc=$rc"; fi

# --- killing the guest mid-write leaves vfsvm healthy and the share consistent
start_serve
( for _ in $(seq 600); do [ -e "$share/writing" ] && break; sleep 0.1; done; sleep 1
  pkill -9 -f "qemu-system-x86_64.*$work/sock" ) &
killer=$!
boot --cmd 'touch /mnt/writing; echo kept > /mnt/kept; sync; dd if=/dev/zero of=/mnt/big bs=1M count=400' >/dev/null 2>&1
wait $killer
wait_serve
if [ "$serve_status" = 0 ] && grep -q "front-end disconnected" "$work/serve.log"; then ok "guest killed mid-write: serve sees the disconnect and exits 0"; else bad "guest killed mid-write: serve exits cleanly" "status $serve_status: $(tail -2 "$work/serve.log")"; fi
if [ "$(cat "$share/kept" 2>/dev/null)" = kept ] && [ -f "$share/big" ] && [ "$(stat -c %s "$share/big")" -le $((400 << 20)) ]; then
    ok "guest killed mid-write: the share is consistent (earlier file intact, partial file readable)"
else
    bad "guest killed mid-write: share consistent" "$(ls -la "$share")"
fi
# and a new guest can be served afterwards
start_serve
boot --cmd 'cat /mnt/kept' >/dev/null 2>&1; rc=$?
wait_serve
if [ $rc -eq 0 ]; then ok "a fresh serve after the crash serves a new guest"; else bad "a fresh serve after the crash serves a new guest" "rc=$rc"; fi

# --- virtiofsd parity: --translate-uid/--translate-gid as a guest sees them
# (guest root is host 1000:1000), and mount points inside the share
# announced as submounts (their own st_dev in the guest)
chmod 0777 "$share"
echo owned > "$share/by1000" && chown 1000:1000 "$share/by1000"
start_serve --translate-uid map:0:1000:1 --translate-gid map:0:1000:1
boot --cmd 'echo hi > /mnt/by-guest-root && echo "OWNERS $(stat -c %u:%g /mnt/by-guest-root) $(stat -c %u:%g /mnt/by1000) $(stat -c %u:%g /mnt/inside)"' >/dev/null 2>&1; rc=$?
wait_serve
owners=$(grep -a -o 'OWNERS [0-9: ]*' "$work/console.log" | head -1 | tr -d '\r')
host_owner=$(stat -c %u:%g "$share/by-guest-root" 2>/dev/null)
if [ $rc -eq 0 ] && [ "$owners" = "OWNERS 0:0 0:0 0:0" ] && [ "$host_owner" = 1000:1000 ]; then
    ok "--translate-uid/gid map:0:1000:1: guest root's file is host 1000:1000, host 1000's files are guest root's"
else
    bad "--translate-uid/gid map:0:1000:1" "rc=$rc, guest saw '$owners', host owner '$host_owner'"
fi
mkdir -p "$share/sub"
if mount -t tmpfs -o size=1m vfsvm-sub "$share/sub"; then
    echo on-tmpfs > "$share/sub/f"
    for variant in --announce-submounts ""; do
        # shellcheck disable=SC2086
        start_serve $variant
        boot --cmd 'cat /mnt/sub/f && echo "DEVS $(stat -c %d /mnt) $(stat -c %d /mnt/sub)"' >/dev/null 2>&1; rc=$?
        wait_serve
        read -r _ dev_root dev_sub < <(grep -a -o 'DEVS [0-9]* [0-9]*' "$work/console.log" | head -1)
        if [ -n "$variant" ]; then
            if [ $rc -eq 0 ] && [ -n "$dev_sub" ] && [ "$dev_root" != "$dev_sub" ]; then ok "--announce-submounts: a tmpfs inside the share is a submount in the guest (st_dev $dev_root vs $dev_sub)"
            else bad "--announce-submounts: a tmpfs inside the share is a submount in the guest" "rc=$rc, st_dev '$dev_root' '$dev_sub'"; fi
        else
            if [ $rc -eq 0 ] && [ -n "$dev_sub" ] && [ "$dev_root" = "$dev_sub" ]; then ok "without --announce-submounts (the default): one st_dev for the whole share ($dev_root)"
            else bad "without --announce-submounts: one st_dev" "rc=$rc, st_dev '$dev_root' '$dev_sub'"; fi
        fi
    done
    umount "$share/sub"
else
    bad "submount checks can run" "cannot mount a tmpfs on $share/sub"
fi

# --- a virtiofsd command line from its README, unchanged but for the
# program name: --socket-path=PATH --shared-dir DIR --inode-file-handles=mandatory
rm -f "$work/sock"
"$VFSVM" serve --socket-path="$work/sock" --shared-dir "$share" --inode-file-handles=mandatory >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do [ -S "$work/sock" ] && break; sleep 0.05; done
boot --cmd 'cat /mnt/inside && echo readme-line > /mnt/readme' >/dev/null 2>&1; rc=$?
wait_serve
if [ $rc -eq 0 ] && [ "$(cat "$share/readme" 2>/dev/null)" = readme-line ]; then ok "virtiofsd's README command line serves a guest"; else bad "virtiofsd's README command line serves a guest" "rc=$rc: $(tail -2 "$work/serve.log")"; fi

# --- --xattrmap from virtiofsd's documentation, unchanged: every guest
# name lives under user.virtiofs. on the host; unprefixed host names are hidden
echo x > "$share/mapped"
if command -v python3 >/dev/null && python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.host-only", b"h")' "$share/mapped"; then
    start_serve --xattr --xattrmap ':map::user.virtiofs.:'
    boot --cmd 'vfsvm-xattr set /mnt/mapped trusted.overlay.opaque y && echo "XLIST $(vfsvm-xattr list /mnt/mapped | tr "\n" " ")"' >/dev/null 2>&1; rc=$?
    wait_serve
    xlist=$(tr -d '\r' < "$work/console.log" | grep -a -o 'XLIST .*' | head -1 | sed 's/ *$//')
    host_names=$(python3 -c 'import os,sys; print(" ".join(sorted(os.listxattr(sys.argv[1]))))' "$share/mapped")
    if [ $rc -eq 0 ] && [ "$xlist" = "XLIST trusted.overlay.opaque" ] && [ "$host_names" = "user.host-only user.virtiofs.trusted.overlay.opaque" ]; then
        ok "--xattrmap :map::user.virtiofs.: (virtiofsd's example): the guest's trusted.* is user.virtiofs.trusted.* on the host, host-only names hidden"
    else
        bad "--xattrmap :map::user.virtiofs.:" "rc=$rc, guest listed '$xlist', host has '$host_names'"
    fi
else
    bad "--xattrmap check can run" "cannot set a user xattr on $share/mapped"
fi

# --- capabilities JSON for QEMU/libvirt
if "$VFSVM" serve --print-capabilities | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["type"]=="fs"'; then ok "--print-capabilities prints valid JSON"; else bad "--print-capabilities prints valid JSON"; fi

if [ "$fail" -eq 0 ]; then rm -rf "$work"; else echo "boot-test: kept $work"; fi
summary boot-test
