# nightly-shared.sh — nightly cases beyond the matrix (sourced by nightly.sh,
# which provides VFSVM, here, out, guest, work, record, elapsed):
#   case_shared  two guests at once on one host directory: flock and POSIX
#                locks taken in one block the other until released; a file
#                written and closed in one reads intact in the other
#                (cache=never and cache=auto)

# case_shared: both guests boot Debian's userland (--rootfs, read-only; it
# has util-linux flock and perl) and mount the same host directory twice,
# cache=never and cache=auto, each `vfsvm run` with its own serve children.
# They run shared-guest.sh a / b concurrently and synchronise through marker
# files in the share; guest b reports one line per sub-case.
case_shared() {
    local d=$work/shared s pa pb rca rcb t0 secs sub line why
    mkdir -p "$d/dir"
    s=$d/dir
    cp "$here/shared-guest.sh" "$here/posix-lock.pl" "$s/"
    t0=$(date +%s.%N)
    for r in a b; do
        "$VFSVM" run --timeout 600 --rootfs "$out/rootfs:ro" --share "$s:never:cache=never" --share "$s:auto:cache=auto" \
            --append "vfsvm.cmd=sh%20/run/mnt/never/shared-guest.sh%20$r" "$guest" </dev/null >"$d/$r.log" 2>&1 &
        eval "p$r=\$!"
    done
    wait "$pa"; rca=$?
    wait "$pb"; rcb=$?
    secs=$(elapsed "$t0")
    cat "$d/a.log" "$d/b.log" >"$d/both.log"
    for sub in flock posix-lock file-never file-auto; do
        line=$(grep -E "^(PASS|FAIL): $sub " "$s/results-b.txt" 2>/dev/null | head -1)
        why=""
        case $line in
            PASS:*) ;;
            FAIL:*) why=${line#FAIL: } ;;
            *) why="guest b reported nothing for $sub (vfsvm run a exited $rca, b $rcb)" ;;
        esac
        # guest a's own failures (it could not hold the lock) count against the lock cases
        case $sub in
            flock) a=$(grep "^FAIL: flock-a" "$s/results-a.txt" 2>/dev/null) ;;
            posix-lock) a=$(grep "^FAIL: posix-a" "$s/results-a.txt" 2>/dev/null) ;;
            *) a="" ;;
        esac
        [ -z "$a" ] || why="${why:+$why; }$a"
        [ "$rca" -eq 0 ] && [ "$rcb" -eq 0 ] || why="${why:+$why; }vfsvm run exited $rca (a) and $rcb (b)"
        record two-guests "$sub" "$secs" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$d/both.log"
    done
}
