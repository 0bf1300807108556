#!/bin/bash
# link-order.sh — writes Scripts/vfsvm.order, the function order the release
# link of `vfsvm` uses (lld --symbol-ordering-file, see Package.swift).
#
# Why: the kernel maps file pages around every page fault (64 KiB here), so
# one function run at start-up or per request makes its whole neighbourhood
# resident. `vfsvm serve` runs ~2,200 functions (~0.8 MB of code) of a
# 10 MB .text; scattered, they kept 6.3 MB of it resident, placed together
# 4.5 MB (the rest is the standard library's objects whose functions share
# one plain .text section, which the linker can only move whole).
#
# How: `vfsvm serve` (release build, debug info stripped for valgrind 3.19,
# which cannot read lld's DWARF 5) runs under callgrind while bench-backend
# sends it one round of every operation; every function of the binary that
# ran is listed, in name order. Run it after changes that add or rename
# much of what serve runs (names that no longer exist are skipped by the
# linker; what is new simply stays where the linker puts it):
#
#   swift build -c release --product vfsvm && swift build -c release --product bench-backend
#   Scripts/link-order.sh .build/release/vfsvm .build/release/bench-backend
#   rm .build/release/vfsvm && swift build -c release --product vfsvm
#
# (SwiftPM does not know the order file is an input: remove the binary to
# relink with a new one.)
#
# Needs valgrind and binutils (objcopy, nm). The namespace sandbox and the seccomp
# filter are off under valgrind (it lacks fsopen, and makes calls the filter
# refuses); their set-up code runs once and stays out of the list.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: link-order.sh VFSVM_BIN BENCH_BACKEND_BIN" >&2; exit 2; }
vfsvm=$1 tool=$2
for b in "$vfsvm" "$tool"; do [ -x "$b" ] || { echo "link-order: $b is not executable" >&2; exit 2; }; done
command -v valgrind >/dev/null || { echo "link-order: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
out=$(cd "$(dirname "$0")" && pwd)/vfsvm.order
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
objcopy --strip-debug "$vfsvm" "$work/vfsvm"
"$tool" --rounds 1 --requests 100 --in-flight 1 --timeout 60000 --no-limit \
    --backend "vfsvm=valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
--callgrind-out-file=$work/callgrind.out $work/vfsvm serve --socket-path {socket} -o source={share} -o cache=auto \
--seccomp none --sandbox none" >"$work/bench.txt" 2>&1 || { cat "$work/bench.txt" >&2; exit 1; }
# Functions with a cost in the binary's own object; callgrind marks
# recursion levels with 'N and names unnamed code by address.
awk -v obj="$work/vfsvm" '
    /^ob=/ { mine = (substr($0, 4) == obj) }
    /^fn=/ && mine { name = substr($0, 4); sub(/\x27[0-9]+$/, "", name); if (name !~ /^0x/) print name }
' "$work/callgrind.out" | LC_ALL=C sort -u >"$work/ran"
# Only names the binary defines (callgrind also lists PLT stubs). Name
# order: some objects (the standard library's Swift.o, 1.6 MB) keep most of
# their functions in one plain .text that moves as a whole, so a finer order
# (own-section functions first, then the rest) measured no better.
nm --defined-only "$work/vfsvm" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | LC_ALL=C sort -u >"$work/defined"
LC_ALL=C comm -12 "$work/ran" "$work/defined" >"$out"
echo "link-order: $(wc -l <"$out") functions -> $out"
