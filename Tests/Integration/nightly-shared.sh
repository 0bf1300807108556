# nightly-shared.sh — nightly cases beyond the matrix (sourced by nightly.sh,
# which provides VFSVM, here, out, guest, work, record, elapsed):
#   case_shared  two guests at once on one host directory: flock and POSIX
#                locks taken in one block the other until released; a file
#                written and closed in one reads intact in the other
#                (cache=never and cache=auto)
#   case_tree    a 2,000-file tree written in the guest, checked byte for
#                byte (size + md5 per file, nothing missing or extra) on the host
#   case_kill    SIGKILL to `vfsvm run` while its guest writes: nothing left
#                running or on disk, the share intact, a fresh run reads it

# case_shared: both guests boot Debian's userland (--rootfs, read-only; it
# has util-linux flock and perl) and mount the same host directory twice,
# cache=never and cache=auto, each `vfsvm run` with its own serve children.
# They run shared-guest.sh a / b concurrently and synchronise through marker
# files in the share; guest b reports one line per sub-case.
case_shared() {
    local d=$work/shared s pa pb rca rcb t0 secs sub line why a r
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

# case_tree: tree-guest.sh writes 2,000 files in 110 nested directories
# (0 bytes to 128 KiB + 1) into the share; the host checks each file's size
# and md5 against the guest's manifest (made from the guest's RAM copy) and
# that nothing is missing or extra (verify-manifest.sh), and the counts.
case_tree() {
    local s=$work/tree t0 rc status why m nf nd
    mkdir -p "$s"
    cp "$here/tree-guest.sh" "$s/.vfsvm-test.sh"
    t0=$(date +%s.%N)
    "$VFSVM" run --timeout 900 --share "$s:fs" --append "vfsvm.cmd=test" "$guest" </dev/null >"$work/tree.log" 2>&1
    rc=$?
    status=$(sed -n 's/^VFSVM-GUEST-EXIT status=\([0-9]*\).*/\1/p' "$work/tree.log" | tail -1)
    why=""
    [ $rc -eq 0 ] && [ "$status" = 0 ] || why="vfsvm run exited $rc, guest status '$status'"
    if ! m=$("$here/verify-manifest.sh" "$s" 2>&1); then why="${why:+$why; }manifest: $(echo "$m" | tail -3 | tr '\n' ' ')"; fi
    echo "$m" | tail -1 >>"$work/tree.log"
    nf=$(find "$s/vfsvm-work" -type f 2>/dev/null | wc -l)
    nd=$(find "$s/vfsvm-work" -mindepth 1 -type d 2>/dev/null | wc -l)
    [ "$nf" -eq 2000 ] && [ "$nd" -eq 110 ] || why="${why:+$why; }the host has $nf files in $nd directories, not 2000 in 110"
    record tree 2000-files "$(elapsed "$t0")" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$work/tree.log"
}

# case_kill: kill-guest.sh syncs durable files, then writes big.bin without
# end; once it has passed 4 MiB on the host, SIGKILL goes to `vfsvm run`.
# Then: QEMU and the serve children die with it (PR_SET_PDEATHSIG) and no
# private directory or socket is left; the durable files are intact and
# big.bin is a prefix of the written stream; a fresh `vfsvm run` on the same
# share boots and reads the same bytes the host has.
case_kill() {
    local s=$work/kill k=$work/kill-tmp t0 pid kids left why i size m p rc
    mkdir -p "$s" "$k"
    cp "$here/kill-guest.sh" "$s/.vfsvm-test.sh"
    t0=$(date +%s.%N)
    TMPDIR=$k "$VFSVM" run --timeout 600 --share "$s:fs" --append "vfsvm.cmd=test" "$guest" </dev/null >"$work/kill.log" 2>&1 &
    pid=$!
    why=""
    for i in $(seq 3000); do
        size=$(stat -c %s "$s/big.bin" 2>/dev/null || echo 0)
        [ -e "$s/durable-done" ] && [ "$size" -ge 4194304 ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    kids=$(pgrep -P $pid | tr '\n' ' ')
    if [ "$size" -lt 4194304 ]; then why="big.bin reached only $size bytes"; fi
    echo "nightly: kill: SIGKILL to vfsvm run $pid (children $kids) with big.bin at $size bytes" | tee -a "$work/kill.log"
    kill -9 $pid
    wait $pid 2>/dev/null
    # the children get SIGKILL from the kernel; give them a moment to go
    for i in $(seq 100); do
        left=""
        for p in $kids; do kill -0 "$p" 2>/dev/null && left+=" $p($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-40))"; done
        left+=$(pgrep -f -- "$s" | grep -vx "$$" | sed 's/^/ /' | tr -d '\n')
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -n "$kids" ] || why="${why:+$why; }vfsvm run had no children to check"
    [ -z "$left" ] || why="${why:+$why; }still running 10 s after the kill:$left"
    left=$(find "$k" -mindepth 1 2>/dev/null | tr '\n' ' ')
    [ -z "$left" ] || why="${why:+$why; }left on disk: $left"
    record killed-mid-write no-process-or-socket-left "$(elapsed "$t0")" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$work/kill.log"

    why=""
    [ -e "$s/durable-done" ] || why="the guest never finished its durable files"
    if ! m=$("$here/verify-manifest.sh" "$s" 2>&1); then why="${why:+$why; }durable files: $(echo "$m" | tail -3 | tr '\n' ' ')"; fi
    if ! p=$(python3 "$here/check-prefix.py" "$s/vfsvm-work/block" "$s/big.bin" 2>&1); then why="${why:+$why; }big.bin: $p"; fi
    echo "nightly: kill: $(echo "$m" | tail -1); big.bin: $p" | tee -a "$work/kill.log"
    record killed-mid-write share-intact "$(elapsed "$t0")" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$work/kill.log"

    # a fresh run on the same share reads everything back
    t0=$(date +%s.%N)
    printf 'cd vfsvm-work && md5sum block durable-* >../reread.txt && cd .. && md5sum big.bin >>reread.txt\n' >"$s/.vfsvm-test.sh"
    (cd "$s/vfsvm-work" && md5sum block durable-* && cd .. && md5sum big.bin) >"$work/kill-host.txt" 2>&1
    "$VFSVM" run --timeout 600 --share "$s:fs" --append "vfsvm.cmd=test" "$guest" </dev/null >"$work/kill-reread.log" 2>&1
    rc=$?
    why=""
    [ $rc -eq 0 ] || why="vfsvm run exited $rc"
    cmp -s "$work/kill-host.txt" "$s/reread.txt" || why="${why:+$why; }the guest read other bytes: $(diff "$work/kill-host.txt" "$s/reread.txt" 2>&1 | head -4 | tr '\n' ' ')"
    record killed-mid-write fresh-run-reads-it "$(elapsed "$t0")" "$([ -z "$why" ] && echo 1 || echo 0)" "$why" "$work/kill-reread.log"
    rm -f "$s/.vfsvm-test.sh" "$s/reread.txt"
}
