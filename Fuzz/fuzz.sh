#!/bin/bash
# Coverage-guided fuzzing of the parsers that take guest and frontend bytes
# (libFuzzer through SwiftPM's --sanitize=fuzzer, with AddressSanitizer).
#
#   Fuzz/fuzz.sh build                  build every target (release, into .build-fuzz)
#   Fuzz/fuzz.sh run SECONDS [TARGET..] run each target (default: all) for SECONDS,
#                                        one at a time; print executions per second
#                                        and totals; exit 1 if any target crashed
#   Fuzz/fuzz.sh seeds                  rewrite Fuzz/Corpus/<target>/ from the
#                                        targets' seed generators (after a format change)
#
# Targets: virtqueue (split/packed descriptor chains over guest memory),
# fuse (FUSE requests against a PassthroughFileSystem on a scratch tmpfs,
# checking nothing outside the share changed), vhost-user (message sequences
# with real fds), virtio-mmio (the register file), virtio-pci (configuration
# space and BAR0). The seeds in Fuzz/Corpus
# are read-only inputs; what a run finds goes to .build-fuzz/corpus/<target>,
# crashes to .build-fuzz/crashes/<target>/. A crash becomes a regression
# test in the unit suite, and its input goes to Fuzz/Corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
SWIFT=${SWIFT:-$(command -v swift || echo /opt/swift/usr/bin/swift)}
scratch=$top/.build-fuzz
all_targets=(virtqueue fuse vhost-user virtio-mmio virtio-pci)

compile() {
    # --sanitize=fuzzer only links libFuzzer in: the compile jobs get just
    # -sanitize=address, so coverage is asked for explicitly (without it the
    # targets fuzz blind: a few hundred counters instead of ~20,000).
    "$SWIFT" build -c release --package-path Fuzz --scratch-path "$scratch" \
        --sanitize=fuzzer --sanitize=address \
        -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table 2>&1 |
        grep -v 'ld.gold: warning: Cannot export local symbol' || true
}

# Coverage counters libFuzzer finds in a target.
counters() { "$1" -runs=0 2>&1 | sed -n 's/.*(\([0-9]*\) inline 8-bit counters).*/\1/p' | head -1; }

build() {
    compile
    for t in "${all_targets[@]}"; do
        [ -x "$scratch/release/fuzz-$t" ] || { echo "fuzz: building fuzz-$t failed"; exit 1; }
        if [ "$(counters "$scratch/release/fuzz-$t")" -lt 5000 ] 2>/dev/null; then
            # SwiftPM does not recompile when only flags change: objects from
            # a build with other flags are stale. Start over once.
            echo "fuzz: fuzz-$t has too few coverage counters; rebuilding from clean"
            rm -rf "$scratch/x86_64-unknown-linux-gnu/release"
            compile
            break
        fi
    done
    for t in "${all_targets[@]}"; do
        local n
        n=$(counters "$scratch/release/fuzz-$t")
        [ "${n:-0}" -ge 5000 ] || { echo "fuzz: fuzz-$t is not instrumented for coverage ($n counters)"; exit 1; }
        echo "fuzz: fuzz-$t: $n coverage counters"
    done
}

# libFuzzer's own crash handling; Swift's backtracer would stall it.
export SWIFT_BACKTRACE=enable=no
# A smaller quarantine keeps the resident size of long runs bounded.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=64:detect_leaks=0}

run() {
    local seconds=$1; shift
    local targets=("$@")
    [ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
    local failed=0
    mkdir -p "$scratch/logs"
    printf '%-12s %8s %14s %10s %8s %s\n' target seconds executions exec/s rss_mb result
    for t in "${targets[@]}"; do
        local bin=$scratch/release/fuzz-$t
        [ -x "$bin" ] || { echo "fuzz: $bin is missing (run: Fuzz/fuzz.sh build)"; exit 1; }
        mkdir -p "$scratch/corpus/$t" "$scratch/crashes/$t"
        local log=$scratch/logs/$t.log
        local rc=0
        # Absolute paths: the FUSE target's xattr calls change its thread's
        # working directory.
        "$bin" -max_total_time="$seconds" -print_final_stats=1 -timeout=20 -rss_limit_mb=4096 \
            -artifact_prefix="$scratch/crashes/$t/" "$scratch/corpus/$t" "$top/Fuzz/Corpus/$t" >"$log" 2>&1 || rc=$?
        local execs rate rss result
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
        if [ "$rc" -eq 0 ]; then
            result=ok
        else
            result="FAILED (exit $rc): $(ls "$scratch/crashes/$t" | head -3 | tr '\n' ' ')see $log"
            failed=1
        fi
        # A crashed FUSE target leaves its (empty) scratch mount point.
        [ "$t" = fuse ] && rmdir /tmp/vfsvm-fuzz-fuse-* 2>/dev/null || true
        printf '%-12s %8s %14s %10s %8s %s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${rss:-?}" "$result"
        if [ "$rc" -ne 0 ]; then grep -E 'invariant failed|Fatal error|ERROR: AddressSanitizer|SUMMARY' "$log" | head -5 || true; fi
    done
    return $failed
}

seeds() {
    for t in "${all_targets[@]}"; do
        rm -rf "Fuzz/Corpus/$t"
        mkdir -p "Fuzz/Corpus/$t"
        VFSVM_FUZZ_WRITE_SEEDS="$top/Fuzz/Corpus/$t" "$scratch/release/fuzz-$t"
        echo "fuzz: $(ls "Fuzz/Corpus/$t" | wc -l) seeds in Fuzz/Corpus/$t"
    done
}

case "${1:-}" in
    build) build ;;
    run) shift; run "${1:?usage: fuzz.sh run SECONDS [TARGET...]}" "${@:2}" ;;
    seeds) seeds ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
