# init-lib.sh — sourced by both inits of the vfsvm guest: the initramfs /init
# (init.sh, busybox sh) and the root file system's /sbin/vfsvm-init
# (rootfs-init.sh, Debian's dash). Installed in both as /lib/vfsvm/init-lib.sh.
# It holds what the harness relies on, so the two inits cannot drift apart:
#   vfsvm.mount=TAG:/path[:ro]  mount virtiofs TAG on /path (repeatable, in order)
#   vfsvm.cmd=TEXT              run TEXT with sh -c; %XX sequences are decoded
#                               (%20 = space, %25 = '%'); nothing else is
#   vfsvm.cmd64=BASE64          run the base64-decoded text with sh -c (robust
#                               for any bytes; what boot-qemu.sh uses)
#   vfsvm.cmd=test              run sh FIRST_MOUNT/.vfsvm-test.sh
#   vfsvm.shell=1               no command: interactive shell on the console
#   vfsvm.debug=1               trace the init script (set -x)
# The command runs in the first mount's directory (or /), stdin /dev/null.
# At the end the console shows "VFSVM-GUEST-EXIT status=N" and the guest
# powers off. N is the command's status, 0 when there is no command, 120 for a
# bad vfsvm.* (or root=) argument, 121 when a mount failed, 122 when the root
# file system could not be mounted (init.sh).
# Also parsed here, for init.sh: root=, rootfstype=, ro/rw, init=.
# POSIX sh only (dash runs it): no ${v:offset:length}, and escapes for %b go
# through env printf, since dash's builtin printf knows no \xHH.

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

# is_mounted DIR: something is mounted on DIR (false while /proc is not there)
is_mounted() { grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null; }

# proc, sysfs, devtmpfs, devpts, tmpfs on /tmp and /run, each unless already
# there (after switch_root they come over from the initramfs); then the
# console as stdin/stdout/stderr.
early_mounts() {
    is_mounted /proc || mount -t proc proc /proc
    is_mounted /sys || mount -t sysfs sysfs /sys
    is_mounted /dev || mount -t devtmpfs devtmpfs /dev 2>/dev/null
    mkdir -p /dev/pts /dev/shm
    is_mounted /dev/pts || mount -t devpts devpts /dev/pts 2>/dev/null
    is_mounted /tmp || mount -t tmpfs tmpfs /tmp
    is_mounted /run || mount -t tmpfs tmpfs /run
    if [ -c /dev/console ]; then exec </dev/console >/dev/console 2>&1; fi
}

urldecode() {
    # only %XX is decoded; a backslash is protected from printf %b first
    env printf '%b' "$(printf '%s' "$1" | sed -e 's/\\/\\x5c/g' -e 's/%\([0-9a-fA-F][0-9a-fA-F]\)/\\x\1/g')"
}

# parse_cmdline [FILE]: reads FILE (default /proc/cmdline; tests/selftest.sh
# passes its own). Sets mounts cmd have_cmd run_test shell, and for init.sh
# root rootfstype root_ro init. Fails (after logging why) on a bad vfsvm.*
# argument.
parse_cmdline() {
    mounts="" cmd="" have_cmd=0 run_test=0 shell=0 bad=0
    root="" rootfstype="" root_ro=0 init=/sbin/init
    set -f   # the command line is split on blanks below; never glob it
    for arg in $(cat "${1:-/proc/cmdline}"); do
        case $arg in
            vfsvm.mount=*) mounts="$mounts ${arg#vfsvm.mount=}" ;;
            vfsvm.cmd=test) run_test=1; have_cmd=1 ;;
            vfsvm.cmd=*) cmd=$(urldecode "${arg#vfsvm.cmd=}"); have_cmd=1 run_test=0 ;;
            vfsvm.cmd64=*)
                # busybox base64 -d skips characters outside the alphabet
                # instead of failing: check the text first.
                b64=${arg#vfsvm.cmd64=}
                case $b64 in
                    *[!A-Za-z0-9+/=]*) b64_ok=0 ;;
                    *) b64_ok=$(( ${#b64} % 4 == 0 )) ;;
                esac
                if [ "$b64_ok" = 1 ] && cmd=$(printf '%s' "$b64" | base64 -d 2>/dev/null); then
                    have_cmd=1 run_test=0
                else
                    log "vfsvm.cmd64 is not valid base64"; bad=1
                fi ;;
            vfsvm.shell=1) shell=1 ;;
            vfsvm.debug=1) set -x ;;
            vfsvm.*) log "unknown argument '$arg'"; bad=1 ;;
            root=*) root=${arg#root=} ;;
            rootfstype=*) rootfstype=${arg#rootfstype=} ;;
            ro) root_ro=1 ;;
            rw) root_ro=0 ;;
            init=*) init=${arg#init=} ;;
        esac
    done
    set +f
    [ $bad -eq 0 ]
}

# mount_retry TYPE OPTIONS SOURCE DIR: the device may still be probing, so
# retry for about 5 s; logs the last error and fails after that.
mount_retry() {
    _i=0
    # shellcheck disable=SC2086  # OPTIONS is "" or "-o ro"
    until mount -t "$1" $2 "$3" "$4" 2>/tmp/mount.err; do
        _i=$((_i + 1))
        if [ $_i -ge 50 ]; then
            log "mount -t $1 $3 $4 failed: $(cat /tmp/mount.err)"
            return 1
        fi
        sleep 0.1
    done
}

# Mounts every vfsvm.mount= in order; sets first_mount.
do_mounts() {
    first_mount=""
    set -f
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
        mount_retry virtiofs "$mopt" "$tag" "$path" || finish 121
        log "mounted virtiofs $tag on $path${opt:+ ($opt)}"
        [ -n "$first_mount" ] || first_mount=$path
    done
    set +f
}

# Which ring each virtio-fs device negotiated (feature bit 34 = RING_PACKED;
# the sysfs features string has bit 0 first).
report_rings() {
    for d in /sys/bus/virtio/devices/*; do
        [ -f "$d/device" ] || continue
        [ "$(cat "$d/device")" = 0x001a ] || continue
        f=$(cat "$d/features")
        ring=split
        [ "$(printf '%s' "$f" | cut -c35)" = 1 ] && ring=packed
        log "virtiofs device ${d##*/} ring=$ring features=$f"
    done
}

# The mounts, the ring report, then the command (or the interactive
# $login_shell, default /bin/sh), then finish.
run_guest() {
    do_mounts
    report_rings
    if [ $have_cmd -eq 1 ]; then
        # The command starts in the first mount, but init itself stays in / so
        # the command can unmount it (e.g. to reset the device by reloading
        # the driver).
        if [ $run_test -eq 1 ]; then
            [ -n "$first_mount" ] || { log "vfsvm.cmd=test needs a vfsvm.mount"; finish 120; }
            (cd "$first_mount" && exec sh "$first_mount/.vfsvm-test.sh") </dev/null
        else
            (cd "${first_mount:-/}" && exec sh -c "$cmd") </dev/null
        fi
        finish $?
    fi
    if [ $shell -eq 1 ]; then
        cd "${first_mount:-/}" || finish 121
        log "interactive shell; exit it to power off"
        # by path: busybox's cttyhack would run its own sh applet for "sh"
        setsid cttyhack "${login_shell:-/bin/sh}" -l
        finish $?
    fi
    finish 0
}
