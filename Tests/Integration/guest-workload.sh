#!/bin/sh
# guest-workload.sh — file-system workload run inside the vfsvm guest (busybox sh).
# The host copies it into the share as .vfsvm-test.sh; the guest's /init runs
# it for vfsvm.cmd=test (boot-qemu.sh --test). It works in ROOT/vfsvm-work,
# ROOT being the directory holding this script (or $1), and leaves behind:
#   ROOT/vfsvm-manifest.txt  one "name size md5" line per file left in
#                            vfsvm-work (names relative to it, no blanks),
#                            for the host to verify (verify-manifest.sh)
#   ROOT/vfsvm-results.txt   the PASS/FAIL/SKIP lines printed on the console
# It needs check.sh beside it (as .vfsvm-check.sh in ROOT, or in its own
# directory).
# Optional ROOT/.vfsvm-test.env (sourced) may set:
#   BIG_MB=64         size of the big file
#   NFILES=2000       files created in one directory
#   REQUIRE_XATTR=0   1: missing xattr support is a FAIL, not a SKIP
# Exit status: 0 when nothing failed, 1 otherwise.

ROOT=${1:-$(cd "$(dirname "$0")" && pwd)}
BIG_MB=64 NFILES=2000 REQUIRE_XATTR=0
[ -f "$ROOT/.vfsvm-test.env" ] && . "$ROOT/.vfsvm-test.env"
W=$ROOT/vfsvm-work
T=$(mktemp -d /tmp/wl.XXXXXX) || exit 1
RES=$ROOT/vfsvm-results.txt
: > "$RES"
# ok/bad/skip/summary (Tests/Integration/check.sh, copied into the share by
# run-workload.sh), every line also into the results file.
CHECK_LOG=$RES
if [ -f "$ROOT/.vfsvm-check.sh" ]; then . "$ROOT/.vfsvm-check.sh"; else . "$(dirname "$0")/check.sh"; fi
say() { check_say "$*"; }
# run FUNCTION: runs it in a subshell under set -e, output to $T/out, and
# returns its status. The subshell must not sit in an if/&&/|| condition:
# there the shell ignores set -e and a failed check in the middle of a test
# would go unnoticed.
run() {
    ( set -e; cd "$W"; "$1" ) > "$T/out" 2>&1
}
# t NAME FUNCTION: one test; its output becomes the failure reason.
t() {
    t0=$(cut -d' ' -f1 /proc/uptime)
    run "$2"; rc=$?
    if [ $rc -eq 0 ]; then
        ok "$1 ($(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.2fs", b - a }'))"
    else bad "$1" "$(tr '\n' ' ' < "$T/out" | head -c 400)"; fi
}
# expect A B [what]: fail with a message unless A = B
expect() { [ "$1" = "$2" ] || { echo "${3:-value}: got '$1', want '$2'"; return 1; }; }
md5() { md5sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# Make later reads go to the backend instead of the guest page cache.
dropcaches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

rm -rf "$W" && mkdir "$W" || { echo "FAIL setup: cannot create $W"; exit 1; }
say "workload: root=$ROOT big=${BIG_MB}MiB files=$NFILES kernel=$(uname -r)"

t_write_read() {
    printf 'hello from the vfsvm guest\n' > small.txt
    dropcaches
    expect "$(cat small.txt)" "hello from the vfsvm guest" content
    dd if=/dev/urandom of="$T/rand1m" bs=64k count=16 2>/dev/null
    cp "$T/rand1m" rand1m.bin
    dropcaches
    expect "$(md5 rand1m.bin)" "$(md5 "$T/rand1m")" md5
    expect "$(size rand1m.bin)" 1048576 size
}
t_overwrite_middle() {
    cp "$T/rand1m" patched.bin
    printf 'PATCH' | dd of=patched.bin bs=1 seek=500000 conv=notrunc 2>/dev/null
    printf 'PATCH' | dd of="$T/rand1m" bs=1 seek=500000 conv=notrunc 2>/dev/null
    dropcaches
    expect "$(md5 patched.bin)" "$(md5 "$T/rand1m")" md5
    expect "$(size patched.bin)" 1048576 size
}
t_append() {
    printf 'one\n' > append.txt
    printf 'two\n' >> append.txt
    printf 'three\n' >> append.txt
    dropcaches
    expect "$(size append.txt)" 14 size
    expect "$(tail -n1 append.txt)" three "last line"
}
t_truncate() {
    head -c 5000 "$T/rand1m" > trunc.bin
    truncate -s 100 trunc.bin
    expect "$(size trunc.bin)" 100 "shrunk size"
    expect "$(md5 trunc.bin)" "$(head -c 100 "$T/rand1m" | md5sum | cut -d' ' -f1)" "shrunk md5"
    truncate -s 8192 trunc.bin
    dropcaches
    expect "$(size trunc.bin)" 8192 "grown size"
    expect "$(tail -c 8092 trunc.bin | md5sum | cut -d' ' -f1)" \
           "$(head -c 8092 /dev/zero | md5sum | cut -d' ' -f1)" "grown tail is zeros"
    : > trunc-empty.txt; printf 'xxxx' > trunc-empty.txt; : > trunc-empty.txt
    expect "$(size trunc-empty.txt)" 0 "O_TRUNC size"
}
t_rename() {
    printf 'A\n' > ren-a; mv ren-a ren-b
    [ ! -e ren-a ] || { echo "ren-a still exists"; return 1; }
    expect "$(cat ren-b)" A content
    printf 'C\n' > ren-c; mv -f ren-c ren-b
    [ ! -e ren-c ] || { echo "ren-c still exists after rename over ren-b"; return 1; }
    expect "$(cat ren-b)" C "content after rename over existing"
    mkdir ren-dir; mv ren-b ren-dir/ren-moved
    expect "$(cat ren-dir/ren-moved)" C "content after move to subdir"
    mv ren-dir ren-dir2
    [ -f ren-dir2/ren-moved ] || { echo "directory rename lost its child"; return 1; }
}
t_unlink() {
    printf 'gone\n' > unl.txt
    rm unl.txt
    [ ! -e unl.txt ] || { echo "still exists"; return 1; }
    ls | grep -qx unl.txt && { echo "still listed"; return 1; }
    # open, unlink, still readable through the open descriptor
    printf 'still here\n' > unl-open.txt
    exec 3< unl-open.txt
    rm unl-open.txt
    got=$(cat <&3); exec 3<&-
    expect "$got" "still here" "read after unlink"
    rm nonexistent-file 2>/dev/null && { echo "rm of a missing file succeeded"; return 1; }
    return 0
}
t_mkdir_rmdir() {
    mkdir -p d1/d2/d3
    [ -d d1/d2/d3 ] || { echo "mkdir -p failed"; return 1; }
    : > d1/d2/file
    rmdir d1/d2 2>/dev/null && { echo "rmdir of a non-empty directory succeeded"; return 1; }
    rm d1/d2/file; rmdir d1/d2/d3 d1/d2 d1
    [ ! -e d1 ] || { echo "d1 still exists"; return 1; }
    mkdir keep-dir
    expect "$(stat -c %F keep-dir)" directory type
}
t_symlink() {
    printf 'target data\n' > sym-target.txt
    ln -s sym-target.txt sym-link
    expect "$(readlink sym-link)" sym-target.txt readlink
    expect "$(cat sym-link)" "target data" "read through link"
    expect "$(stat -c %F sym-link)" "symbolic link" type
    ln -s /does/not/exist sym-dangling
    expect "$(readlink sym-dangling)" /does/not/exist "dangling readlink"
    cat sym-dangling 2>/dev/null && { echo "read through a dangling link succeeded"; return 1; }
    return 0
}
t_hardlink() {
    printf 'linked\n' > hl-a
    ln hl-a hl-b
    expect "$(stat -c %h hl-a)" 2 "link count"
    expect "$(stat -c %i hl-a)" "$(stat -c %i hl-b)" inode
    printf 'more\n' >> hl-b
    dropcaches
    expect "$(cat hl-a | tail -n1)" more "write via other name"
    rm hl-b
    expect "$(stat -c %h hl-a)" 1 "link count after unlink"
}
t_chmod_chown() {
    printf 'perm\n' > perm.txt
    chmod 0640 perm.txt
    expect "$(stat -c %a perm.txt)" 640 mode
    chmod 4755 perm.txt
    expect "$(stat -c %a perm.txt)" 4755 "mode with setuid"
    chmod 0644 perm.txt
    chown 1234:5678 perm.txt
    expect "$(stat -c %u:%g perm.txt)" 1234:5678 owner
    dropcaches
    expect "$(stat -c %u:%g perm.txt)" 1234:5678 "owner after dropping caches"
    chown 0:0 perm.txt
}
t_xattr() {
    x=vfsvm-xattr
    printf 'x\n' > xattr.txt
    if ! $x set xattr.txt user.vfsvm "hello xattr" 2> "$T/xerr"; then
        if grep -q 'not supported' "$T/xerr"; then echo "UNSUPPORTED"; fi
        cat "$T/xerr"; return 1
    fi
    expect "$($x get xattr.txt user.vfsvm)" "hello xattr" get
    $x set xattr.txt user.second 2
    $x list xattr.txt | grep -qx user.vfsvm || { echo "list lacks user.vfsvm: $($x list xattr.txt)"; return 1; }
    $x list xattr.txt | grep -qx user.second || { echo "list lacks user.second"; return 1; }
    $x remove xattr.txt user.second
    $x get xattr.txt user.second 2>/dev/null && { echo "removed attribute still readable"; return 1; }
    $x list xattr.txt | grep -qx user.second && { echo "removed attribute still listed"; return 1; }
    return 0
}
t_sparse() {
    printf 'head' > sparse.bin
    printf 'tail' | dd of=sparse.bin bs=1 seek=3000000 conv=notrunc 2>/dev/null
    dropcaches
    expect "$(size sparse.bin)" 3000004 size
    expect "$(dd if=sparse.bin bs=1 skip=3000000 2>/dev/null)" tail "bytes after the hole"
    expect "$(head -c 4 sparse.bin)" head "bytes before the hole"
    expect "$(dd if=sparse.bin bs=4096 skip=100 count=100 2>/dev/null | md5sum | cut -d' ' -f1)" \
           "$(head -c 409600 /dev/zero | md5sum | cut -d' ' -f1)" "hole reads as zeros"
}
t_fallocate() {
    : > falloc.bin
    fallocate -l 1048576 falloc.bin
    expect "$(size falloc.bin)" 1048576 "size after fallocate"
    fallocate -o 2097152 -l 4096 falloc.bin
    expect "$(size falloc.bin)" 2101248 "size after fallocate at an offset"
}
t_utimes() {
    printf 't\n' > times.txt
    touch -m -d '2001-02-03 04:05:06' times.txt
    dropcaches
    expect "$(date -u -d "@$(stat -c %Y times.txt)" '+%Y-%m-%d %H:%M:%S')" "2001-02-03 04:05:06" mtime
}
t_special() {
    mkfifo fifo
    expect "$(stat -c %F fifo)" fifo "fifo type"
    rm fifo
}
t_names() {
    n255=$(printf 'n%.0s' $(seq 255))
    printf 'long\n' > "$n255"
    expect "$(cat "$n255")" long "255-byte name"
    rm "$n255"
    touch "n$n255" 2>/dev/null && { echo "a 256-byte name was accepted"; return 1; }
    printf 'spaces\n' > "name with spaces & ümlaut"
    # busybox ls shows non-ASCII bytes as '?': ask find, which prints them raw
    [ "$(find . -maxdepth 1 -name "name with spaces & ümlaut")" = "./name with spaces & ümlaut" ] ||
        { echo "name with spaces/UTF-8 not found by readdir"; return 1; }
    rm "name with spaces & ümlaut"
}
t_big() {
    dd if=/dev/urandom of="$T/big" bs=1M count="$BIG_MB" 2>/dev/null
    want=$(md5 "$T/big")
    dd if="$T/big" of=big.bin bs=1M 2>/dev/null
    rm -f "$T/big"
    dropcaches
    expect "$(size big.bin)" $((BIG_MB * 1048576)) size
    expect "$(md5 big.bin)" "$want" md5
}
t_many_files() {
    mkdir many
    i=0
    while [ $i -lt "$NFILES" ]; do echo "f$i" > many/f$i; i=$((i + 1)); done
    dropcaches
    expect "$(ls many | wc -l)" "$NFILES" "ls count"
    expect "$(find many -type f | wc -l)" "$NFILES" "find count"
    expect "$(cat many/f$((NFILES - 1)))" "f$((NFILES - 1))" "last file content"
    # delete the even-numbered half, keep the rest for the host to count
    i=0
    while [ $i -lt "$NFILES" ]; do rm many/f$i; i=$((i + 2)); done
    expect "$(ls many | wc -l)" $((NFILES / 2)) "count after deleting half"
}
t_df() {
    df -k "$ROOT" > "$T/df" || { cat "$T/df"; return 1; }
    cat "$T/df"
    blocks=$(tail -n1 "$T/df" | awk '{print $2}')
    [ "${blocks:-0}" -gt 0 ] || { echo "df shows no blocks"; return 1; }
    # stat -f: FUSE_SUPER_MAGIC 0x65735546; /proc/mounts: type virtiofs
    expect "$(stat -f -c %t "$ROOT")" 65735546 "stat -f magic"
    awk -v m="$ROOT" '$2 == m && $3 == "virtiofs" { found = 1 } END { exit !found }' /proc/mounts ||
        { echo "$ROOT is not a virtiofs mount in /proc/mounts"; return 1; }
}

t write-read t_write_read
t overwrite-middle t_overwrite_middle
t append t_append
t truncate t_truncate
t rename t_rename
t unlink t_unlink
t mkdir-rmdir t_mkdir_rmdir
t symlink-readlink t_symlink
t hardlink t_hardlink
t chmod-chown t_chmod_chown
if ! command -v vfsvm-xattr > /dev/null; then
    skip xattr "busybox has no setfattr/getfattr and the vfsvm-xattr helper is not in this initramfs"
else
    run t_xattr; rc=$?
    if [ $rc -eq 0 ]; then
        ok xattr
    elif grep -q UNSUPPORTED "$T/out" && [ "$REQUIRE_XATTR" != 1 ]; then
        skip xattr "the backend does not support xattrs ($(grep -v UNSUPPORTED "$T/out" | head -n1))"
    else
        bad xattr "$(tr '\n' ' ' < "$T/out" | head -c 400)"
    fi
fi
t sparse t_sparse
t fallocate t_fallocate
t utimes t_utimes
t mkfifo t_special
t names t_names
t "big-file-${BIG_MB}MiB" t_big
t "many-files-$NFILES" t_many_files
t df t_df

# Manifest of every regular file left, for the host to check.
# (names with blanks, left only by a failed test, are not listed; the host
# then reports them as EXTRA)
( cd "$W" && find . -type f ! -name '*[[:space:]]*' | sed 's#^\./##' | LC_ALL=C sort > "$T/names" &&
  xargs stat -c '%n %s' < "$T/names" > "$T/sizes" &&
  xargs md5sum < "$T/names" | awk '{print $2, $1}' > "$T/sums" &&
  awk 'NR == FNR { sum[$1] = $2; next } { print $1, $2, sum[$1] }' "$T/sums" "$T/sizes" \
      > "$ROOT/vfsvm-manifest.txt" ) && ok "manifest ($(wc -l < "$ROOT/vfsvm-manifest.txt") files)" ||
    bad manifest "could not write $ROOT/vfsvm-manifest.txt"
sync
rm -rf "$T"
summary guest-workload
