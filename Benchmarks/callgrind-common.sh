# Sourced by callgrind-fuse.sh and callgrind-ring.sh (POSIX sh): the part
# they share. Set `tool` (the script's name, for messages) and `product` (the
# loop binary's SwiftPM product) first, and source this with the script's
# own arguments:
#
#   tool=callgrind-x product=x-request-loop
#   . "$(dirname "$0")/callgrind-common.sh"
#
# Afterwards the working directory is the repository, `work` a scratch
# directory removed on exit, and "$work/loop" a copy of the binary (the
# first argument, or the release build of `product`) with its debug info
# stripped: Debian 12's valgrind 3.19 cannot read the DWARF 5 Swift 6 emits.
set -eu
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
    bin=$1
else
    swift build -c release --product "$product" >/dev/null
    bin=.build/release/$product
fi
[ -x "$bin" ] || { echo "$tool: $bin is not an executable" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "$tool: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d "/tmp/vfsvm-$tool-XXXXXX")
trap 'rm -rf "$work"' EXIT
objcopy --strip-debug "$bin" "$work/loop"
