#!/bin/sh
# /init of the vfsvm guest initramfs (busybox sh). Kernel command line:
#   vfsvm.mount=TAG:/path[:ro]  mount virtiofs TAG on /path (repeatable, in order)
#   vfsvm.cmd=TEXT              run TEXT with sh -c; %XX sequences are decoded
#                               (%20 = space, %25 = '%'); nothing else is
#   vfsvm.cmd64=BASE64          run the base64-decoded text with sh -c (robust
#                               for any bytes; what boot-qemu.sh uses)
#   vfsvm.cmd=test              run sh FIRST_MOUNT/.vfsvm-test.sh
#   vfsvm.shell=1               no command: interactive shell on the console
#   vfsvm.debug=1               trace this script (set -x)
# The command runs in the first mount's directory (or /), stdin /dev/null.
# At the end the console shows "VFSVM-GUEST-EXIT status=N" and the guest
# powers off. N is the command's status, 0 when there is no command, 120 for a
# bad vfsvm.* argument, 121 when a mount failed.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=linux
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

log() { echo "vfsvm-init: $*"; }

finish() {
    sync
    # own line, even when the console is mid-line
    printf '\nvfsvm-init: guest uptime at exit %ss\nVFSVM-GUEST-EXIT status=%s\n' \
        "$(cut -d' ' -f1 /proc/uptime)" "$1"
    poweroff -f
    # Not reached unless power-off failed; exiting init panics the kernel,
    # and panic=-1 with QEMU's -no-reboot ends the VM.
    sleep 2
    exit "$1"
}

urldecode() {
    # only %XX is decoded; a backslash is protected from printf %b first
    printf '%b' "$(printf '%s' "$1" | sed -e 's/\\/\\x5c/g' -e 's/%\([0-9a-fA-F][0-9a-fA-F]\)/\\x\1/g')"
}

set -f   # the command line is split on blanks below; never glob it
mounts="" cmd="" have_cmd=0 run_test=0 shell=0 bad=0
for arg in $(cat /proc/cmdline); do
    case $arg in
        vfsvm.mount=*) mounts="$mounts ${arg#vfsvm.mount=}" ;;
        vfsvm.cmd=test) run_test=1; have_cmd=1 ;;
        vfsvm.cmd=*) cmd=$(urldecode "${arg#vfsvm.cmd=}"); have_cmd=1 run_test=0 ;;
        vfsvm.cmd64=*)
            if cmd=$(printf '%s' "${arg#vfsvm.cmd64=}" | base64 -d 2>/dev/null); then
                have_cmd=1 run_test=0
            else
                log "vfsvm.cmd64 is not valid base64"; bad=1
            fi ;;
        vfsvm.shell=1) shell=1 ;;
        vfsvm.debug=1) set -x ;;
        vfsvm.*) log "unknown argument '$arg'"; bad=1 ;;
    esac
done
[ $bad -eq 0 ] || finish 120

# Modules, dependencies first; a module already present (builtin) is skipped.
while read -r m; do
    [ -n "$m" ] || continue
    [ -d "/sys/module/$m" ] && continue
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done < /lib/modules/load-order

first_mount=""
for spec in $mounts; do
    tag=${spec%%:*}
    rest=${spec#*:}
    path=${rest%%:*}
    opt=""
    [ "$rest" != "$path" ] && opt=${rest#*:}
    case $spec in *:*) ;; *) log "bad vfsvm.mount=$spec (want TAG:/path[:ro])"; finish 120 ;; esac
    case $path in /*) ;; *) log "bad vfsvm.mount=$spec: path must be absolute"; finish 120 ;; esac
    case $opt in
        "") mopt="" ;;
        ro) mopt="-o ro" ;;
        *) log "bad vfsvm.mount=$spec: option '$opt' (only ro)"; finish 120 ;;
    esac
    [ -n "$tag" ] || { log "bad vfsvm.mount=$spec: empty tag"; finish 120; }
    mkdir -p "$path"
    # The device may still be probing: retry for up to about 5 s.
    i=0
    until mount -t virtiofs $mopt "$tag" "$path" 2>/tmp/mount.err; do
        i=$((i + 1))
        if [ $i -ge 50 ]; then
            log "mount -t virtiofs $tag $path failed: $(cat /tmp/mount.err)"
            finish 121
        fi
        sleep 0.1
    done
    log "mounted virtiofs $tag on $path${opt:+ ($opt)}"
    [ -n "$first_mount" ] || first_mount=$path
done
set +f

# Which ring each virtio-fs device negotiated (feature bit 34 = RING_PACKED).
for d in /sys/bus/virtio/devices/*; do
    [ -f "$d/device" ] || continue
    [ "$(cat "$d/device")" = 0x001a ] || continue
    f=$(cat "$d/features")
    ring=split
    [ "${f:34:1}" = 1 ] && ring=packed
    log "virtiofs device ${d##*/} ring=$ring features=$f"
done

if [ $have_cmd -eq 1 ]; then
    cd "${first_mount:-/}"
    if [ $run_test -eq 1 ]; then
        [ -n "$first_mount" ] || { log "vfsvm.cmd=test needs a vfsvm.mount"; finish 120; }
        sh "$first_mount/.vfsvm-test.sh" </dev/null
    else
        sh -c "$cmd" </dev/null
    fi
    finish $?
fi
if [ $shell -eq 1 ]; then
    cd "${first_mount:-/}"
    log "interactive shell; exit it to power off"
    setsid cttyhack sh -l
    finish $?
fi
finish 0
