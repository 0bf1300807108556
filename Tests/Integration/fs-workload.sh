#!/bin/bash
# Runs real programs on a mounted share and checks the results through the
# host directory backing it.
#
#   fs-workload.sh MOUNT HOSTDIR
#
# MOUNT is where the share is mounted (vfsvm mount, or a guest's view);
# HOSTDIR is the directory behind it. Run with MOUNT == HOSTDIR it checks the
# workload itself against the host file system. Prints one PASS/FAIL line per
# check and ends with "N passed, N failed"; exits non-zero on any failure.
set -u
MNT=${1:?usage: fs-workload.sh MOUNT HOSTDIR}
HOST=${2:?usage: fs-workload.sh MOUNT HOSTDIR}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
# ok/bad/check/summary
. "$(dirname "$0")/check.sh"
scratch=$(mktemp -d /tmp/vfsvm-workload.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
W=$MNT/workload H=$HOST/workload
rm -rf "$W"; mkdir -p "$W"

# --- tar extract and diff -r against the same extraction on the host
tar_src=$(cd "$(dirname "$0")/../.." && pwd)/Sources
tar -C "$tar_src/.." -cf "$scratch/src.tar" Sources
mkdir -p "$scratch/ref" "$W/tar"
tar -C "$scratch/ref" -xf "$scratch/src.tar"
check "tar extract onto the share" tar -C "$W/tar" -xf "$scratch/src.tar"
check "diff -r of the extraction (through the mount)" diff -r "$scratch/ref" "$W/tar"
check "diff -r of the extraction (host side)" diff -r "$scratch/ref" "$H/tar"

# --- cp -a keeps modes, symlinks and times
mkdir -p "$scratch/tree/sub"
echo one > "$scratch/tree/a"; chmod 0640 "$scratch/tree/a"
echo two > "$scratch/tree/sub/b"; chmod 0755 "$scratch/tree/sub/b"
ln -s ../a "$scratch/tree/sub/link"
touch -d '2001-02-03 04:05:06' "$scratch/tree/a"
check "cp -a onto the share" cp -a "$scratch/tree" "$W/tree"
check "cp -a: contents and symlinks" diff -r --no-dereference "$scratch/tree" "$H/tree"
check "cp -a: modes" test "$(stat -c %a "$H/tree/a") $(stat -c %a "$H/tree/sub/b")" = "640 755"
check "cp -a: mtime" test "$(stat -c %Y "$H/tree/a")" = "$(stat -c %Y "$scratch/tree/a")"
check "cp -a: symlink target" test "$(readlink "$H/tree/sub/link")" = "../a"

# --- git
git_run() {
    cd "$W" && mkdir -p repo && cd repo && git init -q . &&
        echo hello > f.txt && git add f.txt &&
        git -c user.name=t -c user.email=t@t commit -qm first &&
        echo more >> f.txt && test "$(git status --porcelain)" = " M f.txt" &&
        git -c user.name=t -c user.email=t@t commit -qam second &&
        test "$(git log --oneline | wc -l)" = 2 && git fsck --no-progress >/dev/null
}
check "git init/add/commit/status/fsck" git_run
check "git repo visible on the host" git -C "$H/repo" log --oneline -1

# --- sqlite3 with two concurrent writers (POSIX locks)
sqlite3 "$W/db.sqlite" 'create table t(x integer);' >/dev/null 2>&1
writer() {
    for i in $(seq 1 100); do echo "insert into t values($1);"; done |
        sed '1i .timeout 20000' | sqlite3 "$W/db.sqlite"
}
sqlite_run() {
    writer 1 & local p1=$!
    writer 2 & local p2=$!
    wait $p1 && wait $p2 &&
        test "$(sqlite3 "$W/db.sqlite" 'select count(*) from t;')" = 200 &&
        test "$(sqlite3 "$H/db.sqlite" 'pragma integrity_check;')" = ok
}
check "sqlite3: two concurrent writers, 200 rows, integrity ok" sqlite_run

# --- flock(1) contention between the share and the host
touch "$W/lockfile"
flock_run() {
    flock "$H/lockfile" sleep 3 &
    local holder=$!
    sleep 0.5
    if flock -n "$W/lockfile" true; then kill $holder; echo "got a lock the host holds"; return 1; fi
    wait $holder
    flock -n "$W/lockfile" true
}
check "flock: a host lock blocks the share, then frees it" flock_run
waiters_run() {
    # More blocking waiters than the server has workers, all on the share,
    # while a holder on the share releases after a second: the release must
    # still get through (waiting lock requests must not take every worker).
    flock "$W/lockfile" sleep 1 &
    local holder=$! pids=() p ok=0
    sleep 0.3
    for _ in 1 2 3 4 5 6 7 8; do timeout -s KILL 20 flock "$W/lockfile" true & pids+=($!); done
    wait $holder || return 1
    for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
    [ $ok -eq 8 ] || { echo "$ok of 8 waiters got the lock"; return 1; }
}
check "flock: 8 blocking waiters on the share all get the lock after the holder releases" waiters_run
fcntl_run() {
    "$PY" - "$H/lockfile" "$W/lockfile" <<'PY'
import fcntl, os, sys, time
host, mnt = sys.argv[1], sys.argv[2]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    fd = os.open(host, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
    os.write(w, b"x"); time.sleep(2); os._exit(0)
os.read(r, 1)
fd = os.open(mnt, os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    sys.exit("POSIX lock granted while the host holds it")
except OSError:
    pass
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)  # a disjoint range is free
os.waitpid(pid, 0)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
PY
}
check "POSIX byte-range locks conflict with the host's" fcntl_run

# --- rename over an existing file, hard links, symlinks
rename_run() {
    echo old > "$W/target" && echo new > "$W/source" && mv -f "$W/source" "$W/target" &&
        test "$(cat "$H/target")" = new && test ! -e "$H/source"
}
check "rename over an existing file" rename_run
hardlink_run() {
    echo data > "$W/h1" && ln "$W/h1" "$W/h2" &&
        test "$(stat -c %h "$W/h1")" = 2 &&
        test "$(stat -c %i "$H/h1")" = "$(stat -c %i "$H/h2")" &&
        echo more >> "$W/h2" && test "$(cat "$W/h1")" = "$(printf 'data\nmore')"
}
check "hard links share an inode" hardlink_run
symlink_run() {
    ln -s "some/where" "$W/sl" && test "$(readlink "$W/sl")" = some/where &&
        test "$(readlink "$H/sl")" = some/where && test -L "$H/sl"
}
check "symlinks" symlink_run

# --- xattrs
xattr_run() {
    echo x > "$W/xf" && setfattr -n user.vfsvm -v hello "$W/xf" &&
        test "$(getfattr --only-values -n user.vfsvm "$H/xf")" = hello &&
        getfattr -d "$W/xf" | grep -q 'user.vfsvm="hello"' &&
        setfattr -x user.vfsvm "$W/xf" && ! getfattr -n user.vfsvm "$H/xf" >/dev/null 2>&1
}
check "xattrs set/get/list/remove" xattr_run

# --- sparse files, SEEK_HOLE/SEEK_DATA, offsets beyond 4 GiB
sparse_run() {
    "$PY" - "$W/sparse" "$H/sparse" <<'PY'
import os, sys
mnt, host = sys.argv[1], sys.argv[2]
fd = os.open(mnt, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 1 << 30)
off = (5 << 30) + 12345            # beyond 4 GiB
os.pwrite(fd, b"far away", off)
os.pwrite(fd, b"near", 1 << 20)
os.fsync(fd)
assert os.pread(fd, 8, off) == b"far away", "read back beyond 4 GiB"
assert os.fstat(fd).st_size == off + 8
data = os.lseek(fd, 0, os.SEEK_DATA)
assert data <= 1 << 20, f"SEEK_DATA from 0 found {data}"
hole = os.lseek(fd, 1 << 20, os.SEEK_HOLE)
assert (1 << 20) < hole < off, f"SEEK_HOLE after the first extent found {hole}"
assert os.lseek(fd, hole, os.SEEK_DATA) <= off
st = os.stat(host)
assert st.st_size == off + 8 and st.st_blocks * 512 < (64 << 20), "host file stays sparse"
with open(host, "rb") as f:
    f.seek(off); assert f.read() == b"far away"
PY
}
check "sparse file: SEEK_DATA/SEEK_HOLE, data beyond 4 GiB" sparse_run

# --- 10,000 entries in one directory; readdir while unlinking
bigdir_run() {
    "$PY" - "$W/big" "$H/big" <<'PY'
import os, sys
mnt, host = sys.argv[1], sys.argv[2]
os.mkdir(mnt)
for i in range(10000):
    with open(os.path.join(mnt, f"f{i:05d}"), "w") as f:
        f.write(str(i))
names = os.listdir(mnt)
assert len(names) == 10000 and len(set(names)) == 10000, f"listed {len(names)}"
assert len(os.listdir(host)) == 10000
seen = 0
with os.scandir(mnt) as it:
    for e in it:
        os.unlink(os.path.join(mnt, e.name)); seen += 1
assert seen == 10000, f"readdir while unlinking saw {seen} of 10000"
assert os.listdir(mnt) == [] and os.listdir(host) == []
PY
}
check "10,000 entries in one directory; readdir while unlinking" bigdir_run

# --- an open-then-unlinked file is still readable
unlinked_run() {
    "$PY" - "$W/gone" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "w") as f: f.write("still here")
fd = os.open(p, os.O_RDWR)
os.unlink(p)
assert not os.path.exists(p)
assert os.pread(fd, 100, 0) == b"still here"
os.pwrite(fd, b"STILL", 0)
assert os.pread(fd, 100, 0) == b"STILL here"
PY
}
check "open-then-unlinked file stays readable and writable" unlinked_run

rm -rf "$W"
summary fs-workload
