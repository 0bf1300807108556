#!/bin/bash
# vfsvm as libvirt's virtiofs daemon (a drop-in for virtiofsd): a private
# libvirtd (QEMU driver only, in its own mount namespace, all state under a
# temporary directory) boots the Images/ guest with a <filesystem> whose
# <binary path> is a link to vfsvm named "vfsvm-virtiofsd". libvirt starts
# the daemon itself with virtiofsd's command line. Four domains in turn:
#  1. Configs/vfsvm-domain.xml as shipped (packed='on', cache always, chroot
#     sandbox, xattr, locks, thread pool): the guest reads a host file,
#     writes one with a user.* xattr and reports the negotiated ring; the
#     host checks the console, the share, the daemon's arguments and log,
#     QEMU's command line ("packed":true) and the guest's feature bit 34;
#  2. virsh destroy while the guest uses the share: QEMU and daemon end;
#  3. a share path with a comma and a blank, namespace sandbox, xattr and
#     locks off: the doubled comma, no_xattr (setxattr refused) and I/O;
#  4. <cache mode='none'/>: libvirt passes cache=none, which the daemon
#     must accept;
#  5. vfsvm libvirt-hook as the QEMU hook: <source socket> plus vfsvm
#     metadata; the hook starts vfsvm serve at prepare begin and stops it
#     at release end.
#
#   libvirt-test.sh PATH-TO-vfsvm
#
# Prints PASS/FAIL per check, timings, and "libvirt-test: N passed, N failed";
# exits non-zero on any failure, including when libvirt cannot run here (the
# reason is printed). Nothing touches the host's /etc/libvirt, /run/libvirt,
# /var/lib/libvirt, /var/log/libvirt or /var/cache/libvirt: private
# directories are bind-mounted over them inside the daemon's namespace. The
# work directory is removed on success and kept (and named) on failure.
# Environment: VFSVM_LIBVIRT_TIMEOUT (seconds from start to power-off, 180);
# VFSVM_KEEP=1 keeps the work directory (logs, console, share) always.
set -u
VFSVM=$(realpath "${1:?usage: libvirt-test.sh PATH-TO-vfsvm}")
top=$(cd "$(dirname "$0")/../.." && pwd)
images=$top/Images
timeout=${VFSVM_LIBVIRT_TIMEOUT:-180}
domain=vfsvm-guest
# ok/bad/check/summary
. "$(dirname "$0")/check.sh"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# cannot REASON: libvirt cannot run here; say why and fail (no silent skip)
cannot() {
    echo "libvirt-test: cannot run: $1"
    bad "libvirt can run on this machine" "$1"
    exit 1   # the EXIT trap tears down and prints the summary
}

t_total=$(now)
work=
lv_pid= daemon_pid= qemu_pid=
created_mountpoints=""
etc_sum_before=

etc_sum() { find /etc/libvirt -type f -print0 2>/dev/null | sort -z | xargs -0 -r md5sum | md5sum | cut -d' ' -f1; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
virsh_() { virsh -q -c "qemu+unix:///system?socket=$work/run/libvirt-sock" "$@"; }
# Waits up to $timeout s for $domain to be shut off; leaves its last state in $state.
wait_shut_off() {
    state=
    for _ in $(seq $((timeout * 5))); do
        state=$(virsh_ domstate "$domain" 2>/dev/null)
        [ "$state" = "shut off" ] && break
        sleep 0.2
    done
}
# record_pids: the running domain's QEMU and virtiofs daemon, from the pid
# files libvirt 9.0 keeps in <state dir>/qemu (<domain>.pid and
# <id>-<domain>-fs0-fs.pid), so that they are checked and, should libvirtd
# fail, ended by pid
record_pids() {
    daemon_pidfile=$(ls "$work"/run/qemu/*-"$domain"-fs0-fs.pid 2>/dev/null | head -1)
    daemon_pid= qemu_pid=
    [ -n "$daemon_pidfile" ] && daemon_pid=$(cat "$daemon_pidfile" 2>/dev/null)
    [ -f "$work/run/qemu/$domain.pid" ] && qemu_pid=$(cat "$work/run/qemu/$domain.pid" 2>/dev/null)
}
# define_start XML: drop what an earlier step left (libvirt gives each
# definition a new uuid and refuses a second one under the same name), then
# define and start; the output of the failing virsh is in $out
define_start() {
    virsh_ destroy "$domain" >/dev/null 2>&1
    virsh_ undefine "$domain" >/dev/null 2>&1
    out=$(virsh_ define "$1" 2>&1) && out=$(virsh_ start "$domain" 2>&1) && record_pids
}

teardown() {
    local rc=$?
    set +e
    # a reader that went away (| head) must not stop the tear-down half way
    trap '' PIPE
    if [ -n "$work" ] && [ -S "$work/run/libvirt-sock" ] && alive "$lv_pid"; then
        for d in $(virsh_ list --all --name 2>/dev/null); do
            virsh_ destroy "$d" >/dev/null 2>&1
            virsh_ undefine "$d" >/dev/null 2>&1
        done
    fi
    # libvirtd by its pid file (tini, its parent, then exits with it)
    local lvd=
    [ -n "$work" ] && [ -f "$work/run/libvirtd.pid" ] && lvd=$(cat "$work/run/libvirtd.pid")
    if alive "$lvd"; then
        kill -TERM "$lvd"
        for _ in $(seq 50); do alive "$lvd" || break; sleep 0.1; done
        alive "$lvd" && kill -KILL "$lvd"
    fi
    # anything this test started that outlived libvirtd, by the pids recorded
    for p in "$qemu_pid" "$daemon_pid" "$lv_pid"; do
        if alive "$p"; then
            kill -TERM "$p"
            for _ in $(seq 30); do alive "$p" || break; sleep 0.1; done
            alive "$p" && kill -KILL "$p"
        fi
    done
    [ -n "$lv_pid" ] && wait "$lv_pid" 2>/dev/null
    for m in $created_mountpoints; do rmdir "$m" 2>/dev/null; done
    if [ -n "$etc_sum_before" ]; then
        if [ "$(etc_sum)" = "$etc_sum_before" ] && [ ! -e /run/libvirt/libvirt-sock ]; then
            ok "the host's /etc/libvirt is unchanged and no socket appeared in the host's /run/libvirt"
        else
            bad "the host's libvirt directories are untouched"
        fi
    fi
    echo "libvirt-test: total time $(since "$t_total") s"
    if [ -n "$work" ]; then
        if [ "$fail" -eq 0 ] && [ "${VFSVM_KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "libvirt-test: kept $work"; fi
    fi
    summary libvirt-test && [ "$rc" -eq 0 ] && exit 0
    exit 1
}
trap teardown EXIT
trap 'bad "the test ran to its end" "interrupted by a signal"; exit 130' INT TERM HUP

# --- prerequisites
[ "$(id -u)" -eq 0 ] || cannot "must run as root (libvirt 9.0's session mode refuses virtiofs)"
[ -f "$VFSVM" ] && [ -x "$VFSVM" ] || cannot "$VFSVM is not an executable file"
"$top/Scripts/ensure-debs.sh" libvirt-daemon-system libvirt-clients tini \
    || cannot "installing libvirt-daemon-system libvirt-clients tini failed"
qemu_driver=/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so
for need in libvirtd virsh tini unshare qemu-system-x86_64 base64; do
    command -v "$need" >/dev/null || cannot "$need is not installed"
done
[ -f "$qemu_driver" ] || cannot "libvirt's QEMU driver $qemu_driver is missing"
[ -f "$images/out/vmlinuz" ] && [ -f "$images/out/initramfs.cpio.gz" ] \
    || cannot "no guest: run make -C Images first (Images/out/vmlinuz, initramfs.cpio.gz)"
[ -f "$top/Configs/vfsvm-domain.xml" ] || cannot "Configs/vfsvm-domain.xml is missing"

work=$(mktemp -d /tmp/vfsvm-libvirt.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{etc,run,lib,log,cache,drivers,share}
etc_sum_before=$(etc_sum)

# --- the private libvirtd: configuration
ln -s "$qemu_driver" "$work/drivers/"
# the QEMU hook (read when libvirtd starts): Configs/libvirt-hook-qemu,
# with each call's argv and stdin recorded
mkdir -p "$work/etc/hooks"
cat > "$work/etc/hooks/qemu" <<EOF
#!/bin/sh
echo "\$*" >> "$work/hook-calls.log"
tee "$work/hook-stdin-\$2-\$3.xml" | VFSVM="$VFSVM" "$top/Configs/libvirt-hook-qemu" "\$@"
EOF
chmod 755 "$work/etc/hooks/qemu"
cat > "$work/etc/libvirtd.conf" <<'EOF'
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
cat > "$work/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
virtiofsd_debug = 1
EOF

# the mount points must exist on the host; those made here are removed again
for m in /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
    if [ ! -d "$m" ]; then
        mkdir -p "$m" || cannot "cannot create the mount point $m"
        created_mountpoints="$m $created_mountpoints"
    fi
done

# --- start it: own mount namespace, private bind mounts, foreground under tini
t0=$(now)
LIBVIRT_DRIVER_DIR=$work/drivers unshare --mount --propagation private -- /bin/sh -c '
    w=$1
    mount --bind "$w/etc" /etc/libvirt &&
    mount --bind "$w/run" /run/libvirt &&
    mount --bind "$w/lib" /var/lib/libvirt &&
    mount --bind "$w/log" /var/log/libvirt &&
    mount --bind "$w/cache" /var/cache/libvirt || { echo "bind mounts failed" >&2; exit 1; }
    cd /
    exec tini -s -- libvirtd --pid-file "$w/run/libvirtd.pid"
' sh "$work" </dev/null >"$work/libvirtd.out" 2>&1 &
lv_pid=$!
for _ in $(seq 200); do
    [ -S "$work/run/libvirt-sock" ] && break
    alive "$lv_pid" || break
    sleep 0.05
done
if [ ! -S "$work/run/libvirt-sock" ]; then
    cannot "libvirtd did not come up: $(tail -5 "$work/libvirtd.out" "$work/log/libvirtd.log" 2>/dev/null | tr '\n' ' ')"
fi
t_sock=$(since "$t0")
# the first answer waits for the QEMU driver's capability probe (the cache
# directory is new and empty on every run)
if ver=$(virsh_ version 2>&1); then
    ok "private libvirtd up: socket after $t_sock s, QEMU driver answering after $(since "$t0") s ($(echo "$ver" | grep -i 'running hypervisor' | sed 's/^ *//'))"
else
    cannot "virsh cannot talk to the private libvirtd: $ver"
fi

# --- the share and the domain
token=token-$$-$RANDOM
printf 'hello from the host %s\n' "$token" > "$work/share/host.txt"
ln -s "$VFSVM" "$work/vfsvm-virtiofsd"
guest_cmd=$(cat <<EOF
set -e
got=\$(cat /mnt/host.txt)
echo "guest read: \$got"
[ "\$got" = "hello from the host $token" ]
ring=none
for d in /sys/bus/virtio/devices/*; do
    [ "\$(cat \$d/device)" = 0x001a ] || continue
    f=\$(cat \$d/features)
    if [ "\${f:34:1}" = 1 ]; then ring=packed; else ring=split; fi
done
printf 'written by the guest %s\nring=%s\n' "$token" "\$ring" > /mnt/from-guest.txt
vfsvm-xattr set /mnt/from-guest.txt user.vfsvm "guest-$token"
sync
echo "GUEST-RING=\$ring"
EOF
)
console=$work/console.log
# fill_domain GUEST-SHELL-TEXT CONSOLE-LOG OUT-XML [SHARE-DIR]:
# Configs/vfsvm-domain.xml with the placeholders filled (the share defaults to
# $work/share), the binary pointed at the vfsvm-virtiofsd link and the
# command appended to <cmdline> as vfsvm.cmd64
fill_domain() {
    local cmd64 dir=${4:-$work/share}
    cmd64=$(printf '%s' "$1" | base64 -w0)
    sed -e "s|@KERNEL@|$images/out/vmlinuz|" \
        -e "s|@INITRD@|$images/out/initramfs.cpio.gz|" \
        -e "s|@SHARE@|$dir|" \
        -e "s|@CONSOLE_LOG@|$2|g" \
        -e "s|<binary path='[^']*'|<binary path='$work/vfsvm-virtiofsd'|" \
        -e "s|\(<cmdline>[^<]*\)</cmdline>|\1 vfsvm.cmd64=$cmd64</cmdline>|" \
        "$top/Configs/vfsvm-domain.xml" > "$3"
    if grep -q '@[A-Z_]*@' "$3" || ! grep -q "vfsvm.cmd64=$cmd64</cmdline>" "$3" \
        || ! grep -q "<binary path='$work/vfsvm-virtiofsd'" "$3" || ! grep -q "packed='on'" "$3"; then
        bad "domain XML filled from Configs/vfsvm-domain.xml" "see $3"
        exit 1
    fi
}
fill_domain "$guest_cmd" "$console" "$work/domain.xml"

t0=$(now)
if out=$(virsh_ define "$work/domain.xml" 2>&1); then
    ok "virsh define"
else
    bad "virsh define" "$out"
    exit 1
fi
if out=$(virsh_ start "$domain" 2>&1); then
    t_started=$(now)
    ok "virsh start (define+start $(since "$t0") s)"
else
    bad "virsh start" "$(echo "$out" | tr '\n' ' ')"
    for f in "$work"/log/qemu/*virtiofsd.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
    exit 1
fi

# While the guest runs: which daemon libvirt started and with which arguments
record_pids
daemon_exe= daemon_args=
if alive "$daemon_pid"; then
    daemon_exe=$(readlink "/proc/$daemon_pid/exe")
    daemon_args=$(tr '\0' ' ' < "/proc/$daemon_pid/cmdline")
fi
echo "libvirt-test: libvirt started the daemon as: ${daemon_args:-?} (pid ${daemon_pid:-?}, exe ${daemon_exe:-?})"
if [ "$daemon_exe" = "$VFSVM" ]; then
    ok "the running virtiofs daemon is the binary under test"
else
    bad "the running virtiofs daemon is the binary under test" "exe '${daemon_exe}', pid file '${daemon_pidfile}'"
fi
# what Configs/vfsvm-domain.xml + virtiofsd_debug = 1 make libvirt 9.0 pass
if echo "$daemon_args" | grep -Eq "^$work/vfsvm-virtiofsd --fd=[0-9]+ -o source=$work/share,cache=always,sandbox=chroot,xattr,flock,posix_lock --thread-pool-size=4 -d \$"; then
    ok "libvirt passed virtiofsd's full command line to the vfsvm-virtiofsd link"
else
    bad "libvirt passed virtiofsd's full command line to the link" "'$daemon_args'"
fi

# --- wait for the guest to power off
wait_shut_off
if [ "$state" = "shut off" ]; then
    ok "the guest powered off and the domain stopped (start to shut off $(since "$t_started") s)"
else
    bad "the guest powers off within ${timeout} s" "state '$state'; console tail: $(tail -3 "$console" 2>/dev/null | tr '\n' ' ')"
fi

# --- the guest's view
if grep -q 'VFSVM-GUEST-EXIT status=0' "$console" 2>/dev/null; then
    ok "console: VFSVM-GUEST-EXIT status=0 ($(grep -o 'guest uptime at exit [0-9.]*s' "$console" | head -1))"
else
    bad "console: VFSVM-GUEST-EXIT status=0" "$(grep -E 'VFSVM-GUEST-EXIT|vfsvm-init:|guest read' "$console" 2>/dev/null | tr -d '\r' | tail -4 | tr '\n' ' ')"
fi
if grep -q "guest read: hello from the host $token" "$console" 2>/dev/null; then
    ok "the guest read the host's file through vfsvm"
else
    bad "the guest read the host's file through vfsvm"
fi

# --- the host's view of what the guest wrote
if [ "$(cat "$work/share/from-guest.txt" 2>/dev/null)" = "$(printf 'written by the guest %s\nring=packed' "$token")" ]; then
    ok "the host sees the file the guest wrote (content exact)"
else
    bad "the host sees the file the guest wrote" "got: $(head -c 200 "$work/share/from-guest.txt" 2>&1 | tr '\n' ' ')"
fi
# xattr='on' reached vfsvm as -o xattr: the guest's user.* attribute is on the host file
got=$(getfattr --absolute-names --only-values -n user.vfsvm "$work/share/from-guest.txt" 2>&1)
if [ "$got" = "guest-$token" ]; then
    ok "xattr='on': the user.* attribute the guest set is on the host's file"
else
    bad "xattr='on': the guest's user.* attribute is on the host's file" "getfattr: $got"
fi

# --- packed='on' really gave a packed ring: QEMU was asked for it, and the
# guest negotiated VIRTIO_F_RING_PACKED (feature bit 34)
qemu_log=$work/log/qemu/$domain.log
if grep -q '"driver":"vhost-user-fs-pci".*"packed":true' "$qemu_log" 2>/dev/null; then
    ok "libvirt gave QEMU vhost-user-fs-pci with \"packed\":true"
else
    bad "libvirt gave QEMU vhost-user-fs-pci with \"packed\":true" "$(grep -o '{"driver":"vhost-user-fs-pci"[^}]*}' "$qemu_log" 2>/dev/null)"
fi
if grep -q 'GUEST-RING=packed' "$console" 2>/dev/null && grep -q 'virtiofs device .* ring=packed' "$console"; then
    ok "the guest negotiated a packed ring (features bit 34 set)"
else
    bad "the guest negotiated a packed ring" "$(grep -E 'ring=|GUEST-RING' "$console" 2>/dev/null | tr -d '\r' | tr '\n' ' ')"
fi

# --- the daemon's log, where libvirt sends its stdout/stderr
daemon_log=$work/log/qemu/$domain-fs0-virtiofsd.log
if grep -q "vfsvm serve: sharing $work/share (chroot sandbox)" "$daemon_log" 2>/dev/null; then
    ok "daemon log $domain-fs0-virtiofsd.log shows vfsvm served the share ($(wc -l < "$daemon_log") lines)"
else
    bad "daemon log shows vfsvm ran" "$(tail -5 "$daemon_log" 2>&1 | tr '\n' ' ')"
fi

# --- libvirt ended the daemon with the domain
for _ in $(seq 50); do alive "$daemon_pid" || break; sleep 0.1; done
if [ -n "$daemon_pid" ] && ! alive "$daemon_pid"; then
    ok "the daemon process ended with the domain"
else
    bad "the daemon process ended with the domain" "pid ${daemon_pid:-unknown} still alive"
fi

if out=$(virsh_ undefine "$domain" 2>&1); then ok "virsh undefine"; else bad "virsh undefine" "$out"; fi

# --- virsh destroy while the guest is using the share: libvirt stops the
# daemon (SIGTERM, later SIGKILL) and nothing is left behind
console2=$work/console-destroy.log
fill_domain 'echo ready > /mnt/destroy-ready && sync && echo GUEST-WAITING && sleep 600' "$console2" "$work/domain-destroy.xml"
if define_start "$work/domain-destroy.xml"; then
    for _ in $(seq $((timeout * 5))); do
        [ -f "$work/share/destroy-ready" ] && break
        alive "$qemu_pid" || break
        sleep 0.2
    done
    if [ "$(cat "$work/share/destroy-ready" 2>/dev/null)" = ready ] && alive "$daemon_pid"; then
        t0=$(now)
        if out=$(virsh_ destroy "$domain" 2>&1); then
            for _ in $(seq 100); do alive "$daemon_pid" || alive "$qemu_pid" || break; sleep 0.1; done
            if ! alive "$daemon_pid" && ! alive "$qemu_pid" && [ "$(virsh_ domstate "$domain" 2>/dev/null)" = "shut off" ]; then
                ok "virsh destroy of a guest using the share ends QEMU and the daemon ($(since "$t0") s)"
            else
                bad "virsh destroy ends QEMU and the daemon" "daemon ${daemon_pid:-?} alive: $(alive "$daemon_pid" && echo yes || echo no), qemu ${qemu_pid:-?} alive: $(alive "$qemu_pid" && echo yes || echo no)"
            fi
        else
            bad "virsh destroy of a running guest" "$out"
        fi
    else
        bad "second guest wrote through the share before destroy" "console tail: $(tail -3 "$console2" 2>/dev/null | tr -d '\r' | tr '\n' ' ')"
    fi
    virsh_ undefine "$domain" >/dev/null 2>&1
else
    bad "define + start a second domain on the same share" "$(echo "$out" | tr '\n' ' ')"
fi

# --- the other spellings libvirt 9.0 uses: a path with a comma (doubled on
# the daemon's command line) and a blank, no cache mode (the daemon's
# default), namespace sandbox, xattr and locks off (no_xattr, no_flock,
# no_posix_lock), no thread pool
odd="$work/odd,share name"
mkdir -p "$odd"
printf 'hello from the host %s\n' "$token" > "$odd/host.txt"
console3=$work/console-options.log
fill_domain "$(cat <<EOF
set -e
[ "\$(cat /mnt/host.txt)" = "hello from the host $token" ]
echo "odd share $token" > /mnt/from-guest.txt
if vfsvm-xattr set /mnt/from-guest.txt user.vfsvm x 2>/tmp/xerr; then echo XATTR-ACCEPTED; exit 3; fi
echo "XATTR-REFUSED: \$(cat /tmp/xerr)"
sync
EOF
)" "$console3" "$work/domain-options.xml" "$odd"
sed -i -e "s|xattr='on'|xattr='off'|" -e "/<cache mode=/d" \
    -e "s|<sandbox mode='chroot'/>|<sandbox mode='namespace'/>|" \
    -e "s|<lock posix='on' flock='on'/>|<lock posix='off' flock='off'/>|" -e "/<thread_pool /d" "$work/domain-options.xml"
daemon_args=
if define_start "$work/domain-options.xml"; then
    alive "$daemon_pid" && daemon_args=$(tr '\0' '\n' < "/proc/$daemon_pid/cmdline" | sed -n 4p)
    # the argument after -o, as one argument (the blank stays inside it)
    if [ "$daemon_args" = "source=$work/odd,,share name,sandbox=namespace,no_xattr,no_flock,no_posix_lock" ]; then
        ok "libvirt passed -o 'source=...odd,,share name,sandbox=namespace,no_xattr,no_flock,no_posix_lock'"
    else
        bad "libvirt's -o list for a comma path with everything off" "argv: $(tr '\0' ' ' < "/proc/$daemon_pid/cmdline" 2>&1)"
    fi
    wait_shut_off
    if [ "$state" = "shut off" ] && grep -q 'VFSVM-GUEST-EXIT status=0' "$console3" \
        && [ "$(cat "$odd/from-guest.txt" 2>/dev/null)" = "odd share $token" ]; then
        ok "a share whose path has a comma and a blank: the guest read the host's file, the host sees the guest's"
    else
        bad "a share whose path has a comma and a blank" "state '$state'; $(grep -E 'VFSVM-GUEST-EXIT|vfsvm-init:.*fail|XATTR' "$console3" 2>/dev/null | tr -d '\r' | tr '\n' ' ')"
    fi
    if grep -q 'XATTR-REFUSED: .*not supported' "$console3" && [ -z "$(getfattr --absolute-names -d "$odd/from-guest.txt" 2>/dev/null)" ]; then
        ok "xattr='off' (no_xattr): the guest's setxattr is refused ($(grep -o 'XATTR-REFUSED: .*' "$console3" | tr -d '\r' | sed 's/XATTR-REFUSED: //'))"
    else
        bad "xattr='off' (no_xattr): the guest's setxattr is refused" "$(grep -E 'XATTR' "$console3" 2>/dev/null | tr -d '\r')"
    fi
    if grep -q "vfsvm serve: sharing $odd (namespace sandbox)" "$daemon_log" 2>/dev/null; then
        ok "daemon log: vfsvm served the comma path in its namespace sandbox"
    else
        bad "daemon log: vfsvm served the comma path in its namespace sandbox" "$(tail -3 "$daemon_log" 2>&1 | tr '\n' ' ')"
    fi
    virsh_ undefine "$domain" >/dev/null 2>&1
else
    bad "define + start a domain with the other options" "$(echo "$out" | tr '\n' ' ')"
    tail -5 "$daemon_log" 2>/dev/null
fi

# --- <cache mode='none'/>, the only other mode libvirt 9.0's schema takes,
# reaches the daemon as cache=none (virtiofsd's spelling of "never")
console4=$work/console-cache-none.log
fill_domain 'grep -q "hello from the host" /mnt/host.txt' "$console4" "$work/domain-cache-none.xml"
sed -i -e "s|<cache mode='always'/>|<cache mode='none'/>|" "$work/domain-cache-none.xml"
: > "$daemon_log"
if define_start "$work/domain-cache-none.xml"; then
    wait_shut_off
    if [ "$state" = "shut off" ] && grep -q 'VFSVM-GUEST-EXIT status=0' "$console4"; then
        ok "<cache mode='none'/> (cache=none): the daemon starts and the guest reads the share"
    else
        bad "<cache mode='none'/> (cache=none): the guest reads the share" "state '$state'; $(grep -E 'VFSVM-GUEST-EXIT' "$console4" 2>/dev/null | tr -d '\r')"
    fi
else
    bad "<cache mode='none'/>: libvirt passes cache=none and the daemon must accept it" \
        "virsh: $(echo "$out" | grep -o "Connection refused\|error: [^:]*" | tail -1); daemon said: $(grep -v '^ *$' "$daemon_log" 2>/dev/null | head -2 | tr '\n' ' ')"
fi
virsh_ undefine "$domain" >/dev/null 2>&1

# --- 5. vfsvm libvirt-hook (Configs/libvirt-hook-qemu as the QEMU hook):
# a <filesystem> with <source socket> and the share in vfsvm's metadata;
# the hook starts vfsvm serve at prepare begin, QEMU connects, the guest
# reads and writes the share, and after shut off (release end) the daemon,
# its socket and its pid file are gone. The hook's argv and stdin are kept
# in $work/hook-calls.log and $work/hook-stdin-*.xml.
mkdir -p "$work/hook-share" "$work/hook"
printf 'hello from the host %s\n' "$token" > "$work/hook-share/host.txt"
console5=$work/console-hook.log
fill_domain "$(cat <<EOF
set -e
[ "\$(cat /mnt/host.txt)" = "hello from the host $token" ]
echo "through the hook $token" > /mnt/from-guest.txt
sync
EOF
)" "$console5" "$work/domain-hook.xml" "$work/hook-share"
sock=$work/hook/fs.sock
sed -i -e "/<binary /,/<\/binary>/d" -e "s|<source dir='$work/hook-share'/>|<source socket='$sock'/>|" \
    -e "s|<name>$domain</name>|<name>$domain</name><metadata><vfsvm:shares xmlns:vfsvm='urn:x-vfsvm:libvirt-hook:1'><vfsvm:share socket='$sock' dir='$work/hook-share' cache='auto'/></vfsvm:shares></metadata>|" \
    "$work/domain-hook.xml"
if ! grep -q "<source socket='$sock'/>" "$work/domain-hook.xml" || grep -q "<binary" "$work/domain-hook.xml"; then
    bad "hook domain XML made from Configs/vfsvm-domain.xml" "see $work/domain-hook.xml"
elif define_start "$work/domain-hook.xml"; then
    hook_pid=$(cat "$sock.vfsvm.pid" 2>/dev/null)
    if [ -n "$hook_pid" ] && alive "$hook_pid" && tr '\0' ' ' < "/proc/$hook_pid/cmdline" | grep -q "serve --socket-path $sock --shared-dir $work/hook-share --cache auto"; then
        ok "prepare begin: the hook started vfsvm serve on the <source socket> (pid $hook_pid)"
    else
        bad "prepare begin: the hook started vfsvm serve" "pid '${hook_pid}'; calls: $(tr '\n' ';' < "$work/hook-calls.log" 2>/dev/null)"
    fi
    wait_shut_off
    if [ "$state" = "shut off" ] && grep -q 'VFSVM-GUEST-EXIT status=0' "$console5" \
        && [ "$(cat "$work/hook-share/from-guest.txt" 2>/dev/null)" = "through the hook $token" ]; then
        ok "a libvirt guest read and wrote a share served by the hook's vfsvm"
    else
        bad "a libvirt guest uses the hook's share" "state '$state'; $(grep -E 'VFSVM-GUEST-EXIT|vfsvm-init:' "$console5" 2>/dev/null | tr -d '\r' | tail -3 | tr '\n' ' ')"
    fi
    for _ in $(seq 100); do [ -e "$sock.vfsvm.pid" ] || break; sleep 0.1; done
    gone=yes
    if [ -n "$hook_pid" ] && alive "$hook_pid" && [ "$(awk '{print $3}' "/proc/$hook_pid/stat" 2>/dev/null)" != Z ]; then gone=no; fi
    if [ $gone = yes ] && [ ! -e "$sock" ] && [ ! -e "$sock.vfsvm.pid" ] && grep -q "release end" "$work/hook-calls.log"; then
        ok "release end: the hook's daemon, socket and pid file are gone"
    else
        bad "release end stops the hook's daemon" "daemon gone: $gone; $(ls "$work/hook"); calls: $(tr '\n' ';' < "$work/hook-calls.log")"
    fi
    echo "libvirt-test: libvirt called the hook as: $(tr '\n' ';' < "$work/hook-calls.log")"
    # what libvirt writes on the hook's stdin at prepare begin (the last one: this domain's)
    echo "libvirt-test: hook stdin at prepare begin ($(wc -c < "$work/hook-stdin-prepare-begin.xml") bytes), first lines:"
    head -6 "$work/hook-stdin-prepare-begin.xml" | sed 's/^/libvirt-test:   /'
    virsh_ undefine "$domain" >/dev/null 2>&1
else
    bad "define + start a domain whose share the hook serves" "$(echo "$out" | tr '\n' ' '); calls: $(tr '\n' ';' < "$work/hook-calls.log" 2>/dev/null); log: $(tail -3 "$work"/log/qemu/*-vfsvm.log 2>/dev/null | tr '\n' ' ')"
fi
exit 0
