#!/bin/sh
# Installs the named Debian packages that are not installed yet; does
# nothing (and touches no network) when all are present.
set -eu
missing=""
for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
echo "ensure-debs: installing$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-debs: need root to install$missing (run as root or install them first)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
