#!/bin/bash
# `vfsvm run --domain` with libvirt domain XML: each Configs/domain-*.xml
# example (placeholders filled) booted under /dev/kvm with the
# freestanding virtiofs guest of Tests/Guests (Linux does not boot under
# this machine's software KVM), the guest's reads and writes checked on
# the host; the round trip --print-domain-xml -> --domain; and the
# refusals: what vfsvm cannot honour listed in one line, invalid XML with
# libxml2's message and the file name, options that conflict.
#
#   domain-test.sh PATH-TO-vfsvm GUESTS-DIR
set -u
VFSVM=$(realpath "${1:?usage: domain-test.sh PATH-TO-vfsvm GUESTS-DIR}")
GUESTS=$(realpath "${2:?usage: domain-test.sh PATH-TO-vfsvm GUESTS-DIR}")
here=$(cd "$(dirname "$0")" && pwd)
configs=$here/../../Configs
. "$here/check.sh"

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
    echo "domain-test: cannot run here: needs read-write /dev/kvm ($(ls -l /dev/kvm 2>&1))"
    echo "domain-test: 0 passed, 1 failed"
    exit 1
fi

top=$(mktemp -d /tmp/vfsvm-domain.XXXXXX)
trap 'rm -rf "$top"' EXIT
out=$top/out err=$top/err
virtiofs=$GUESTS/virtiofs.elf

run() { # run EXPECTED-STATUS NAME ARGS...
    local want=$1 name=$2
    shift 2
    timeout 60 "$VFSVM" run "$@" </dev/null >"$out" 2>"$err"
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$name (exit $got)"; else bad "$name" "exit $got, expected $want; stderr: $(head -c 400 "$err")"; fi
}
has() { # has FILE TEXT NAME
    if grep -qF -- "$2" "$1"; then ok "$3"; else bad "$3" "no '$2' in: $(head -c 400 "$1")"; fi
}
share_dir() { # share_dir DIR: a share with the file the guest reads
    mkdir -p "$1"
    printf 'hello from the host over virtio-fs\n' >"$1/hello.txt"
}

# --- Configs/domain-virtiofs-mmio.xml ---
share_dir "$top/mmio"
sed -e "s|@GUEST@|$virtiofs|" -e "s|@SHARE@|$top/mmio|" "$configs/domain-virtiofs-mmio.xml" >"$top/mmio.xml"
run 33 "Configs/domain-virtiofs-mmio.xml boots the virtiofs guest" --accel kvm -d --domain "$top/mmio.xml"
has "$out" "virtio-fs tag: myfs, request queues: 1, transport: virtio-mmio, ring: split" "mmio example: tag, transport and ring from the domain"
if [ "$(cat "$top/mmio/from-guest.txt" 2>/dev/null)" = "written by the guest over virtio-mmio with the split ring" ]; then
    ok "mmio example: the file the guest wrote is in <source dir>"
else
    bad "mmio example: the file the guest wrote is in <source dir>" "$(ls -la "$top/mmio")"
fi

# --- Configs/domain-virtiofs-pci.xml: two shares, console to a file ---
share_dir "$top/first"
share_dir "$top/second"
sed -e "s|@GUEST@|$virtiofs|" -e "s|@FIRST@|$top/first|" -e "s|@SECOND@|$top/second|" \
    -e "s|@CONSOLE_LOG@|$top/console.log|g" "$configs/domain-virtiofs-pci.xml" >"$top/pci.xml"
run 33 "Configs/domain-virtiofs-pci.xml boots the virtiofs guest" --accel kvm --domain "$top/pci.xml"
has "$top/console.log" "virtio-fs tag: second, request queues: 1, transport: virtio-pci, ring: packed" \
    "pci example: COM1 went to <serial type='file'>, the guest found the second share over pci with the packed ring"
if [ -s "$out" ]; then bad "pci example: nothing on stdout with a file console" "$(head -c 200 "$out")"; else ok "pci example: nothing on stdout with a file console"; fi
if [ -f "$top/second/from-guest.txt" ] && [ ! -e "$top/first/from-guest.txt" ]; then
    ok "pci example: the guest's file is in the second share only"
else
    bad "pci example: the guest's file is in the second share only" "$(ls "$top/first" "$top/second")"
fi

# --- the round trip: command line -> domain XML -> --domain ---
share_dir "$top/rt"
args=(--memory 128M --transport mmio --ring split --share "$top/rt:myfs" --cmdline "transport=mmio ring=split" "$virtiofs")
timeout 20 "$VFSVM" run "${args[@]}" --print-domain-xml >"$top/rt.xml" 2>"$err"
check "--print-domain-xml exits 0" test $? -eq 0
has "$top/rt.xml" "<binary path='" "--print-domain-xml names vfsvm as the virtiofs <binary>"
has "$top/rt.xml" "<address type='virtio-mmio'/>" "--print-domain-xml: --transport mmio is a virtio-mmio address"
timeout 20 "$VFSVM" run --domain "$top/rt.xml" --print-domain-xml >"$top/rt2.xml" 2>"$err"
check "the printed domain read back with --domain prints the same XML" cmp "$top/rt.xml" "$top/rt2.xml"
run 33 "the printed domain boots with --domain like the command line" --accel kvm -d --domain "$top/rt.xml"
has "$out" "virtio-fs tag: myfs, request queues: 1, transport: virtio-mmio, ring: split" "round trip: same tag, transport and ring"

# --- refusals: one line on stderr, nothing started ---
refusal() { # refusal WANT NAME TEXT ARGS...
    local want=$1 name=$2 text=$3
    shift 3
    timeout 20 "$VFSVM" run "$@" </dev/null >"$out" 2>"$err"
    local got=$?
    if [ $got -eq "$want" ] && [ ! -s "$out" ] && [ "$(wc -l <"$err")" -eq 1 ] && grep -qF -- "$text" "$err"; then
        ok "$name (exit $got: $(head -c 200 "$err"))"
    else
        bad "$name" "exit $got, stdout $(wc -c <"$out") bytes, stderr: $(head -c 400 "$err")"
    fi
}
cat >"$top/unsupported.xml" <<EOF
<domain type='kvm'>
  <name>unsupported</name>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64'>hvm</type><kernel>$virtiofs</kernel><cmdline>transport=pci</cmdline></os>
  <features><acpi/></features>
  <devices>
    <filesystem type='mount'><driver type='virtiofs'/><source dir='$top/mmio'/><target dir='myfs'/></filesystem>
    <interface type='network'><source network='default'/></interface>
    <graphics type='vnc' port='-1'/>
    <serial type='pty'/>
  </devices>
</domain>
EOF
refusal 64 "what vfsvm cannot honour is listed in one line" \
    "vfsvm cannot honour these 3 things: <interface type='network'>; <graphics type='vnc'>; <serial type='pty'>" --domain "$top/unsupported.xml"
timeout 60 "$VFSVM" run --accel kvm --domain "$top/unsupported.xml" --ignore-unsupported </dev/null >"$out" 2>"$err"
got=$?
if [ $got -ne 64 ] && grep -qF "ignored (not supported by vfsvm run): <interface type='network'>" "$err" && grep -q "virtio-fs tag: myfs" "$out"; then
    ok "--ignore-unsupported warns and boots without them (exit $got)"
else
    bad "--ignore-unsupported warns and boots without them" "exit $got, stderr: $(head -c 400 "$err")"
fi
printf "<domain type='kvm'>\n  <name>x</name>\n  <os><kernel>/k</kernel>\n</domain>\n" >"$top/broken.xml"
refusal 64 "malformed XML: libxml2's message with the file name and line" "$top/broken.xml:4: Opening and ending tag mismatch: os line 3 and domain" \
    --domain "$top/broken.xml"
sed -e "s|packed='off'|packed='sideways'|" "$top/mmio.xml" >"$top/schema.xml"
refusal 64 "XML libvirt's schema refuses: the RelaxNG message with the file name" "$top/schema.xml: not a valid libvirt domain: $top/schema.xml: Extra element devices in interleave" \
    --domain "$top/schema.xml"
refusal 64 "options the domain replaces are refused" "drop --memory, a GUEST argument" --domain "$top/mmio.xml" --memory 64M "$virtiofs"
refusal 66 "a missing domain file" "$top/none.xml: No such file or directory" --domain "$top/none.xml"

# --- vfsvm libvirt-hook, called as libvirt calls Configs/libvirt-hook-qemu ---
mkdir -p "$top/hook/share" "$top/hook/log"
hook_xml() { # hook_xml DIR: a domain with one vfsvm share on $top/hook/data.sock
    cat <<EOF
<domain type='qemu'>
  <name>hooked</name>
  <metadata>
    <vfsvm:shares xmlns:vfsvm='urn:x-vfsvm:libvirt-hook:1'>
      <vfsvm:share socket='$top/hook/data.sock' dir='$1' cache='always'/>
    </vfsvm:shares>
  </metadata>
  <memory unit='MiB'>256</memory>
  <os><type>hvm</type><kernel>/k</kernel></os>
  <devices>
    <filesystem type='mount'><driver type='virtiofs'/><source socket='$top/hook/data.sock'/><target dir='data'/></filesystem>
  </devices>
</domain>
EOF
}
hook_xml "$top/hook/share" >"$top/hook/domain.xml"
hook() { VFSVM_HOOK_LOG_DIR=$top/hook/log timeout 20 "$configs/libvirt-hook-qemu" "$@" <"$top/hook/domain.xml" >"$out" 2>"$err"; }
export VFSVM
hook hooked prepare begin -
got=$?
pid=$(cat "$top/hook/data.sock.vfsvm.pid" 2>/dev/null)
if [ $got -eq 0 ] && [ -S "$top/hook/data.sock" ] && [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "serve --socket-path $top/hook/data.sock --shared-dir $top/hook/share --cache always"; then
    ok "hook prepare begin: vfsvm serve listens on the <source socket>, pid file next to it"
else
    bad "hook prepare begin starts vfsvm serve" "exit $got, stderr $(head -c 300 "$err"), pid '$pid'"
fi
has "$top/hook/log/hooked-data-vfsvm.log" "waiting for the frontend" "the daemon logs to <log dir>/<domain>-<tag>-vfsvm.log"
hook hooked started begin -
check "other operations pass through (started begin: exit 0)" test $? -eq 0
hook hooked release end -
got=$?
state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
if [ $got -eq 0 ] && { [ -z "$state" ] || [ "$state" = Z ]; } && [ ! -e "$top/hook/data.sock" ] && [ ! -e "$top/hook/data.sock.vfsvm.pid" ]; then
    ok "hook release end: the daemon is gone, socket and pid file removed"
else
    bad "hook release end stops the daemon" "exit $got, state '$state', $(ls "$top/hook")"
fi
hook_xml "$top/hook/missing" >"$top/hook/domain.xml"
hook hooked prepare begin -
got=$?
if [ $got -eq 1 ] && [ "$(wc -l <"$err")" -eq 1 ] && grep -qF "share $top/hook/missing for socket $top/hook/data.sock: not a directory" "$err" && [ ! -e "$top/hook/data.sock" ]; then
    ok "hook: a missing share directory is one line and status 1, nothing started"
else
    bad "hook: a missing share directory is refused" "exit $got, stderr $(head -c 300 "$err")"
fi

# A Linux guest from a domain, through the tcg path here (--accel auto): the
# domain --print-domain-xml writes for the Images guest.img bundle, whose
# init mounts the share and powers off.
bundle=$here/../../Images/out/guest.img
if [ -f "$bundle" ] && command -v qemu-system-x86_64 >/dev/null; then
    mkdir -p "$top/linux"
    echo "written on the host" >"$top/linux/host.txt"
    "$VFSVM" run --transport pci --share "$top/linux:myfs" --print-domain-xml "$bundle" >"$top/linux.xml" 2>"$err"
    timeout 180 "$VFSVM" run --domain "$top/linux.xml" --timeout 150 </dev/null >"$out" 2>"$err"
    got=$?
    if [ $got -eq 0 ] && grep -qF "mounted virtiofs myfs on /mnt/myfs" "$out" && grep -qF "VFSVM-GUEST-EXIT status=0" "$out"; then
        ok "a Linux domain (guest.img as <kernel>) boots through $(grep -o 'auto: [a-z]*' "$err" | head -1), mounts its share and powers off (exit 0)"
    else
        bad "a Linux domain boots and mounts its share" "exit $got, stderr: $(tail -c 400 "$err"), stdout tail: $(tail -c 300 "$out")"
    fi
else
    skip "a Linux domain" "Images/out/guest.img or qemu-system-x86_64 missing: run make images"
fi

summary domain-test
