#!/bin/bash
# `vfsvm mount` against the host directory behind it and against the FUSE
# file systems a user would otherwise pick, side by side in one run: the
# same operations on each, alternated, printed with ratios to native
# (Benchmarks/fs-bench.py).
#
#   bench-mount.sh PATH-TO-vfsvm [--quick] [--runs N]
#
# Columns: native (the backing directory); vfsvm with FUSE passthrough over
# each request channel (FUSE over io_uring, /dev/fuse reads: -o no_uring);
# vfsvm with every READ/WRITE through the server (--no-passthrough) over
# each channel; bindfs (Debian's package, installed here with apt-get if
# missing); libfuse's passthrough_hp, built from Debian's fuse3 source
# package in a temporary directory (apt-get source; nothing kept). The fuse
# module's enable_uring is set to Y for the run and put back after.
set -eu
VFSVM=$(realpath "${1:?usage: bench-mount.sh PATH-TO-vfsvm [--quick] [--runs N]}")
shift
here=$(cd "$(dirname "$0")" && pwd)
top=$(mktemp -d /var/tmp/vfsvm-bench.XXXXXX)   # /var/tmp: on disk, not tmpfs
pids=()
param=/sys/module/fuse/parameters/enable_uring
orig_uring=$(cat "$param" 2>/dev/null || echo none)
cleanup() {
    for m in "$top"/mnt-*; do umount -l "$m" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ "$orig_uring" != none ] && echo "$orig_uring" > "$param" 2>/dev/null
    rm -rf "$top"
}
trap cleanup EXIT
note() { echo "bench-mount: $*"; }

if [ "$orig_uring" = none ]; then
    note "this kernel has no $param: the uring columns run over /dev/fuse reads (see their logs below)"
else
    echo Y > "$param" || note "cannot set $param to Y: the uring columns fall back to /dev/fuse reads"
fi

# vfsvm mounts: name → flags.
configs=(pt-uring pt-devfuse nopt-uring nopt-devfuse)
declare -A flags=([pt-uring]="--passthrough" [pt-devfuse]="--passthrough -o no_uring"
                  [nopt-uring]="--no-passthrough" [nopt-devfuse]="--no-passthrough -o no_uring")
mkdir -p "$top/host/native"
targets=(native="$top/host/native")
for c in "${configs[@]}"; do
    mkdir -p "$top/host/$c" "$top/mnt-$c"
    # shellcheck disable=SC2086
    "$VFSVM" mount --share "$top/host/$c" "$top/mnt-$c" --io-engine uring ${flags[$c]} -o cache=auto > "$top/$c.log" 2>&1 &
    pids+=($!)
    targets+=("vfsvm-$c=$top/mnt-$c")
done

# bindfs: Debian's package.
if ! command -v bindfs >/dev/null; then
    apt-get install -y -qq bindfs > "$top/apt-bindfs.log" 2>&1 || note "bindfs: apt-get install failed ($(tail -1 "$top/apt-bindfs.log")); no bindfs column"
fi
if command -v bindfs >/dev/null; then
    mkdir -p "$top/host/bindfs" "$top/mnt-bindfs"
    if bindfs "$top/host/bindfs" "$top/mnt-bindfs" 2> "$top/bindfs.log"; then
        targets+=("bindfs=$top/mnt-bindfs")
    else
        note "bindfs would not mount: $(tail -1 "$top/bindfs.log"); no bindfs column"
    fi
fi

# passthrough_hp: libfuse's example, from Debian's fuse3 source package,
# with a private apt configuration whose deb-src entries are the system's
# deb entries (the system's own configuration is not touched).
build_passthrough_hp() {
    local b=$top/pthp
    mkdir -p "$b/parts" "$b/lists/partial" "$b/cache/archives/partial"
    local srcs
    srcs=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    [ -n "$srcs" ] || { echo "no /etc/apt/sources.list.d/*.sources to derive deb-src entries from"; return 1; }
    sed 's/^Types: deb$/Types: deb-src/' "$srcs" > "$b/parts/src.sources"
    local apt=(apt-get -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$b/parts"
               -o "Dir::State::Lists=$b/lists" -o "Dir::Cache=$b/cache")
    for tool in meson ninja; do
        command -v $tool >/dev/null || apt-get install -y -qq meson ninja-build > "$b/apt.log" 2>&1 || { echo "cannot install meson/ninja-build"; return 1; }
    done
    command -v dpkg-source >/dev/null || apt-get install -y -qq dpkg-dev > "$b/apt.log" 2>&1 || { echo "cannot install dpkg-dev"; return 1; }
    (cd "$b" && "${apt[@]}" update -qq && "${apt[@]}" source -qq fuse3) > "$b/source.log" 2>&1 || { echo "apt-get source fuse3 failed: $(tail -1 "$b/source.log")"; return 1; }
    local src
    src=$(ls -d "$b"/fuse3-*/ | head -1)
    (cd "$src" && meson setup build -Dexamples=true -Dutils=false -Dtests=false && ninja -C build example/passthrough_hp) > "$b/build.log" 2>&1 \
        || { echo "building passthrough_hp failed: $(tail -1 "$b/build.log")"; return 1; }
    echo "$src/build/example/passthrough_hp"
}
if pthp=$(build_passthrough_hp); then
    mkdir -p "$top/host/passthrough_hp" "$top/mnt-passthrough_hp"
    "$pthp" --foreground "$top/host/passthrough_hp" "$top/mnt-passthrough_hp" > "$top/passthrough_hp.log" 2>&1 &
    pids+=($!)
    targets+=("passthrough_hp=$top/mnt-passthrough_hp")
else
    note "no passthrough_hp column: $pthp"
fi

for _ in $(seq 100); do
    all=1
    for c in "${configs[@]}"; do grep -q " $top/mnt-$c fuse.vfsvm " /proc/mounts || all=0; done
    [ -n "${pthp:-}" ] && [ -x "${pthp:-}" ] && { grep -q " $top/mnt-passthrough_hp " /proc/mounts || all=0; }
    [ $all = 1 ] && break
    sleep 0.1
done
note "vfsvm $("$VFSVM" --version), $(nproc) CPUs, kernel $(uname -r), $(date -u +%Y-%m-%d)"
note "native = the backing directory on $(df --output=fstype "$top/host" | tail -1); vfsvm-pt-* = FUSE passthrough, vfsvm-nopt-* = every READ/WRITE through vfsvm (--no-passthrough); *-uring = FUSE over io_uring request channel, *-devfuse = /dev/fuse reads (-o no_uring); vfsvm: cache=auto, io_uring I/O engine, 4 worker threads"
note "bindfs $(bindfs --version 2>/dev/null | head -1 | awk '{print $2}') with its defaults; passthrough_hp (libfuse 3.14 example) with its defaults (entry/attr timeouts 86400 s, like vfsvm's cache=always, splice on)"
python3 "$here/fs-bench.py" "$@" "${targets[@]}"
for c in "${configs[@]}"; do
    note "vfsvm-$c: $(grep -h "request channel" "$top/$c.log" | sed 's/^vfsvm mount: //' | head -1)"
done
grep -h "passthrough on" "$top/pt-uring.log" >/dev/null || note "vfsvm-pt-uring: the kernel did not take passthrough (see $top/pt-uring.log)"
