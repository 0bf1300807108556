#!/bin/bash
# boot-qemu.sh — boot the vfsvm guest (Images/out/vmlinuz + initramfs.cpio.gz) under
# qemu-system-x86_64 with one or more vhost-user-fs devices, and exit with the
# status of the guest command (parsed from "VFSVM-GUEST-EXIT status=N").
#
#   boot-qemu.sh --socket SOCK --tag TAG [--mount /mnt] [--ro]
#                [--socket SOCK2 --tag TAG2 [--mount /mnt2]] ...
#                [--packed on|off] [--queues N] [--queue-size N]
#                [--cmd "shell text" | --test | --shell]
#                [--log FILE] [--quiet] [--timeout SECONDS] [--mem 512M] [--smp N]
#                [--kernel FILE] [--initrd FILE] [--append "kernel args"] [--dry-run]
#                [--expect-ring packed|split]
#
# Each --socket starts a share; --tag, --mount and --ro after it belong to it.
# Default mount points: /mnt for the first share, /mnt2, /mnt3 ... after it.
# --test runs FIRST_MOUNT/.vfsvm-test.sh in the guest (vfsvm.cmd=test).
# --dry-run prints the QEMU command line (shell-quoted) and exits 0.
# --expect-ring: every virtio-fs device must report that ring (the guest's
# "vfsvm-init: virtiofs device ... ring=" lines), else exit 126 — QEMU's
# packed=on silently falls back to split when the backend lacks the feature.
# Environment: VFSVM_ACCEL=tcg|kvm (default tcg; /dev/kvm is slow software KVM on
# the build machines), VFSVM_CPU (default max for tcg, qemu64 for kvm),
# VFSVM_QEMU (default qemu-system-x86_64).
# Exit status: the guest's N; 124 on timeout; 125 when QEMU ended without the
# marker; 126 when --expect-ring does not hold; 130 when interrupted (INT/TERM/HUP; QEMU is stopped); 2 for bad arguments.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images=$(cd "$here/../../Images" && pwd)
die() { echo "boot-qemu: $*" >&2; exit 2; }

sockets=() tags=() mounts=() ros=()
packed="" queues="" qsize="" cmd="" mode=none log="" quiet=0 timeout=120 mem=512M smp=1
kernel=$images/out/vmlinuz initrd=$images/out/initramfs.cpio.gz append="" dry=0 expect_ring=""
need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case $1 in
        --socket) need "$@"; sockets+=("$2"); tags+=(""); mounts+=(""); ros+=(0); shift 2 ;;
        --tag|--mount)
            need "$@"; [ ${#sockets[@]} -gt 0 ] || die "$1 before any --socket"
            i=$((${#sockets[@]} - 1))
            if [ "$1" = --tag ]; then tags[$i]=$2; else mounts[$i]=$2; fi
            shift 2 ;;
        --ro) [ ${#sockets[@]} -gt 0 ] || die "--ro before any --socket"; ros[${#sockets[@]}-1]=1; shift ;;
        --packed) need "$@"; case $2 in on|off) packed=$2 ;; *) die "--packed on|off" ;; esac; shift 2 ;;
        --queues) need "$@"; queues=$2; shift 2 ;;
        --queue-size) need "$@"; qsize=$2; shift 2 ;;
        --cmd) need "$@"; cmd=$2; mode=cmd; shift 2 ;;
        --test) mode=test; shift ;;
        --shell) mode=shell; shift ;;
        --log) need "$@"; log=$2; shift 2 ;;
        --quiet) quiet=1; shift ;;
        --timeout) need "$@"; timeout=$2; shift 2 ;;
        --mem) need "$@"; mem=$2; shift 2 ;;
        --smp) need "$@"; smp=$2; shift 2 ;;
        --kernel) need "$@"; kernel=$2; shift 2 ;;
        --initrd) need "$@"; initrd=$2; shift 2 ;;
        --append) need "$@"; append=$2; shift 2 ;;
        --dry-run) dry=1; shift ;;
        --expect-ring) need "$@"; case $2 in packed|split) expect_ring=$2 ;; *) die "--expect-ring packed|split" ;; esac; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
isnum() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
[ -z "$queues" ] || isnum "$queues" || die "--queues wants a positive number"
[ -z "$qsize" ] || isnum "$qsize" || die "--queue-size wants a positive number"
isnum "$timeout" || die "--timeout wants a positive number of seconds"
isnum "$smp" || die "--smp wants a positive number"
[[ $mem =~ ^[1-9][0-9]*[MG]$ ]] || die "--mem wants e.g. 512M or 1G"
[ -f "$kernel" ] || die "no kernel at $kernel (run make -C Images)"
[ -f "$initrd" ] || die "no initramfs at $initrd (run make -C Images)"
[ "$mode" != test ] || [ ${#sockets[@]} -gt 0 ] || die "--test needs a share"

qemu=${VFSVM_QEMU:-qemu-system-x86_64}
case ${VFSVM_ACCEL:-tcg} in
    tcg) accel=(-accel tcg -cpu "${VFSVM_CPU:-max}") ;;
    kvm) accel=(-accel kvm -cpu "${VFSVM_CPU:-qemu64}") ;;
    *) die "VFSVM_ACCEL must be tcg or kvm" ;;
esac

kcmd="console=ttyS0 quiet panic=-1"
dev=()
for i in "${!sockets[@]}"; do
    s=${sockets[$i]} t=${tags[$i]} m=${mounts[$i]}
    [ -n "$t" ] || die "share $((i + 1)) (--socket $s) has no --tag"
    [[ $t =~ ^[A-Za-z0-9._+-]{1,36}$ ]] || die "tag '$t': 1-36 characters of A-Z a-z 0-9 . _ + -"
    [ -S "$s" ] || [ $dry -eq 1 ] || die "$s is not a socket (is the backend running?)"
    if [ -z "$m" ]; then if [ "$i" -eq 0 ]; then m=/mnt; else m=/mnt$((i + 1)); fi; fi
    [[ $m =~ ^/[A-Za-z0-9._/+-]*$ ]] || die "mount point '$m': absolute, no blanks or ':'"
    d="vhost-user-fs-pci,chardev=vfs$i,tag=$t"
    [ -z "$packed" ] || d+=",packed=$packed"
    [ -z "$queues" ] || d+=",num-request-queues=$queues"
    [ -z "$qsize" ] || d+=",queue-size=$qsize"
    dev+=(-chardev "socket,id=vfs$i,path=$s" -device "$d")
    kcmd+=" vfsvm.mount=$t:$m"
    [ "${ros[$i]}" -eq 0 ] || kcmd+=":ro"
done
case $mode in
    cmd) kcmd+=" vfsvm.cmd64=$(printf '%s' "$cmd" | base64 -w0)" ;;
    test) kcmd+=" vfsvm.cmd=test" ;;
    shell) kcmd+=" vfsvm.shell=1" ;;
esac
[ -z "$append" ] || kcmd+=" $append"
# x86 COMMAND_LINE_SIZE is 2048 including the NUL
[ ${#kcmd} -lt 2048 ] || die "kernel command line is ${#kcmd} bytes (max 2047); put long commands in a script on the share"

args=("${accel[@]}" -nodefaults -no-user-config -display none -vga none -no-reboot
      -machine pc -m "$mem" -smp "$smp"
      -object "memory-backend-memfd,id=mem,size=$mem,share=on" -numa node,memdev=mem
      -kernel "$kernel" -initrd "$initrd" -append "$kcmd"
      "${dev[@]}")

if [ $dry -eq 1 ]; then
    printf '%q ' "$qemu" "${args[@]}" -serial stdio; echo
    exit 0
fi

own_log=0
if [ -z "$log" ]; then log=$(mktemp /tmp/vfsvm-boot.XXXXXX.log); own_log=1; fi
: > "$log"


start=$(date +%s.%N)
if [ $mode = shell ]; then
    # interactive: console on this terminal (Ctrl-A X quits), no timeout
    set +e
    "$qemu" "${args[@]}" -chardev "stdio,id=con,mux=on,logfile=$log,signal=off" \
        -serial chardev:con -mon chardev=con,mode=readline
    rc=$?
    set -e
else
    if [ $quiet -eq 1 ]; then
        con=(-chardev "file,id=con,path=$log" -serial chardev:con)
        exec 3>/dev/null
    else
        con=(-chardev "stdio,id=con,logfile=$log,signal=off" -serial chardev:con)
        exec 3>&1
    fi
    # timeout(1) puts QEMU in its own process group, so a Ctrl-C here would
    # not reach it: run it in the background and pass INT/TERM on by PID.
    interrupted=0
    set +e
    timeout -k 5 "$timeout" "$qemu" "${args[@]}" "${con[@]}" </dev/null >&3 &
    qpid=$!
    trap 'interrupted=1; kill -TERM "$qpid" 2>/dev/null' INT TERM HUP
    wait "$qpid"; rc=$?
    while kill -0 "$qpid" 2>/dev/null; do wait "$qpid"; rc=$?; done
    trap - INT TERM HUP
    set -e
    if [ $interrupted -eq 1 ]; then
        echo "boot-qemu: interrupted; QEMU stopped; console log: $log" >&2
        exit 130
    fi
fi
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')

# The last marker counts; a kernel message may share its line. A timeout wins
# over any marker (the command itself could have printed one, then hung).
status=$(tr -d '\r' < "$log" | sed -n 's/.*VFSVM-GUEST-EXIT status=\([0-9][0-9]*\).*/\1/p' | tail -n1)
keep="console log: $log"
if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "boot-qemu: TIMEOUT after ${timeout}s${status:+ (a marker status=$status was seen before)}; $keep" >&2
    [ $quiet -eq 0 ] || tail -n 20 "$log" >&2
    exit 124
fi
if [ -n "$status" ]; then
    up=$(tr -d '\r' < "$log" | sed -n 's/^vfsvm-init: guest uptime at exit \([0-9.]*\)s$/\1/p' | tail -n1)
    echo "boot-qemu: guest exited with status $status; marker at guest uptime ${up:-?}s, QEMU start to exit ${elapsed}s (qemu rc $rc)" >&2
    if [ -n "$expect_ring" ]; then
        rings=$(tr -d '\r' < "$log" | sed -n 's/^vfsvm-init: virtiofs device [^ ]* ring=\([a-z]*\) .*/\1/p' | sort | uniq -c | tr -s ' \n' ' ')
        ndev=$(tr -d '\r' < "$log" | grep -c '^vfsvm-init: virtiofs device ' || true)
        nok=$(tr -d '\r' < "$log" | grep -c "^vfsvm-init: virtiofs device [^ ]* ring=$expect_ring " || true)
        if [ "$ndev" -ne ${#sockets[@]} ] || [ "$nok" -ne "$ndev" ]; then
            echo "boot-qemu: expected ring=$expect_ring on ${#sockets[@]} virtio-fs device(s), guest reported:${rings:- nothing}; $keep" >&2
            exit 126
        fi
        echo "boot-qemu: all $ndev virtio-fs device(s) use the $expect_ring ring" >&2
    fi
    [ $own_log -eq 0 ] || { rm -f "$log"; keep=""; }
    [ -z "$keep" ] || echo "boot-qemu: $keep" >&2
    exit "$status"
fi
echo "boot-qemu: QEMU ended (rc $rc) after ${elapsed}s without a VFSVM-GUEST-EXIT marker; $keep" >&2
[ $quiet -eq 0 ] || tail -n 20 "$log" >&2
exit 125
