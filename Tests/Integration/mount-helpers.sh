# Sourced by the `vfsvm mount` integration tests: start a mount of $host on
# $mnt (vfsvm at $VFSVM, its output in $log), see whether it is mounted, and
# stop it the way a user does (SIGTERM). The caller sets those four
# variables; $pid is the running vfsvm or empty.

mounted() { grep -q " $mnt fuse.vfsvm " /proc/mounts; }

start_mount() {  # extra options...; returns when mounted or vfsvm exited (10 s at most)
    "$VFSVM" mount --share "$host" "$mnt" "$@" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do mounted && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
}

terminate_mount() {  # SIGTERM, then wait up to 10 s; sets status to vfsvm's exit status or "timeout"
    kill -TERM $pid 2>/dev/null
    status=timeout
    for _ in $(seq 1 100); do
        if ! kill -0 $pid 2>/dev/null; then wait $pid; status=$?; break; fi
        sleep 0.1
    done
}
