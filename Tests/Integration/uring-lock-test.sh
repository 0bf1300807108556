#!/bin/bash
# Lock waiters on a `vfsvm mount` served over FUSE over io_uring: a holder
# takes a lock on one file through the mount, WAITERS processes block on
# it, the holder lets go, and every waiter must get the lock within BOUND
# seconds. Each of RUNS fresh mounts has two rounds (a fresh mount: the
# rings used to start with one entry each, 2 per queue here, and grow one
# per wait). Each round starts the waiters at once and unlocks after a
# delay that varies (0 to 200 ms), so some rounds unlock while waiters are
# still arriving and some after all are blocked; rounds alternate flock(2)
# and fcntl(F_SETLKW).
#
# The kernel queues a request it cannot hand to a free ring entry and
# gives it out only when an entry commits a reply; a ring whose entries all
# hold lock waiters never commits, so an UNLOCK queued behind them stayed
# there (the waiters hung until killed: 4 of 30 mounts, twice). Last, more
# waiters than a queue has entries (OVER): the ones past what a queue may
# hold get ENOLCK, none hangs.
#
#   uring-lock-test.sh PATH-TO-vfsvm    (RUNS=30 mounts, ROUNDS=2 each,
#                                        WAITERS=8, BOUND=10 seconds, OVER=136)
set -u
VFSVM=$(realpath "${1:?usage: uring-lock-test.sh PATH-TO-vfsvm}")
RUNS=${RUNS:-30} ROUNDS=${ROUNDS:-2} WAITERS=${WAITERS:-8} BOUND=${BOUND:-10}
. "$(dirname "$0")/check.sh"
. "$(dirname "$0")/mount-helpers.sh"

if [ ! -c /dev/fuse ] || [ "$(id -u)" -ne 0 ]; then
    bad "uring-lock-test can run here" "needs root and /dev/fuse (uid $(id -u), /dev/fuse $( [ -c /dev/fuse ] && echo present || echo missing))"
    summary uring-lock-test
    exit 1
fi
param=/sys/module/fuse/parameters/enable_uring
if [ ! -e "$param" ]; then
    bad "uring-lock-test can run here" "this kernel has no $param (no FUSE over io_uring)"
    summary uring-lock-test
    exit 1
fi
orig_uring=$(cat "$param")

top=$(mktemp -d /tmp/vfsvm-uring-lock.XXXXXX)
host=$top/host mnt=$top/mnt log=$top/vfsvm.log
mkdir -p "$host" "$mnt"
cleanup() {
    echo "$orig_uring" > "$param" 2>/dev/null
    [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null
    mounted && umount -l "$mnt" 2>/dev/null
    rm -rf "$top"
}
trap cleanup EXIT

if ! echo Y > "$param"; then
    bad "uring-lock-test can run here" "cannot set $param to Y"
    summary uring-lock-test
    exit 1
fi
stop_mount() {  # SIGTERM; after 10 s SIGKILL and a lazy unmount. Sets stop_status.
    terminate_mount
    if [ "$status" = timeout ]; then kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; fi
    mounted && umount -l "$mnt" 2>/dev/null
    pid=
    stop_status=$status
}

# One line per round: "MOUNT ROUND KIND DELAY_MS GOT SLOWEST_S KILLED
# ENOLCK"; GOT < WAITERS is a hang (or a refusal). The holder is a process of its own (its unlock is one of the
# requests that may be stuck): the parent never touches the mount, so it
# keeps the bound and kills what is left.
rounds_py=$top/rounds.py
cat > "$rounds_py" <<'PY'
import errno, fcntl, os, signal, sys, time
path, rounds, waiters, bound, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
delays = [0, 0.001, 0.005, 0.02, 0.2]
def lock(fd, kind, op):
    if kind == "flock": fcntl.flock(fd, fcntl.LOCK_EX if op else fcntl.LOCK_UN)
    else: fcntl.lockf(fd, fcntl.LOCK_EX if op else fcntl.LOCK_UN)
for r in range(rounds):
    kind = "flock" if (run + r) % 2 == 0 else "fcntl"
    delay = delays[(run * rounds + r) % len(delays)]
    held_r, held_w = os.pipe()
    go_r, go_w = os.pipe()
    holder = os.fork()
    if holder == 0:
        fd = os.open(path, os.O_RDWR)
        lock(fd, kind, True)
        os.write(held_w, b"h")
        os.read(go_r, 1)
        lock(fd, kind, False)
        os.close(fd)
        os._exit(0)
    start = time.monotonic()
    pids = [holder]
    ready = os.read(held_r, 1) == b"h"
    for _ in range(waiters if ready else 0):
        p = os.fork()
        if p == 0:
            fd = os.open(path, os.O_RDWR)
            try:
                lock(fd, kind, True)
            except OSError as e:
                os._exit(3 if e.errno == errno.ENOLCK else 1)
            lock(fd, kind, False)
            os._exit(0)
        pids.append(p)
    time.sleep(delay)
    os.write(go_w, b"g")
    got, refused, slowest, left = 0, 0, 0.0, set(pids)
    while left and time.monotonic() - start < bound + delay:
        p, status = os.waitpid(-1, os.WNOHANG)
        if p == 0:
            time.sleep(0.005)
            continue
        left.discard(p)
        if p != holder and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            got += 1
            slowest = time.monotonic() - start
        elif p != holder and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3:
            refused += 1
    for p in left:
        os.kill(p, signal.SIGKILL)
    # A killed caller whose request the server holds ends only with its
    # answer: give up on it after 3 s (the server's SIGKILL ends it).
    stuck, until = set(left), time.monotonic() + 3
    while stuck and time.monotonic() < until:
        p, _ = os.waitpid(-1, os.WNOHANG)
        if p == 0: time.sleep(0.01)
        else: stuck.discard(p)
    for f in (held_r, held_w, go_r, go_w): os.close(f)
    print(f"{run} {r} {kind} {int(delay * 1000)} {got} {slowest:.3f} {len(left)} {refused}", flush=True)
PY

# A fresh mount per run: the rings start with as few entries as they
# have, where a burst of waiters finds them all taken.
: > "$top/rounds"
bad_stops=0
for run in $(seq 1 "$RUNS"); do
    start_mount
    if ! mounted; then bad "run $run: vfsvm mount mounts $mnt" "$(tail -3 "$log")"; stop_mount; continue; fi
    : > "$mnt/lk"
    if [ "$run" = 1 ]; then
        line=$(grep "request channel" "$log")
        if echo "$line" | grep -q "request channel: FUSE over io_uring"; then ok "requests come through FUSE over io_uring ($line)"
        else bad "requests come through FUSE over io_uring" "log: $line"; stop_mount; break; fi
    fi
    python3 "$rounds_py" "$mnt/lk" "$ROUNDS" "$WAITERS" "$BOUND" "$run" >> "$top/rounds"
    stop_mount
    [ "$stop_status" = 0 ] || { bad_stops=$((bad_stops + 1)); echo "  run $run: SIGTERM gave status $stop_status, log: $(tail -2 "$log" | tr '\n' ' ')"; }
done

total=$(wc -l < "$top/rounds")
hung=$(awk -v w="$WAITERS" '$5 < w || $7 > 0' "$top/rounds" | wc -l)
hung_runs=$(awk -v w="$WAITERS" '$5 < w || $7 > 0 { print $1 }' "$top/rounds" | sort -u | wc -l)
slowest=$(awk 'BEGIN { m = 0 } $6 > m { m = $6 } END { print m }' "$top/rounds")
echo "uring-lock-test: $RUNS mounts × $ROUNDS rounds × $WAITERS waiters: $hung of $total rounds ($hung_runs of $RUNS mounts) hung; slowest good round ${slowest}s"
awk -v w="$WAITERS" '$5 < w || $7 > 0 { print "  hung: mount " $1 " round " $2 " (" $3 ", unlock after " $4 " ms): " $5 " of " w " waiters got the lock, " $7 " processes killed" }' "$top/rounds"
if [ "$total" -eq $((RUNS * ROUNDS)) ] && [ "$hung" -eq 0 ]; then
    ok "every waiter got the lock within ${BOUND}s after the holder let go ($RUNS mounts × $ROUNDS rounds × $WAITERS waiters)"
else
    bad "every waiter got the lock within ${BOUND}s after the holder let go" "$hung of $total rounds hung ($((RUNS * ROUNDS)) planned)"
fi
if [ "$bad_stops" -eq 0 ]; then ok "SIGTERM unmounts and exits 0 after every run"; else bad "SIGTERM unmounts and exits 0 after every run" "$bad_stops runs did not"; fi

# More waiters than a queue has entries (OVER, default 136: two 2-CPU
# queues of 64): a queue keeps one entry free of waits, so those past
# that get ENOLCK ("too many locks") at once, never a hang; the others get
# the lock, and the mount serves locks afterwards.
OVER=${OVER:-136}
start_mount
if mounted; then
    : > "$mnt/lk"
    python3 "$rounds_py" "$mnt/lk" 1 "$OVER" "$BOUND" 0 > "$top/over"
    read -r _ _ kind _ got _ killed refused < "$top/over"
    echo "uring-lock-test: $OVER $kind waiters on one mount: $got got the lock, $refused got ENOLCK, $killed were killed"
    if [ "$killed" = 0 ] && [ $((got + refused)) -eq "$OVER" ] && [ "$got" -gt 0 ]; then
        ok "$OVER waiters: each gets the lock or ENOLCK within ${BOUND}s, none hangs ($got locks, $refused ENOLCK)"
    else
        bad "$OVER waiters: each gets the lock or ENOLCK within ${BOUND}s, none hangs" "$got locks, $refused ENOLCK, $killed killed"
    fi
    check "...and the mount grants a lock afterwards" timeout 10 flock -x -n "$mnt/lk" true
    stop_mount
    if [ "$stop_status" = 0 ]; then ok "SIGTERM unmounts and exits 0 after the $OVER waiters"; else bad "SIGTERM unmounts and exits 0 after the $OVER waiters" "status $stop_status"; fi
else
    bad "vfsvm mount mounts $mnt for the $OVER waiters" "$(tail -3 "$log")"
    stop_mount
fi
summary uring-lock-test
