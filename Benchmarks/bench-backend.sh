#!/bin/bash
# bench-backend.sh — the backends' own cost, without a guest: bench-backend
# (Benchmarks/BenchBackend, a vhost-user-fs front-end) drives `vfsvm serve`
# and Debian's virtiofsd in one run, alternated round by round, each on a
# fresh share with the same options (-o cache=auto, default sandbox and
# seccomp), and prints per operation the medians of requests/s, p50/p99
# latency, backend CPU µs per request (whole process tree, from /proc) and
# peak RSS, with vfsvm/virtiofsd ratios (CPU per request is the headline:
# below 1 means vfsvm spends less).
#
#   Benchmarks/bench-backend.sh [--quick] [--rounds N] [--requests N] [--in-flight N] [--linux-layout] VFSVM_BIN BENCH_BACKEND_BIN
#
#   --quick        one round of 300 requests per operation
#   --rounds N     rounds (default 3)
#   --requests N   measured requests per operation per round (default 3000)
#   --in-flight N  requests posted together (default 1)
#   --linux-layout every request's in-header and out-header in buffers of
#                  their own, as Linux's virtio-fs posts them (default: each
#                  merged with the arguments after it)
#   --scaling      then a second table: vfsvm with 4 request queues against
#                  virtiofsd's one, 32 in flight per queue, on the 4 KiB and
#                  metadata rows (issue 12's multi-queue goal)
# Environment:
#   VFSVM_ARGS       extra `vfsvm serve` arguments, e.g. "--thread-pool-size 4"
#   VIRTIOFSD_ARGS   extra virtiofsd arguments
#   VIRTIOFSD        virtiofsd binary (default /usr/lib/qemu/virtiofsd)
#   BENCH_OPS        comma-separated operations (default all)
# Exit 0 when every run finished with right replies; 1 otherwise; 2 for bad
# arguments.
set -euo pipefail

die() { echo "bench-backend: $*" >&2; exit 2; }
rounds=3 requests=3000 inflight=1 scaling=0 vfsvm="" tool="" layout=()
while [ $# -gt 0 ]; do
    case $1 in
        --quick) rounds=1; requests=300; shift ;;
        --rounds) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]?$ ]] || die "--rounds wants 1..99"; rounds=$2; shift 2 ;;
        --requests) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]{0,6}$ ]] || die "--requests wants a positive number"; requests=$2; shift 2 ;;
        --in-flight) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]?$ ]] || die "--in-flight wants 1..64"; inflight=$2; shift 2 ;;
        --scaling) scaling=1; shift ;;
        --linux-layout) layout=(--linux-layout); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) if [ -z "$vfsvm" ]; then vfsvm=$1; elif [ -z "$tool" ]; then tool=$1; else die "too many arguments"; fi; shift ;;
    esac
done
[ -n "$tool" ] || die "usage: bench-backend.sh [--quick] [--rounds N] [--requests N] [--in-flight N] VFSVM_BIN BENCH_BACKEND_BIN"
for b in "$vfsvm" "$tool"; do [ -x "$b" ] || die "$b is not executable (swift build -c release?)"; done
case $vfsvm in */release/*) ;; *) echo "bench-backend: warning: $vfsvm does not look like a release build" >&2 ;; esac
vfsvm=$(cd "$(dirname "$vfsvm")" && pwd)/$(basename "$vfsvm")
virtiofsd=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
[ -x "$virtiofsd" ] || die "no virtiofsd at $virtiofsd (apt-get install qemu-system-x86)"

ops=()
[ -z "${BENCH_OPS:-}" ] || ops=(--ops "$BENCH_OPS")
echo "bench-backend: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $($virtiofsd --version 2>&1 | head -1)"
backends=(--backend "vfsvm=$vfsvm serve --socket-path {socket} -o source={share} -o cache=auto ${VFSVM_ARGS:-}"
          --backend "virtiofsd=$virtiofsd --socket-path={socket} -o source={share} -o cache=auto ${VIRTIOFSD_ARGS:-}")
rc=0
"$tool" --rounds "$rounds" --requests "$requests" --in-flight "$inflight" "${layout[@]}" "${ops[@]}" "${backends[@]}" || rc=1
if [ $scaling -eq 1 ]; then
    echo
    "$tool" --rounds "$rounds" --requests $((requests * 4)) --in-flight 32 --queues-for vfsvm=4 --no-limit "${layout[@]}" \
        --ops getattr,lookup,read-4k,write-4k "${backends[@]}" || rc=1
fi
exit $rc
