# backend.sh — sourced by run-workload.sh, Scripts/demo-virtiofsd.sh and
# Benchmarks/bench-serve.sh (bash).
# start_backend SOCKET DIR LOGFILE: starts the vhost-user-fs backend serving
# DIR on SOCKET in the background, sets BACKEND_PID, waits for the socket.
# VFSVM_BACKEND picks the backend:
#   virtiofsd (default)  Debian's C virtiofsd ($VIRTIOFSD, default /usr/lib/qemu/virtiofsd)
#   vfsvm                `$VFSVM_BIN serve` with virtiofsd-compatible arguments
#                        (VFSVM_BIN default: vfsvm on PATH)
# VFSVM_BACKEND_ARGS: extra arguments appended (split on blanks), e.g. "-o no_xattr".
# stop_backend: ends that process (by its PID only: TERM if it has not exited
# 1 s after the guest went away), waits for it, sets BACKEND_STATUS.

start_backend() {
    local sock=$1 dir=$2 log=$3 i
    rm -f "$sock"
    case ${VFSVM_BACKEND:-virtiofsd} in
        virtiofsd)
            "${VIRTIOFSD:-/usr/lib/qemu/virtiofsd}" --socket-path="$sock" \
                -o source="$dir" -o cache=auto -o xattr ${VFSVM_BACKEND_ARGS:-} > "$log" 2>&1 &
            ;;
        vfsvm)
            "${VFSVM_BIN:-vfsvm}" serve --socket-path="$sock" \
                -o source="$dir" -o cache=auto -o xattr ${VFSVM_BACKEND_ARGS:-} > "$log" 2>&1 &
            ;;
        *) echo "VFSVM_BACKEND must be virtiofsd or vfsvm" >&2; return 2 ;;
    esac
    BACKEND_PID=$!
    for i in $(seq 100); do
        [ -S "$sock" ] && return 0
        kill -0 "$BACKEND_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "backend (${VFSVM_BACKEND:-virtiofsd}) did not create $sock; its log:" >&2
    cat "$log" >&2
    return 1
}

stop_backend() {
    [ -n "${BACKEND_PID:-}" ] || return 0
    if kill -0 "$BACKEND_PID" 2>/dev/null; then
        # virtiofsd exits by itself once QEMU disconnects; give it a moment
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$BACKEND_PID" 2>/dev/null || break; sleep 0.1; done
        kill "$BACKEND_PID" 2>/dev/null || true
    fi
    # its exit status is of no interest here (virtiofsd may exit 1 after the
    # disconnect); callers run under set -e, so never fail
    BACKEND_STATUS=0
    wait "$BACKEND_PID" 2>/dev/null || BACKEND_STATUS=$?
    BACKEND_PID=""
    return 0
}
