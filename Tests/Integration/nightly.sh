#!/bin/bash
# nightly.sh — the matrix of `vfsvm run` boots a nightly job runs (first
# version): with the Images Linux guest on the path --accel auto measures,
# the guest workload and the host manifest check for every cell of
#   ring split|packed × request queues 1|2 × cache never|auto|always
# then the root file system boots (the rootfs disk as GUEST, --rootfs DIR:ro).
# One PASS/FAIL line per case and a total; a JUnit XML report (one testcase
# per cell, the console log attached on failure) in $NIGHTLY_JUNIT (default
# nightly-junit.xml in the current directory).
#
#   nightly.sh PATH-TO-vfsvm
#   NIGHTLY_CELLS=REGEX   run only the workload cells whose name matches
#                         (e.g. 'split-q1-(never|auto)')
#   NIGHTLY_CASES=LIST    run only these cases (blank- or comma-separated):
#                         matrix rootfs shared tree kill (default: all)
#
# Each cell prints which path --accel auto took and its figure.
set -u
VFSVM=$(realpath "${1:?usage: nightly.sh PATH-TO-vfsvm}")
top=$(cd "$(dirname "$0")/../.." && pwd)
here=$top/Tests/Integration
out=$top/Images/out
guest=$out/guest.img
junit=${NIGHTLY_JUNIT:-$PWD/nightly-junit.xml}
filter=${NIGHTLY_CELLS:-.}
cases_wanted=" $(echo "${NIGHTLY_CASES:-matrix rootfs shared tree kill}" | tr ',' ' ') "
want_case() { [[ $cases_wanted == *" $1 "* ]]; }
. "$here/check.sh"
. "$here/nightly-shared.sh"

work=$(mktemp -d /tmp/vfsvm-nightly.XXXXXX)
trap 'if [ "$fail" -eq 0 ]; then rm -rf "$work"; else echo "nightly: kept $work"; fi' EXIT
cases=$work/cases.xml
: >"$cases"
start_all=$(date +%s.%N)

xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g' | tr -d '\000-\010\013\014\016-\037'; }
# record CLASS NAME SECONDS OK WHY LOG
record() {
    local class=$1 name=$2 secs=$3 good=$4 why=$5 log=$6
    {
        printf '  <testcase classname="%s" name="%s" time="%s">\n' "$class" "$name" "$secs"
        if [ "$good" -ne 1 ]; then
            printf '    <failure message="%s"/>\n' "$(printf '%s' "$why" | xml_escape)"
            printf '    <system-out>%s</system-out>\n' "$(tail -c 20000 "$log" 2>/dev/null | xml_escape)"
        fi
        printf '  </testcase>\n'
    } >>"$cases"
    if [ "$good" -eq 1 ]; then ok "$class/$name ($secs s)"; else bad "$class/$name" "$why"; fi
}
elapsed() { echo "$(date +%s.%N) - $1" | bc | awk '{printf "%.1f", $1}'; }

for ring in split packed; do
    want_case matrix || break
    for q in 1 2; do
        for cache in never auto always; do
            name=$ring-q$q-$cache
            [[ $name =~ $filter ]] || continue
            s=$work/$name
            mkdir -p "$s"
            cp "$here/guest-workload.sh" "$s/.vfsvm-test.sh"
            cp "$here/check.sh" "$s/.vfsvm-check.sh"
            printf 'BIG_MB=16\nNFILES=300\nREQUIRE_XATTR=0\n' >"$s/.vfsvm-test.env"
            t0=$(date +%s.%N)
            "$VFSVM" run --timeout 600 --ring "$ring" --request-queues "$q" --share "$s:fs:cache=$cache" \
                --append "vfsvm.cmd=test" "$guest" </dev/null >"$work/$name.log" 2>&1
            rc=$?
            secs=$(elapsed "$t0")
            path=$(grep -o 'accel auto: [a-z]*.*took [0-9.]* ms' "$work/$name.log" | sed 's/ (.*because the 40002-instruction calibration guest//')
            echo "nightly: $name: $path"
            status=$(sed -n 's/^VFSVM-GUEST-EXIT status=\([0-9]*\).*/\1/p' "$work/$name.log" | tail -1)
            why=""
            [ $rc -eq 0 ] || why="vfsvm run exited $rc"
            [ "$status" = 0 ] || why="${why:+$why; }guest workload status '${status}': $(grep FAIL "$work/$name.log" | head -3 | tr '\n' ' ')"
            grep -q "ring=$ring" "$work/$name.log" || why="${why:+$why; }the device is not on the $ring ring"
            if ! m=$("$here/verify-manifest.sh" "$s" 2>&1); then why="${why:+$why; }manifest: $(echo "$m" | tail -2 | tr '\n' ' ')"; fi
            echo "$m" | tail -1 >>"$work/$name.log"
            record workload "$name" "$secs" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$work/$name.log"
        done
    done
done

if want_case rootfs && { [[ rootfs-disk =~ $filter ]] || [ "$filter" = . ]; }; then
    cp --sparse=always "$out/rootfs.img" "$work/rootfs.img"
    mkdir -p "$work/data"
    t0=$(date +%s.%N)
    "$VFSVM" run --timeout 600 --share "$work/data:data" --append 'vfsvm.cmd=dpkg%20-l|grep%20-c%20^ii>/mnt/data/count' "$work/rootfs.img" </dev/null >"$work/rootfs-disk.log" 2>&1
    rc=$?
    want=$(grep -c '^Package:' "$out/rootfs/var/lib/dpkg/status")
    got=$(cat "$work/data/count" 2>/dev/null)
    why=""; [ $rc -eq 0 ] && [ "$got" = "$want" ] || why="exit $rc, dpkg -l counted '$got', the tree has $want"
    record rootfs disk "$(elapsed "$t0")" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$work/rootfs-disk.log"

    rm -f "$work/data/count"
    t0=$(date +%s.%N)
    "$VFSVM" run --timeout 600 --rootfs "$out/rootfs:ro" --share "$work/data:data" --append 'vfsvm.mount=data:/mnt vfsvm.cmd=dpkg%20-l|grep%20-c%20^ii>/mnt/count' "$guest" </dev/null >"$work/rootfs-dir.log" 2>&1
    rc=$?
    got=$(cat "$work/data/count" 2>/dev/null)
    why=""; [ $rc -eq 0 ] && [ "$got" = "$want" ] || why="exit $rc, dpkg -l counted '$got', the tree has $want"
    record rootfs host-directory "$(elapsed "$t0")" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$work/rootfs-dir.log"
fi

want_case shared && case_shared
want_case tree && case_tree
want_case kill && case_kill

total=$(elapsed "$start_all")
{
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    printf '<testsuites name="vfsvm-nightly" tests="%s" failures="%s" time="%s">\n' $((pass + fail)) "$fail" "$total"
    printf ' <testsuite name="vfsvm-nightly" tests="%s" failures="%s" errors="0" skipped="0" time="%s" timestamp="%s" hostname="%s">\n' \
        $((pass + fail)) "$fail" "$total" "$(date -u +%Y-%m-%dT%H:%M:%S)" "$(hostname)"
    cat "$cases"
    echo ' </testsuite>'
    echo '</testsuites>'
} >"$junit"
echo "nightly: JUnit report in $junit, $total s in all"
summary nightly
