#!/bin/bash
# verify-manifest.sh SHARE_DIR — host side of guest-workload.sh: checks every
# "name size md5" line of SHARE_DIR/vfsvm-manifest.txt against the files in
# SHARE_DIR/vfsvm-work, and that no file there is missing from the manifest.
# Prints one line per problem and a summary; exit 0 only when all match.
set -u
dir=$(cd "${1:?usage: verify-manifest.sh SHARE_DIR}" && pwd) || exit 1
man=$dir/vfsvm-manifest.txt
work=$dir/vfsvm-work
[ -s "$man" ] || { echo "verify-manifest: no manifest at $man" >&2; exit 1; }
bad=0 n=0
while read -r name sz sum; do
    n=$((n + 1))
    f=$work/$name
    if [ ! -f "$f" ]; then echo "MISSING $name"; bad=$((bad + 1)); continue; fi
    [ "$(stat -c %s "$f")" = "$sz" ] || { echo "SIZE $name host=$(stat -c %s "$f") guest=$sz"; bad=$((bad + 1)); continue; }
    [ "$(md5sum < "$f" | cut -d' ' -f1)" = "$sum" ] || { echo "MD5 $name"; bad=$((bad + 1)); }
done < "$man"
extra=$(cd "$work" && find . -type f | sed 's#^\./##' | LC_ALL=C sort | comm -23 - <(cut -d' ' -f1 "$man" | LC_ALL=C sort) 2>/dev/null | wc -l)
[ "$extra" -eq 0 ] || { echo "EXTRA $extra host files not in the manifest"; bad=$((bad + 1)); }
echo "verify-manifest: $n files checked, $bad problems"
[ $bad -eq 0 ]
