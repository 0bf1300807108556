#!/bin/bash
# run-workload.sh [boot-qemu options...] — runs guest-workload.sh in the guest
# against a fresh share served by $VFSVM_BACKEND (see backend.sh), then
# checks the guest's manifest on the host (verify-manifest.sh).
#   VFSVM_BIG_MB, VFSVM_NFILES, VFSVM_REQUIRE_XATTR go to .vfsvm-test.env.
#   Extra arguments go to boot-qemu.sh (e.g. --packed off --queues 2).
#   VFSVM_WORKLOAD=FILE runs FILE instead of guest-workload.sh.
#   VFSVM_KEEP=1 keeps the work directory (share, console and backend logs);
#   it is also kept when anything failed.
# Exit 0 only when the guest workload passed and the manifest matches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/backend.sh"

work=$(mktemp -d /tmp/vfsvm-workload.XXXXXX)
share=$work/share
mkdir "$share"
result=1
cleanup() {
    stop_backend
    if [ "${VFSVM_KEEP:-0}" = 1 ] || [ $result -ne 0 ]; then echo "run-workload: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

cp "${VFSVM_WORKLOAD:-$here/guest-workload.sh}" "$share/.vfsvm-test.sh"
cp "$here/check.sh" "$share/.vfsvm-check.sh"
{
    echo "BIG_MB=${VFSVM_BIG_MB:-64}"
    echo "NFILES=${VFSVM_NFILES:-2000}"
    echo "REQUIRE_XATTR=${VFSVM_REQUIRE_XATTR:-0}"
} > "$share/.vfsvm-test.env"

start_backend "$work/sock" "$share" "$work/backend.log"
set +e
"$here/boot-qemu.sh" --socket "$work/sock" --tag vfsvmtest --test --timeout 600 \
    --log "$work/console.log" "$@"
guest=$?
set -e
stop_backend
echo "run-workload: backend ${VFSVM_BACKEND:-virtiofsd} exit status $BACKEND_STATUS (143: stopped by TERM)"
host=0
"$here/verify-manifest.sh" "$share" || host=1
echo "run-workload: guest status $guest, host manifest check $([ $host -eq 0 ] && echo ok || echo FAILED)"
[ $guest -eq 0 ] && [ $host -eq 0 ] && result=0
exit $result
