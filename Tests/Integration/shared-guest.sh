#!/bin/sh
# shared-guest.sh ROLE — one of the two guests of nightly's "two guests share
# one directory" case (nightly-shared.sh). Both guests mount the SAME host
# directory twice: /run/mnt/never (cache=never) and /run/mnt/auto
# (cache=auto). ROLE a takes locks and writes; ROLE b contends and reads.
# They synchronise through marker files on the cache=never mount (polled,
# with a timeout), never by sleeping alone. Results: one line per sub-case,
# "PASS: NAME (detail)" or "FAIL: NAME (why)", on the console and in
# /run/mnt/never/results-ROLE.txt, which the host reads.
# Debian's userland (--rootfs): util-linux flock, perl for fcntl locks.
role=${1:?usage: shared-guest.sh a|b}
N=/run/mnt/never
A=/run/mnt/auto
res=$N/results-$role.txt
: >"$res"
pass() { echo "PASS: $1 ($2)" | tee -a "$res"; }
fail() { echo "FAIL: $1 ($2)" | tee -a "$res"; }
# wait_for FILE [TENTHS]: FILE appears on the share within TENTHS/10 s (default 120 s)
wait_for() {
    i=0
    while [ ! -e "$N/$1" ]; do
        i=$((i + 1))
        [ $i -lt "${2:-1200}" ] || { echo "shared-guest $role: no $1 after $(( ${2:-1200} / 10 )) s"; return 1; }
        sleep 0.1
    done
}
mark() { echo "$role" >"$N/$1"; }
plock=$N/posix-lock.pl

case $role in
a)
    # --- flock: hold it until b says it is waiting, then a little longer
    # (so b's flock is blocked in the host kernel), then say so and release.
    flock "$N/lk-flock" sh -c "
        echo a >'$N/m-flock-held'
        i=0; while [ ! -e '$N/m-flock-waiting' ]; do i=\$((i+1)); [ \$i -lt 1200 ] || exit 3; sleep 0.1; done
        sleep 3
        echo a >'$N/m-flock-releasing'
    " || fail flock-a "guest a could not hold the flock ($?)"
    # --- the same with a POSIX (fcntl F_SETLKW) write lock
    perl "$plock" "$N/lk-posix" wait sh -c "
        echo a >'$N/m-posix-held'
        i=0; while [ ! -e '$N/m-posix-waiting' ]; do i=\$((i+1)); [ \$i -lt 1200 ] || exit 3; sleep 0.1; done
        sleep 3
        echo a >'$N/m-posix-releasing'
    " || fail posix-a "guest a could not hold the POSIX lock ($?)"
    # --- a file written and closed here, read in b; then rewritten (same
    # size, other bytes) and read again in b, which has it cached by then
    for c in never auto; do
        d=$( [ $c = never ] && echo "$N" || echo "$A" )
        head -c 3000000 /dev/urandom >"$d/data-$c.bin" && md5sum <"$d/data-$c.bin" | cut -d' ' -f1 >"$N/md5-$c-1"
        mark "m-$c-written-1"
        wait_for "m-$c-read-1" || break
        head -c 3000000 /dev/urandom >"$d/data-$c.bin" && md5sum <"$d/data-$c.bin" | cut -d' ' -f1 >"$N/md5-$c-2"
        mark "m-$c-written-2"
        wait_for "m-$c-read-2" || break
    done
    wait_for m-b-done
    ;;
b)
    wait_for m-flock-held || exit 1
    if flock -n "$N/lk-flock" true; then fail flock "flock -n got the lock guest a holds"; fi
    mark m-flock-waiting
    flock "$N/lk-flock" true
    if [ -e "$N/m-flock-releasing" ]; then pass flock "b's flock waited until a released it"; else fail flock "b's flock returned before a released it"; fi

    wait_for m-posix-held || exit 1
    perl "$plock" "$N/lk-posix" try; t=$?
    [ $t -eq 11 ] || fail posix-lock "F_SETLK on a's locked range gave status $t, not EAGAIN"
    mark m-posix-waiting
    perl "$plock" "$N/lk-posix" wait true; w=$?
    if [ $w -eq 0 ] && [ -e "$N/m-posix-releasing" ]; then
        [ $t -eq 11 ] && pass posix-lock "F_SETLK refused (EAGAIN), F_SETLKW waited until a released"
    else
        fail posix-lock "F_SETLKW status $w, returned before a released: $([ -e "$N/m-posix-releasing" ] && echo no || echo yes)"
    fi

    for c in never auto; do
        d=$( [ $c = never ] && echo "$N" || echo "$A" )
        why=""
        for v in 1 2; do
            wait_for "m-$c-written-$v" || { why="no write $v from a"; break; }
            got=$(md5sum <"$d/data-$c.bin" | cut -d' ' -f1)
            want=$(cat "$N/md5-$c-$v")
            [ "$got" = "$want" ] || why="${why:+$why; }version $v reads $got, a wrote $want"
            mark "m-$c-read-$v"
        done
        if [ -z "$why" ]; then pass "file-$c" "3 MB written in a read intact in b, then rewritten and read again"; else fail "file-$c" "$why"; fi
    done
    mark m-b-done
    ;;
esac
echo "shared-guest $role: done"
exit 0
