#!/bin/bash
# bench-serve.sh — guest-side file-system benchmark: `vfsvm serve` against
# Debian's virtiofsd, both as the vhost-user-fs backend of the same QEMU guest,
# plus the same benchmark run natively on a host directory.
#
#   Benchmarks/bench-serve.sh [--quick] [--rounds N] [--count] [--queue-size N] [--keep] VFSVM_BIN
#
# Each round boots the guest (Images/out, TCG) once per backend, alternating
# which backend goes first, with the same QEMU command line (vhost-user-fs-pci
# with packed=off: virtiofsd has no packed ring, so both use the split ring),
# the same freshly emptied share directory and `-o cache=auto -o xattr` for
# both; the guest runs `vfsvm-bench /mnt` (Images/tools/vfsvm-bench.c) and
# its "BENCH name value unit" lines are taken from the console log. The host
# run is the same static binary on a directory next to the share, with
# --no-drop (the backends read from the warm host page cache, so the native
# figure does too; only the guest drops its caches).
#
# Prints a table: per result the median over the rounds for vfsvm, virtiofsd
# and host-native, vfsvm/virtiofsd and vfsvm-guest/host-native (for every
# unit here higher is better, so a ratio below 1 means vfsvm is slower).
#
#   --quick      one round, `vfsvm-bench --quick` (small counts)
#   --rounds N   rounds (default 3)
#   --count      after the rounds, one more guest boot per backend with its
#                per-request debug log on (vfsvm serve -d, virtiofsd -d) and a
#                table of the FUSE requests each row sent, per backend and per
#                opcode (Benchmarks/bench-serve-counts.awk splits the log into
#                rows). Round trips are what TCG does not blur; the counting
#                boots are not timed. --rounds 0 --count: counts only.
#   --queue-size N  vhost-user-fs-pci queue-size for both backends (default:
#                QEMU's 128; `vfsvm run` uses 1024). Linux's virtio_fs caps a
#                request at queue size - 4 pages, so with 128 a 1 MiB write
#                goes out as 124+124+8 pages whatever max_pages INIT says.
#   --keep       keep the work directory (console and backend logs, raw TSV)
# Environment:
#   VFSVM_ARGS       extra `vfsvm serve` arguments, e.g. "--thread-pool-size 4"
#   VIRTIOFSD_ARGS   extra virtiofsd arguments
#   VFSVM_BENCH_INIT benchmark knob `vfsvm serve` reads (not a user option):
#                    what its FUSE_INIT reply offers and its entry/attribute
#                    timeouts, e.g. "readdirplus=off", "max_pages=32",
#                    "timeout=86400", "negative_timeout=1" (all settings:
#                    Sources/VfsvmConfig/InitTuning.swift); named in the
#                    table headers when set
#   VIRTIOFSD        virtiofsd binary (default /usr/lib/qemu/virtiofsd)
#   VFSVM_BENCH_ARGS overrides the vfsvm-bench counts, e.g. "--meta 500 --mib 16"
#   TMPDIR           where the share and host directories go (default /tmp)
# Exit 0 when every run finished; 1 when a run failed (its logs are kept); 2
# for bad arguments.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images=$here/../Images
die() { echo "bench-serve: $*" >&2; exit 2; }

rounds="" quick=0 keep=0 count=0 qsize="" bin=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1; shift ;;
        --rounds) [ $# -ge 2 ] || die "--rounds needs a value"
                  [[ $2 =~ ^[0-9][0-9]?$ ]] || die "--rounds wants 0..99"; rounds=$2; shift 2 ;;
        --count) count=1; shift ;;
        --queue-size) [ $# -ge 2 ] || die "--queue-size needs a value"
                      case $2 in 64|128|256|512|1024) qsize=$2 ;; *) die "--queue-size wants 64, 128, 256, 512 or 1024" ;; esac; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$bin" ] || die "one VFSVM_BIN only"; bin=$1; shift ;;
    esac
done
[ -n "$bin" ] || die "usage: bench-serve.sh [--quick] [--rounds N] [--keep] VFSVM_BIN"
[ -x "$bin" ] || die "$bin is not executable (swift build -c release?)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
virtiofsd=${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}
[ -x "$virtiofsd" ] || die "no virtiofsd at $virtiofsd (apt-get install qemu-system-x86)"
hostbench=$images/out/vfsvm-bench
for f in "$hostbench" "$images/out/vmlinuz" "$images/out/initramfs.cpio.gz"; do
    [ -f "$f" ] || die "$f is missing: run make -C Images"
done
case $bin in
    */release/*) ;;
    *) echo "bench-serve: warning: $bin does not look like a release build" >&2 ;;
esac
[ -n "$rounds" ] || { if [ $quick -eq 1 ]; then rounds=1; else rounds=3; fi; }
[ "$rounds" -gt 0 ] || [ $count -eq 1 ] || die "--rounds 0 only with --count"
benchargs=${VFSVM_BENCH_ARGS:-}
[ $quick -eq 0 ] || benchargs="--quick $benchargs"

# shellcheck source=../Tests/Integration/backend.sh
source "$here/../Tests/Integration/backend.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/vfsvm-bench-serve.XXXXXX")
raw=$work/results.tsv
: > "$raw"
failed=0
cleanup() {
    stop_backend
    rm -rf "$work/share" "$work/host"
    if [ $keep -eq 1 ] || [ $failed -eq 1 ]; then
        echo "bench-serve: logs and raw results kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'failed=1; exit 130' INT TERM HUP

# collect LABEL ROUND FILE [TABLE]: BENCH lines of FILE into the raw table
collect() {
    tr -d '\r' < "$3" | awk -v b="$1" -v r="$2" '
        $1 == "BENCH" && NF >= 4 { print b "\t" r "\t" $2 "\t" $3 "\t" $4; n++ }
        $1 == "BENCH-DONE" { done = 1 }
        END { exit !(done && n == 6) }' >> "${4:-$raw}"
}

run_guest() { # BACKEND ROUND [EXTRA-BACKEND-ARGS]
    local b=$1 r=$2 extra=${3:-} log=$work/console-$1-$2.log blog=$work/backend-$1-$2.log rc=0
    rm -rf "$work/share"; mkdir "$work/share"
    if [ "$b" = vfsvm ]; then
        VFSVM_BACKEND=vfsvm VFSVM_BIN=$bin VFSVM_BACKEND_ARGS="${VFSVM_ARGS:-} $extra" \
            start_backend "$work/sock" "$work/share" "$blog" || { failed=1; exit 1; }
    else
        VFSVM_BACKEND=virtiofsd VIRTIOFSD=$virtiofsd VFSVM_BACKEND_ARGS="${VIRTIOFSD_ARGS:-} $extra" \
            start_backend "$work/sock" "$work/share" "$blog" || { failed=1; exit 1; }
    fi
    "$here/../Tests/Integration/boot-qemu.sh" --socket "$work/sock" --tag bench --packed off ${qsize:+--queue-size "$qsize"} \
        --cmd "vfsvm-bench /mnt $benchargs" --log "$log" --quiet --timeout 600 \
        2> "$work/boot-$b-$r.err" || rc=$?
    stop_backend
    local into=$raw
    [ -z "$extra" ] || into=/dev/null  # counting boots: not timed
    if [ $rc -ne 0 ] || ! collect "$b" "$r" "$log" "$into"; then
        failed=1
        echo "bench-serve: round $r $b failed (boot-qemu status $rc); last console lines:" >&2
        tail -n 15 "$log" >&2
        cat "$work/boot-$b-$r.err" >&2
        exit 1
    fi
    printf '  %-9s %s\n' "$b" "$(sed -n 's/.*QEMU start to exit \([0-9.]*s\).*/\1 wall/p' "$work/boot-$b-$r.err")" >&2
}

run_host() { # ROUND
    local out=$work/host-$1.out
    rm -rf "$work/host"; mkdir "$work/host"
    # shellcheck disable=SC2086  # benchargs is a list of words
    if ! "$hostbench" "$work/host" --no-drop $benchargs > "$out" 2>&1 || ! collect host "$1" "$out"; then
        failed=1
        echo "bench-serve: round $1 host-native failed:" >&2; cat "$out" >&2
        exit 1
    fi
}

fstype=$(df --output=fstype "$work" | tail -n1)
echo "bench-serve: $rounds round(s), vfsvm-bench args '${benchargs:-(defaults)}', share on $fstype ($work)" >&2
start=$(date +%s)
for r in $(seq "$rounds"); do
    echo "bench-serve: round $r/$rounds" >&2
    if [ $((r % 2)) -eq 1 ]; then order="vfsvm virtiofsd"; else order="virtiofsd vfsvm"; fi
    for b in $order; do run_guest "$b" "$r"; done
    run_host "$r"
done
secs=$(( $(date +%s) - start ))

if [ $count -eq 1 ]; then
    echo "bench-serve: counting boots (per-request debug logs on)" >&2
    for b in vfsvm virtiofsd; do run_guest "$b" count -d; done
    counts=$work/counts.tsv
    for b in vfsvm virtiofsd; do
        awk -v backend="$b" -f "$here/bench-serve-counts.awk" "$work/backend-$b-count.log"
    done > "$counts"
fi

print_counts() {
    echo "FUSE requests per row (one counting boot per backend, -d logs split by Benchmarks/bench-serve-counts.awk)"
    echo "  round trips = requests with a reply (FORGET/BATCH_FORGET not counted); lower is better; ratio > 1 means vfsvm sends more"
    echo "  queue-size=${qsize:-128 (QEMU default)}; vfsvm args: '${VFSVM_ARGS:-} -d'; virtiofsd args: '${VIRTIOFSD_ARGS:-} -d'; counts: $(tr -d '\r' < "$work/console-vfsvm-count.log" | sed -n 's/^BENCH-CONFIG //p' | head -n1)"
    [ -z "${VFSVM_BENCH_INIT:-}" ] || echo "  vfsvm with the benchmark knob VFSVM_BENCH_INIT='$VFSVM_BENCH_INIT'"
    echo
    awk -F'\t' '
        { k = $2 SUBSEP $3; if ($1 == "vfsvm") v[k] = $4; else d[k] = $4; rows[$2] = 1
          if (!($3 in ops)) { ops[$3] = 1; oporder[++nops] = $3 } }
        END {
            nr = split("meta tree-build tree-walk tree-remove tar seq-write seq-read-cold randread-4k-qd1 outside-rows", order, " ")
            fmt = "%-18s %10s %10s %8s  %s\n"
            printf fmt, "row", "vfsvm", "virtiofsd", "ratio", "per opcode vfsvm/virtiofsd"
            for (i = 1; i <= nr; i++) {
                r = order[i]; if (!(r in rows)) continue
                a = v[r SUBSEP "ALL"] + 0; b = d[r SUBSEP "ALL"] + 0; detail = ""
                for (j = 1; j <= nops; j++) {
                    op = oporder[j]; if (op == "ALL") continue
                    x = v[r SUBSEP op] + 0; y = d[r SUBSEP op] + 0
                    if (x + y > 0) detail = detail sprintf(" %s %d/%d", op, x, y)
                }
                printf fmt, r, a, b, (b > 0 ? sprintf("%.2f", a / b) : "-"), detail
            }
        }' <(sort -t "$(printf '\t')" -k3,3 "$counts")
}

if [ "$rounds" -eq 0 ]; then
    echo
    print_counts
    exit 0
fi

cfg=$(tr -d '\r' < "$work/console-vfsvm-1.log" | sed -n 's/^BENCH-CONFIG //p' | head -n1)
echo
echo "vfsvm serve vs virtiofsd, guest-side (QEMU TCG, 1 vCPU, 512M), median of $rounds round(s), run took ${secs}s"
echo "  both backends: vhost-user-fs-pci packed=off (split ring; virtiofsd has no packed ring) queue-size=${qsize:-128 (QEMU default)}, -o cache=auto -o xattr,"
echo "  same QEMU command line, fresh empty share on $fstype each run; vfsvm args: '${VFSVM_ARGS:-}'; virtiofsd args: '${VIRTIOFSD_ARGS:-}'"
[ -z "${VFSVM_BENCH_INIT:-}" ] || echo "  vfsvm with the benchmark knob VFSVM_BENCH_INIT='$VFSVM_BENCH_INIT'"
echo "  counts: $cfg (guest drops its page cache before reads; host-native keeps the warm host page cache)"
[ $quick -eq 0 ] || echo "  QUICK RUN: small counts, one round by default; figures are indicative only"
echo "  higher is better everywhere; ratio < 1 means vfsvm is slower"
echo "  the machine may be shared: see the per-round spread below before trusting a ratio near 1"
echo
awk -F'\t' '
    function median(key,   n, i, j, t, a) {
        n = split(vals[key], a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { key = $1 SUBSEP $3; vals[key] = vals[key] (vals[key] == "" ? "" : " ") $4
      if (!($3 in unit)) { unit[$3] = $5; order[++n] = $3 } }
    END {
        fmt = "%-24s %-10s %12s %12s %10s %12s %10s\n"
        printf fmt, "result", "unit", "vfsvm", "virtiofsd", "vfsvm/vfsd", "host-native", "vfsvm/host"
        for (i = 1; i <= n; i++) {
            k = order[i]
            v = median("vfsvm" SUBSEP k); d = median("virtiofsd" SUBSEP k); h = median("host" SUBSEP k)
            printf fmt, k, unit[k], sprintf("%.1f", v), sprintf("%.1f", d),
                (d > 0 ? sprintf("%.2f", v / d) : "-"), sprintf("%.1f", h), (h > 0 ? sprintf("%.3f", v / h) : "-")
        }
    }' "$raw"
echo
echo "per-round values (vfsvm | virtiofsd | host):"
awk -F'\t' '{ key = $3; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
              v[$1, key] = v[$1, key] " " $4 }
    END { for (i = 1; i <= n; i++) { k = order[i]
          printf "  %-24s%s |%s |%s\n", k, v["vfsvm", k], v["virtiofsd", k], v["host", k] } }' "$raw"
if [ $count -eq 1 ]; then echo; print_counts; fi
