#!/bin/sh
# Instructions per FUSE request of each vhost-user-fs backend as a whole
# process, `vfsvm serve` (release build) and Debian's virtiofsd, counted
# exactly by valgrind's callgrind while bench-backend (Benchmarks/BenchBackend)
# drives it over vhost-user: what the CPU columns of bench-backend.sh measure
# in µs, here in instructions, which other load on the machine cannot move.
#
#   Benchmarks/callgrind-backend.sh [--ops LIST] [--in-flight LIST] [--requests N1,N2] [--keep DIR]
#                                   [VFSVM_BIN [BENCH_BACKEND_BIN]]
#
#   --ops LIST        bench-backend operations (default
#                     getattr,lookup,lookup-miss,read-4k,read-128k,write-4k)
#   --in-flight LIST  requests posted together (default 1,32)
#   --requests N1,N2  measured requests of the short and the long run
#                     (default 1000,5000)
#   --keep DIR        keep every run's valgrind log and bench-backend output in
#                     DIR, and vfsvm's callgrind profiles (for callgrind_annotate)
# Environment: VIRTIOFSD (default /usr/lib/qemu/virtiofsd).
#
# Each backend runs under callgrind twice per operation and in-flight
# count, for N1 and for N2 measured requests (bench-backend adds a tenth, at
# least the in-flight count, of warm-up). Instructions per request are
# (Ir(N2) - Ir(N1)) / (requests(N2) - requests(N1)): start-up, FUSE INIT,
# the set-up lookups and the exit cancel. Only user space is counted
# (callgrind does not see the kernel's side of a system call), and valgrind
# runs the backend's threads one at a time.
#
# Without VFSVM_BIN it builds `vfsvm` and `bench-backend` (release) first.
# Debian 12's valgrind 3.19 cannot read the DWARF 5 Swift 6 emits, so vfsvm
# runs from a copy with its debug info stripped (symbols kept).
#
# Sandbox and seccomp under valgrind: valgrind 3.19 does not implement the
# seccomp system call, and callgrind writes its profile at exit to a path
# fixed at start-up. vfsvm runs with `--sandbox none --seccomp none`.
# Debian's virtiofsd 7.2 (the C one) has no switch for either: it runs with
# `-o sandbox=chroot` (its sandbox without namespaces) and
# Benchmarks/no-seccomp.c preloaded, which makes libseccomp install no
# filter; the profile path then runs through a link inside the share back to
# the share's root (made before it starts, in both backends' shares), and
# its count is read from valgrind's log. Neither setting changes the
# user-space instructions of a request: the filter runs in the kernel, the
# sandbox at start-up.
# Exit 0 when every run gave a count; 1 otherwise; 2 for bad arguments.
tool=callgrind-backend
ops=getattr,lookup,lookup-miss,read-4k,read-128k,write-4k inflight=1,32 counts=1000,5000 keep=""
die() { echo "$tool: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --ops) [ $# -ge 2 ] || die "--ops wants a list"; ops=$2; shift 2 ;;
        --in-flight) [ $# -ge 2 ] || die "--in-flight wants a list"; inflight=$2; shift 2 ;;
        --requests) [ $# -ge 2 ] || die "--requests wants N1,N2"; counts=$2; shift 2 ;;
        --keep) [ $# -ge 2 ] || die "--keep wants a directory"; keep=$2; shift 2 ;;
        -h|--help) sed -n '2,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
n1=${counts%,*} n2=${counts#*,}
case "$n1,$n2" in *[!0-9,]*|,*|*,) die "--requests wants N1,N2 (two numbers)" ;; esac
[ "$n1" -lt "$n2" ] || die "--requests wants N1 < N2"
[ $# -le 2 ] || die "too many arguments (see --help)"
bench=${2:-}
if [ -n "$keep" ]; then mkdir -p "$keep" || die "cannot create $keep"; keep=$(cd "$keep" && pwd); fi
[ -n "$bench" ] && bench=$(cd "$(dirname "$bench")" && pwd)/$(basename "$bench")
product=vfsvm
. "$(dirname "$0")/callgrind-common.sh"
if [ -z "$bench" ]; then
    swift build -c release --product bench-backend >/dev/null
    bench=$PWD/.build/release/bench-backend
fi
[ -x "$bench" ] || { echo "$tool: $bench is not an executable" >&2; exit 1; }
virtiofsd=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
[ -x "$virtiofsd" ] || { echo "$tool: no virtiofsd at $virtiofsd (apt-get install qemu-system-x86)" >&2; exit 1; }

echo "$tool: $(date -u '+%Y-%m-%d %H:%M UTC'), $(valgrind --version), $($virtiofsd --version 2>&1 | head -1)"
echo "$tool: user-space instructions only (callgrind does not count the kernel's side of system calls);"
echo "$tool: no seccomp filter in either (vfsvm --seccomp none; virtiofsd, which has no switch, with a libseccomp stub preloaded);"
echo "$tool: vfsvm --sandbox none, virtiofsd -o sandbox=chroot (it has no 'none'; the sandbox is set up once, not per request)"
gcc -O2 -shared -fPIC -o "$work/no-seccomp.so" Benchmarks/no-seccomp.c || exit 1
# The share is created by bench-backend; before a backend starts, this puts
# SHARE/SHARE in it, a link to / (inside a chroot to SHARE: SHARE itself),
# so that SHARE/cg.PID names one file before and after the chroot.
cat >"$work/in-share.sh" <<'END'
#!/bin/sh
share=$1; shift
mkdir -p "$share$(dirname "$share")" && ln -s / "$share$share" && exec "$@"
END
chmod +x "$work/in-share.sh"

# ir NAME OP INFLIGHT N: the Ir valgrind collected over the backend's
# process tree (every "Collected" line of its logs) for one bench-backend
# run of N measured requests.
ir() {
    tag=$1.$2.$3.$4
    rm -f "$work/$tag".*
    vg="valgrind --tool=callgrind --vgdb=no --log-file=$work/$tag.%p.log"
    case $1 in
        vfsvm) cmd="$vg --callgrind-out-file=$work/$tag.%p.out $work/loop serve --socket-path {socket} -o source={share}
                    -o cache=auto --sandbox none --seccomp none" ;;
        *) cmd="env LD_PRELOAD=$work/no-seccomp.so $vg --callgrind-out-file={share}/cg.%p $virtiofsd --socket-path={socket}
                -o source={share} -o cache=auto -o sandbox=chroot" ;;
    esac
    cmd=$(echo "$work/in-share.sh {share} $cmd" | tr -s ' \n' '  ')
    # Generous timeouts: under callgrind start-up takes seconds and a reply
    # can wait behind valgrind translating new code.
    if ! "$bench" --rounds 1 --requests "$4" --in-flight "$3" --ops "$2" --no-limit \
        --timeout 120000 --start-timeout 120000 --stop-timeout 120000 \
        --backend "$1=$cmd" \
        >"$work/$tag.bench" 2>&1; then
        echo "$tool: bench-backend failed for $1, $2, $3 in flight, $4 requests:" >&2
        tail -n 5 "$work/$tag.bench" >&2
        return 1
    fi
    total=$(cat "$work/$tag".*.log 2>/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { if (NR) print s }')
    [ -n "$keep" ] && cp "$work/$tag".* "$keep/" 2>/dev/null
    [ -n "$total" ] || { echo "$tool: no instruction count in valgrind's log for $1, $2, $3 in flight, $4 requests" >&2; return 1; }
    echo "$total"
}

# Requests bench-backend sends for N measured: N plus max(in flight, N/10) of warm-up.
sent() { w=$(($1 / 10)); [ "$w" -ge "$2" ] || w=$2; echo $(($1 + w)); }

rc=0
printf '%-12s %9s %14s %14s %7s\n' operation "in flight" "vfsvm Ir/req" "virtiofsd Ir/req" ratio
for op in $(echo "$ops" | tr , ' '); do
    for f in $(echo "$inflight" | tr , ' '); do
        d=$(($(sent "$n2" "$f") - $(sent "$n1" "$f")))
        per=""
        for b in vfsvm virtiofsd; do
            if a=$(ir $b "$op" "$f" "$n1") && z=$(ir $b "$op" "$f" "$n2"); then
                per="$per $(((z - a) / d))"
            else
                per="$per -"; rc=1
            fi
        done
        set -- $per
        ratio=-
        [ "$1" != - ] && [ "$2" != - ] && [ "$2" -gt 0 ] && ratio=$(awk "BEGIN { printf \"%.2f\", $1 / $2 }")
        printf '%-12s %9d %14s %14s %7s\n' "$op" "$f" "$1" "$2" "$ratio"
    done
done
exit $rc
