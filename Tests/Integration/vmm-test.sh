#!/bin/bash
# `vfsvm run` end to end under /dev/kvm with the freestanding guests of
# Tests/Guests (built into GUESTS): exit statuses (debug-exit, power-off,
# reset, triple fault, signals, unhandled exits), console output and
# input, and the errors a user sees before anything starts.
#
#   vmm-test.sh PATH-TO-vfsvm GUESTS-DIR
set -u
VFSVM=$(realpath "${1:?usage: vmm-test.sh PATH-TO-vfsvm GUESTS-DIR}")
GUESTS=$(realpath "${2:?usage: vmm-test.sh PATH-TO-vfsvm GUESTS-DIR}")
. "$(dirname "$0")/check.sh"

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
    echo "vmm-test: cannot run here: needs read-write /dev/kvm ($(ls -l /dev/kvm 2>&1))"
    echo "vmm-test: 0 passed, 1 failed"
    exit 1
fi

top=$(mktemp -d /tmp/vfsvm-vmm.XXXXXX)
trap 'rm -rf "$top"' EXIT
out=$top/out err=$top/err

# run EXPECTED-STATUS NAME ARGS... : runs vfsvm run with stdin from
# $top/in (empty unless a test wrote it), 60 s at most.
: >"$top/in"
run() {
    local want=$1 name=$2
    shift 2
    timeout 60 "$VFSVM" run --accel kvm "$@" <"$top/in" >"$out" 2>"$err"
    local got=$?
    if [ "$got" -eq "$want" ]; then ok "$name (exit $got)"; else bad "$name" "exit $got, expected $want; stderr: $(head -c 300 "$err")"; fi
}
has() { # has FILE TEXT NAME
    if grep -qF -- "$2" "$1"; then ok "$3"; else bad "$3" "no '$2' in: $(head -c 300 "$1")"; fi
}

hello=$GUESTS/hello.elf events=$GUESTS/events.elf

run 67 "debug-exit 0x21 gives (0x21 << 1) | 1" --accel kvm --memory 128M "$hello"
has "$out" "hello from the PVH guest" "COM1 output reaches stdout"
run 11 "a status chosen on the command line (exit=5)" --memory 128M --cmdline "exit=5 x=y" "$hello"
has "$out" "cmdline: exit=5 x=y" "the command line reaches the guest through hvm_start_info"
run 67 "--kernel with memory as G" --memory 1G --kernel "$hello"
run 0 "ACPI S5 through PM1a_CNT is power-off" --memory 64M --cmdline do=poweroff "$events"
run 0 "i8042 reset ends the VM as a reboot" --memory 64M --cmdline do=reset "$events"
run 0 "a triple fault ends the VM as a reboot" --memory 64M --cmdline do=triple "$events"

printf 'hello\n' >"$top/in"
run 13 "stdin (not a terminal) reaches COM1 as is: 6 bytes + 1" --memory 64M --cmdline do=echo "$events"
has "$out" "HELLO" "the guest's echo of stdin"
: >"$top/in"

# An instruction the host's KVM cannot run: on this software KVM xsave
# ends the guest with KVM_EXIT_INTERNAL_ERROR; on hardware KVM it runs and
# the guest exits 0x55 (then this case says so instead of passing).
timeout 60 "$VFSVM" run --accel kvm --memory 64M --cmdline do=xsave "$events" </dev/null >"$out" 2>"$err"
got=$?
if [ $got -eq 171 ]; then
    bad "unhandled exit line" "xsave ran natively here (hardware KVM?): this case needs an instruction KVM cannot run"
elif [ $got -ne 0 ] && [ "$(wc -l <"$err")" -eq 1 ] && grep -q "unhandled KVM_EXIT_INTERNAL_ERROR.*at RIP 0x[0-9a-f]*, instruction bytes 0f ae" "$err"; then
    ok "an unhandled exit ends the VM with one line naming the exit, RIP and the instruction bytes (exit $got)"
else
    bad "unhandled exit line" "exit $got, stderr: $(cat "$err")"
fi

timeout 60 "$VFSVM" run --accel kvm --memory 64M --cmdline do=spin "$events" </dev/null >"$out" 2>"$err" &
pid=$!
for _ in $(seq 1 100); do grep -q "events guest: spin" "$out" && break; sleep 0.1; done
# The running VMM confines itself before the first KVM_RUN (RunSandbox.swift):
# every thread filtered (Seccomp 2), no_new_privs, no capability left
# (no share needs one). $pid is timeout(1); vfsvm is its child.
vmm=$(pgrep -P $pid | head -1)
seccomp=$(cat /proc/$vmm/task/*/status 2>/dev/null | sed -n 's/^Seccomp:[[:space:]]*//p' | sort -u | tr '\n' ' ')
nnp=$(cat /proc/$vmm/task/*/status 2>/dev/null | sed -n 's/^NoNewPrivs:[[:space:]]*//p' | sort -u | tr '\n' ' ')
capeff=$(cat /proc/$vmm/task/*/status 2>/dev/null | sed -n 's/^CapEff:[[:space:]]*//p' | sort -u | tr '\n' ' ')
if [ "$seccomp" = "2 " ] && [ "$nnp" = "1 " ] && [ "$capeff" = "0000000000000000 " ]; then
    ok "the running VMM: seccomp filter, no_new_privs and no capabilities on every thread"
else
    bad "the running VMM is confined" "pid ${vmm:-none}: Seccomp: $seccomp NoNewPrivs: $nnp CapEff: $capeff"
fi
kill -TERM $pid
wait $pid
got=$?
if [ $got -eq 143 ]; then ok "SIGTERM stops a running guest (exit 143)"; else bad "SIGTERM stops a running guest" "exit $got"; fi
if ! grep -q "seccomp: system call" "$err"; then ok "no system call was refused on the way out"; else bad "a system call was refused" "$(cat "$err")"; fi

# -d names what was applied; --seccomp none leaves the filter out.
run 67 "-d: the guest runs under the filter" -d --memory 64M "$hello"
has "$err" "vfsvm: sandbox: seccomp filter of" "-d logs the seccomp filter, no_new_privs and the capabilities kept"
run 67 "--seccomp none" -d --seccomp none --memory 64M "$hello"
has "$err" "vfsvm: sandbox: no seccomp filter (--seccomp none)" "--seccomp none says so under -d"

# `vfsvm run ... | head`: the guest floods COM1, the reader goes away; the
# guest is stopped and vfsvm exits 141 (VfsvmSandboxTests/RunSandboxTests
# checks that this is an exit, not a death by SIGPIPE, and the terminal).
timeout 60 "$VFSVM" run --accel kvm --memory 64M --cmdline do=flood "$events" </dev/null 2>"$err" | head -c 100 >"$out"
got=${PIPESTATUS[0]}
if [ "$got" -eq 141 ] && grep -q "events guest: flood line" "$out"; then
    ok "a closed stdout stops the guest (exit 141)"
else
    bad "a closed stdout stops the guest" "exit $got, stderr: $(head -c 300 "$err")"
fi

# On a terminal: raw mode, Ctrl-A h and x, the terminal restored.
here=$(cd "$(dirname "$0")" && pwd)
timeout 120 python3 "$here/pty-console.py" "$VFSVM" --accel kvm --memory 64M --cmdline do=spin "$events" >"$top/pty" 2>&1
while read -r line; do
    case $line in PASS:*) ok "console: ${line#PASS: }" ;; FAIL:*) bad "console: ${line#FAIL: }" ;; esac
done <"$top/pty"
[ "$(grep -c -e '^PASS:' -e '^FAIL:' "$top/pty")" -eq 7 ] || bad "console checks did not all run" "$(tail -5 "$top/pty")"

# virtio-fs over virtio-mmio: the driver guest runs FUSE against a fresh
# share with each ring layout; the host checks what it wrote and removed,
# and -d shows no exit for a queue kick (ioeventfd) or completion (irqfd).
virtiofs=$GUESTS/virtiofs.elf
for ring in split packed; do
    share=$top/share-mmio-$ring
    mkdir -p "$share"
    printf 'hello from the host over virtio-fs\n' >"$share/hello.txt"
    run 33 "virtio-fs over virtio-mmio, $ring ring: the guest's FUSE workload" \
        -d --memory 128M --transport mmio --share "$share:myfs" --cmdline "transport=mmio ring=$ring" "$virtiofs"
    has "$out" "virtio-fs tag: myfs, request queues: 1, transport: virtio-mmio, ring: $ring" "mmio/$ring: tag, transport and ring as negotiated"
    has "$out" "read hello.txt: hello from the host over virtio-fs" "mmio/$ring: READ brought the host file's bytes"
    if [ "$(cat "$share/from-guest.txt" 2>/dev/null)" = "written by the guest over virtio-mmio with the $ring ring" ]; then
        ok "mmio/$ring: the file the guest created and wrote is on the host"
    else
        bad "mmio/$ring: the file the guest created and wrote is on the host" "$(ls -la "$share")"
    fi
    if [ ! -e "$share/doomed.txt" ]; then ok "mmio/$ring: the file the guest unlinked is gone"; else bad "mmio/$ring: unlinked file still there"; fi
    if grep -q "exits to userspace:" "$err" && ! grep -q "QueueNotify" "$err"; then
        ok "mmio/$ring: no queue kick exited to userspace ($(grep -o 'virtio-mmio 0 [a-zA-Z]* [0-9]*' "$err" | tr '\n' ' '))"
    else
        bad "mmio/$ring: kicks exited to userspace" "$(grep exits "$err")"
    fi
    has "$out" "DSDT: virtio-mmio at 0xd0000000, GSI 5" "mmio/$ring: the guest found the device through RSDP, XSDT, FADT and the DSDT's LNRO0005 _CRS"
done
# virtio-fs over virtio-pci (slot 1, BAR0 above RAM): MSI-X vectors as
# GSI routes + irqfds, or INTx (msix=off) as a level irqfd with resample
# on the _PRT's GSI; -d shows no exit at a notify address (ioeventfd).
for c in split/msix packed/msix split/intx packed/intx-level; do
    ring=${c%/*} irq=${c#*/}
    share=$top/share-pci-$ring-$irq
    mkdir -p "$share"
    printf 'hello from the host over virtio-fs\n' >"$share/hello.txt"
    extra=""
    [ "$irq" = intx ] && extra=" msix=off"
    # intx-level: the guest programs the pin level-triggered, active low,
    # as Linux does for a _PRT entry; the resample fd must drop the line.
    [ "$irq" = intx-level ] && extra=" msix=off intx=level"
    run 33 "virtio-fs over virtio-pci, $ring ring, $irq: the guest's FUSE workload" \
        -d --memory 128M --transport pci --share "$share:myfs" --cmdline "transport=pci ring=$ring$extra" "$virtiofs"
    if [ "$irq" = msix ]; then want="MSI-X"; else want="GSI"; fi
    has "$out" "virtio-fs tag: myfs, request queues: 1, transport: virtio-pci, ring: $ring, $want" "pci/$ring/$irq: tag, transport, ring and interrupt kind"
    has "$out" "virtio-pci: function at 00:0x1.0" "pci/$ring/$irq: the function is at slot 1"
    has "$out" "read hello.txt: hello from the host over virtio-fs" "pci/$ring/$irq: READ brought the host file's bytes"
    if [ "$(cat "$share/from-guest.txt" 2>/dev/null)" = "written by the guest over virtio-pci with the $ring ring" ]; then
        ok "pci/$ring/$irq: the file the guest created and wrote is on the host"
    else
        bad "pci/$ring/$irq: the file the guest created and wrote is on the host" "$(ls -la "$share"; cat "$share/from-guest.txt" 2>&1)"
    fi
    if [ ! -e "$share/doomed.txt" ]; then ok "pci/$ring/$irq: the file the guest unlinked is gone"; else bad "pci/$ring/$irq: unlinked file still there"; fi
    interrupts=$(grep -o 'kicks, [0-9]* interrupts' "$out" | grep -o '[0-9][0-9]*' | head -1)
    requests=$(grep -o 'guest: [0-9]* FUSE requests' "$out" | grep -o '[0-9][0-9]*' | head -1)
    # A line left asserted would storm (thousands); a request may see two
    # (a completion landing after the ISR read re-asserts the line).
    if [ "${interrupts:-0}" -ge 1 ] && [ "${interrupts:-0}" -le $((4 * ${requests:-0})) ]; then
        ok "pci/$ring/$irq: $interrupts interrupts for ${requests:-?} requests"
    else
        bad "pci/$ring/$irq: interrupts per request" "$(grep 'FUSE requests' "$out")"
    fi
    # -d names BAR0's regions: with MSI-X a completion reads nothing (no
    # ISR exit at all); INTx reads the ISR once per interrupt.
    isr_ok=1
    if [ "$irq" = msix ]; then grep -q "BAR0 ISR" "$err" && isr_ok=0; else grep -q "BAR0 ISR" "$err" || isr_ok=0; fi
    if grep -q "exits to userspace:.*virtio-pci 0 BAR0 common" "$err" && ! grep -q "BAR0 notify" "$err" && [ $isr_ok -eq 1 ] && [ "${interrupts:-0}" -ge 1 ]; then
        ok "pci/$ring/$irq: $interrupts interrupts, no kick exited to userspace, ISR read only under INTx ($(grep -o 'virtio-pci 0 BAR0 [a-zA-Z-]* [0-9]*' "$err" | tr '\n' ' '))"
    else
        bad "pci/$ring/$irq: kicks exited to userspace, wrong ISR exits or no interrupts" "$(grep exits "$err"; grep interrupts "$out")"
    fi
done

# Several shares are several devices: the guest picks the one tagged "second".
first=$top/share-first second=$top/share-second
mkdir -p "$first" "$second"
printf 'hello from the host over virtio-fs\n' | tee "$first/hello.txt" >"$second/hello.txt"
run 33 "two shares: the guest works on the device tagged 'second'" \
    --memory 128M --share "$first:first" --share "$second:second" --cmdline "tag=second" "$virtiofs"
if [ -f "$second/from-guest.txt" ] && [ ! -e "$first/from-guest.txt" ]; then
    ok "two shares: the guest's file is in the second share only"
else
    bad "two shares: the guest's file is in the second share only" "$(ls "$first" "$second")"
fi

# MSI-X masking end to end: a completion with the vector masked sends
# nothing and sets the pending bit; the unmask delivers it through KVM.
share=$top/share-pci-msixmask
mkdir -p "$share"
printf 'hello from the host over virtio-fs\n' >"$share/hello.txt"
run 33 "virtio-pci MSI-X masking: the FUSE workload, then a request under a masked vector" \
    --memory 128M --transport pci --share "$share:myfs" --cmdline "transport=pci msixmask=1" "$virtiofs"
has "$out" "ok: msixmask: no interrupt while the vector is masked" "pci/msixmask: no interrupt while masked"
has "$out" "ok: msixmask: the PBA shows vector 1 pending" "pci/msixmask: the pending bit is set"
has "$out" "ok: msixmask: unmasking delivered the pending interrupt" "pci/msixmask: the unmask delivers it"
has "$out" "ok: msixmask: the pending bit cleared" "pci/msixmask: the pending bit clears"

# The guest moves BAR0 (decoding off, new address, decoding on) before
# using it: the board remaps it and moves the notify ioeventfds along.
share=$top/share-pci-movebar
mkdir -p "$share"
printf 'hello from the host over virtio-fs\n' >"$share/hello.txt"
run 33 "virtio-pci with BAR0 moved by the guest: the FUSE workload" \
    -d --memory 128M --transport pci --share "$share:myfs" --cmdline "transport=pci movebar=1" "$virtiofs"
has "$out" "virtio-pci: BAR0 moved from 0x100000000 to 0x100100000" "pci/movebar: the guest moved BAR0 by 1 MiB"
has "$out" "virtio-pci: common config at 0x100100000" "pci/movebar: the capabilities point into the moved BAR"
if grep -q "BAR0 common" "$err" && ! grep -q "BAR0 notify" "$err" && [ -f "$share/from-guest.txt" ]; then
    ok "pci/movebar: the moved BAR serves, its kicks still never exit ($(grep -o 'virtio-pci 0 BAR0 [a-zA-Z-]* [0-9]*' "$err" | tr '\n' ' '))"
else
    bad "pci/movebar: the moved BAR serves with ioeventfds" "$(grep exits "$err"; ls "$share")"
fi

# The same over virtio-pci: two functions (slots 1 and 2), each with its
# own BAR0, MSI-X vectors and INTx GSI.
rm -f "$first/from-guest.txt" "$second/from-guest.txt"
run 33 "two shares over virtio-pci: the guest works on the function tagged 'second'" \
    --memory 128M --transport pci --share "$first:first" --share "$second:second" --cmdline "transport=pci tag=second" "$virtiofs"
has "$out" "virtio-pci: function at 00:0x2.0" "two pci shares: the second function is at slot 2"
if [ -f "$second/from-guest.txt" ] && [ ! -e "$first/from-guest.txt" ]; then
    ok "two pci shares: the guest's file is in the second share only"
else
    bad "two pci shares: the guest's file is in the second share only" "$(ls "$first" "$second")"
fi

share=$top/share-mmio-split
run 253 "--ring split: a driver that wants packed finds no RING_PACKED" --memory 128M --ring split --share "$share:myfs" --cmdline "ring=packed" "$virtiofs"
has "$out" "does not offer RING_PACKED" "--ring split offers only the split ring"
run 253 "--ring packed: a split-only driver cannot start the device" --memory 128M --ring packed --share "$share:myfs" --cmdline "ring=split" "$virtiofs"
has "$out" "device needs reset after DRIVER_OK" "--ring packed: NEEDS_RESET for a split-only driver"

# A hostile driver: garbage in every register at every width, looping and
# out-of-range descriptors; the VMM must keep serving and exit cleanly.
run 33 "a hostile driver (garbage registers, looping and out-of-range chains) does not stop the VMM" \
    -d --memory 128M --share "$share:myfs" "$GUESTS/hostile.elf"
has "$out" "after a reset the device serves FUSE INIT and LOOKUP" "after the abuse a reset device serves FUSE again"
has "$err" "chain longer than 16 descriptors (or looping)" "the looping chain is refused with a log line"
has "$err" "is not backed by guest memory" "the out-of-range descriptor is refused with a log line"

run 33 "a hostile driver over virtio-pci (garbage config space and BAR0, bad chains) does not stop the VMM" \
    -d --memory 128M --transport pci --share "$share:myfs" --cmdline "transport=pci" "$GUESTS/hostile.elf"
has "$out" "garbage configuration and BAR0 writes" "pci: the garbage phase ran"
has "$out" "after a reset the device serves FUSE INIT and LOOKUP" "pci: after the abuse a reset device serves FUSE again"
has "$err" "chain longer than 16 descriptors (or looping)" "pci: the looping chain is refused with a log line"

# The virtio-fs DAX window (dax=, virtio-pci BAR2 in a KVM memory slot):
# the guest finds shared-memory region 0, maps host file pages into it
# with FUSE_SETUPMAPPING, reads and writes them with plain loads and
# stores, and sends the hostile mappings; each outcome is a line here.
# No --transport: a dax= share chooses pci.
dax_share() { # DIR: dax.txt (2 pages, page 1 starts with $token), daxw.txt (1 page), dir/
    mkdir -p "$1/dir"
    head -c 4096 /dev/zero | tr '\0' a >"$1/dax.txt"
    { printf 'dax token %s from the host\n' "$token"; head -c 4096 /dev/zero | tr '\0' b; } | head -c 4096 >>"$1/dax.txt"
    head -c 4096 /dev/zero | tr '\0' . >"$1/daxw.txt"
    { printf 'dax small %s\n' "$token"; head -c 5000 /dev/zero | tr '\0' c; } | head -c 4996 >"$1/daxsmall.txt"
    printf 'end\n' >>"$1/daxsmall.txt"
}
token=$$-$RANDOM
share=$top/share-dax
dax_share "$share"
run 33 "DAX: the guest's window workload" --memory 128M --share "$share:myfs:dax=2M" --cmdline "transport=pci dax=rw" "$virtiofs"
has "$out" "dax init: map_alignment 12" "DAX: INIT negotiated FUSE_MAP_ALIGNMENT, map_alignment 12 (4 KiB pages)"
has "$out" "dax window: 0x200000 bytes at 0x" "DAX: the shared-memory capability names a 2 MiB window in BAR2"
has "$out" "dax setup read: errno 0" "DAX: SETUPMAPPING of a read-only handle's page"
has "$out" "dax read through the window: dax token $token from the host" "DAX: the host file's page 1, read by the guest straight from the window"
has "$out" "dax removemapping with a count past the request: errno 22" "DAX: REMOVEMAPPING whose count overruns the request is EINVAL"
has "$out" "dax still mapped after the refused removal: dax token $token" "DAX: the refused REMOVEMAPPING removed nothing"
has "$out" "dax setup write: errno 0" "DAX: SETUPMAPPING with FLAG_WRITE of a read-write handle"
if [ "$(head -c 31 "$share/daxw.txt")" = "written through the DAX window" ] && [ "$(wc -c <"$share/daxw.txt")" -eq 4096 ]; then
    ok "DAX: the guest's stores into the window are in the host file"
else
    bad "DAX: the guest's stores into the window are in the host file" "$(head -c 60 "$share/daxw.txt" | od -c | head -3)"
fi
has "$out" "dax removemapping: errno 0" "DAX: REMOVEMAPPING"
has "$out" "dax after removemapping the window reads 0" "DAX: a removed range reads zero (a zero page, no fault)"
# The kernel upgrades a read mapping by mapping the same range again, so
# an overlap replaces what was there instead of being refused.
has "$out" "dax setup overlapping a mapping: errno 0" "DAX: an overlapping SETUPMAPPING replaces the old mapping"
has "$out" "dax the overlapping mapping replaced the old one: written through the DAX window" "DAX: the window shows the new mapping's file"
has "$out" "dax setup past the window: errno 22" "DAX: a mapping running past the window is EINVAL"
has "$out" "dax setup past EOF: errno 22" "DAX: a mapping past the file's end is EINVAL"
has "$out" "dax setup on a directory: errno 19" "DAX: a mapping of a directory handle is ENODEV"
has "$out" "dax setup write on a read-only handle: errno 13" "DAX: FLAG_WRITE on a read-only handle is EACCES"
has "$out" "dax truncate to one page: errno 0" "DAX: SETATTR size of a mapped file"
has "$out" "dax after truncate the page past the end reads 0, the first page a" "DAX: after the truncate the page past the end is a zero page (no SIGBUS), the first still the file's"
if [ "$(wc -c <"$share/dax.txt")" -eq 4096 ]; then ok "DAX: the host file was truncated to one page"; else bad "DAX: truncate" "$(wc -c <"$share/dax.txt") bytes"; fi
# A Linux guest maps a file smaller than 2 MiB as one 2 MiB range, past EOF.
has "$out" "dax setup a 5000-byte file as one 2 MiB range: errno 0" "DAX: a 2 MiB range of a 5,000-byte file (past EOF, as Linux sends) is mapped"
has "$out" "dax small file through the window: dax small $token" "DAX: the small file's first line, read through the window"
has "$out" "dax small file bytes 4996-4998: end, past EOF (5000, 8192, 2 MiB - 1): 0 0 0" "DAX: the small file's last bytes, then zeros past EOF (no SIGBUS)"
has "$out" "dax extending FUSE_WRITE at 1 MiB: errno 0" "DAX: an extending FUSE_WRITE of the mapped small file"
has "$out" "dax the existing range after the extending write: grown through FUSE_WRITE" "DAX: the existing range shows the bytes the write added past the old EOF"
if [ "$(wc -c <"$share/daxsmall.txt")" -eq $((0x100000 + 25)) ]; then ok "DAX: the host file grew to 1 MiB + 25 bytes"; else bad "DAX: the small file's size" "$(wc -c <"$share/daxsmall.txt") bytes"; fi
share=$top/share-dax-ro
dax_share "$share"
run 33 "DAX on a read-only share" --memory 128M --transport pci --share "$share:myfs:ro:dax=2M" --cmdline "transport=pci dax=ro" "$virtiofs"
has "$out" "dax read through the window: dax token $token from the host" "DAX ro: reading through the window works on a read-only share"
has "$out" "dax setup write on a read-only share: errno 30" "DAX ro: FLAG_WRITE on a read-only share is EROFS"
# virtio-mmio: the window is a KVM slot above RAM, named by the device's
# SHM_SEL/SHM_LEN/SHM_BASE registers (virtio 1.2, 4.2.2); the same workload.
share=$top/share-dax-mmio
dax_share "$share"
run 33 "DAX over virtio-mmio" --memory 128M --transport mmio --share "$share:myfs:dax=2M" --cmdline "transport=mmio dax=rw" "$virtiofs"
has "$out" "dax window: 0x200000 bytes at 0x" "DAX mmio: SHM_LEN/SHM_BASE of region 0 name a 2 MiB window"
has "$out" "dax read through the window: dax token $token from the host" "DAX mmio: the host file's page read through the window"
has "$out" "dax after truncate the page past the end reads 0, the first page a" "DAX mmio: a truncated mapping's page past the end is a zero page"
has "$out" "dax the existing range after the extending write: grown through FUSE_WRITE" "DAX mmio: the small file's 2 MiB range shows what an extending FUSE_WRITE added"
if [ "$(head -c 31 "$share/daxw.txt")" = "written through the DAX window" ]; then
    ok "DAX mmio: the guest's stores into the window are in the host file"
else
    bad "DAX mmio: the guest's stores into the window are in the host file" "$(head -c 60 "$share/daxw.txt" | od -c | head -3)"
fi
# A host process shrinks a mapped file behind vfsvm's back, then the guest
# loads from the vanished page: vfsvm never touches the window itself, so
# it must not die of SIGBUS (exit 135); the guest reads zeros (as on this
# machine's software KVM) or the VM ends with one line.
share=$top/share-dax-host
dax_share "$share"
timeout 60 "$VFSVM" run --accel kvm --memory 128M --share "$share:myfs:dax=2M" --cmdline "transport=pci dax=hosttrunc" "$virtiofs" </dev/null >"$out" 2>"$err" &
pid=$!
for _ in $(seq 1 200); do grep -q "dax waiting for the host" "$out" 2>/dev/null && break; sleep 0.05; done
truncate -s 4096 "$share/dax.txt"
wait $pid
got=$?
if [ $got -eq 33 ] && grep -q "dax the vanished page reads 0" "$out"; then
    ok "DAX: a file shrunk by a host process while mapped: the guest reads zeros, no SIGBUS"
elif [ $got -ne 135 ] && [ $got -ne 33 ] && [ "$(wc -l <"$err")" -le 2 ] && grep -q "dax reading the vanished page" "$out"; then
    ok "DAX: a file shrunk by a host process while mapped ends the VM with one line, no SIGBUS (exit $got: $(head -1 "$err"))"
else
    bad "DAX: a file shrunk by a host process while mapped" "exit $got, stderr: $(head -c 300 "$err"), guest: $(tail -2 "$out")"
fi
# A share without dax=: no MAP_ALIGNMENT, so a driver does not use DAX.
share=$top/share-nodax
dax_share "$share"
timeout 60 "$VFSVM" run --accel kvm --memory 128M --transport pci --share "$share:myfs" --cmdline "transport=pci dax=rw" "$virtiofs" </dev/null >"$out" 2>"$err"
got=$?
if [ $got -ne 33 ] && grep -q "dax init: map_alignment 0" "$out" && grep -q "no shared-memory capability" "$out"; then
    ok "DAX: without dax= INIT offers no MAP_ALIGNMENT and the function has no window (exit $got)"
else
    bad "DAX: a share without dax=" "exit $got: $(tail -3 "$out")"
fi

# Errors before anything starts: one line, exit 64 or 66, no guest output.
check_refusal() { # WANT NAME TEXT ARGS...
    local want=$1 name=$2 text=$3
    shift 3
    timeout 20 "$VFSVM" run "$@" </dev/null >"$out" 2>"$err"
    local got=$?
    if [ $got -eq "$want" ] && [ ! -s "$out" ] && grep -qF -- "$text" "$err"; then
        ok "$name (exit $got: $(head -1 "$err"))"
    else
        bad "$name" "exit $got, stdout $(wc -c <"$out") bytes, stderr: $(head -c 300 "$err")"
    fi
}
check_refusal 66 "a missing kernel" "cannot read $top/none" --memory 64M "$top/none"
check_refusal 66 "a share that is not a directory" "not a directory" --share "$hello:tag" --memory 64M "$hello"
check_refusal 64 "two shares with one tag" "tag 't'" --share "$top:t" --share "/tmp:t" "$hello"
check_refusal 64 "--memory 1M is too small" "too small" --memory 1M "$hello"
check_refusal 64 "--memory with a bad unit" "unknown unit" --memory 12Q "$hello"
check_refusal 64 "a file that is no kernel" "neither a bzImage" --memory 64M "$GUESTS/../../Package.swift"
check_refusal 64 "--cpus 0" "--cpus" --cpus 0 "$hello"
check_refusal 64 "a DAX window that is no power of two" "must be a power of two" --accel kvm --share "$top:t:dax=3M" --memory 64M "$hello"
check_refusal 64 "a DAX window past 16G" "at most 16G" --accel kvm --share "$top:t:dax=128G" --memory 64M "$hello"
check_refusal 64 "dax= under --accel tcg (QEMU 7.2 has no window)" "a DAX window needs --accel kvm" --accel tcg --share "$top:t:dax=1G" --memory 64M "$hello"

# --accel tcg: the same PVH guest under QEMU, the same exit status
if command -v qemu-system-x86_64 >/dev/null; then
    timeout 60 "$VFSVM" run --accel tcg --memory 128M "$hello" </dev/null >"$out" 2>"$err"
    got=$?
    if [ $got -eq 67 ] && grep -q "hello from the PVH guest" "$out"; then ok "--accel tcg: the PVH guest under QEMU, debug-exit 0x21 gives 67 there too"; else bad "--accel tcg boots the PVH guest" "exit $got: $(head -c 300 "$err")"; fi
else
    bad "--accel tcg boots the PVH guest" "qemu-system-x86_64 is not installed"
fi

# --accel auto (the default) times the calibration guest and says which
# path it took, why, and the figure (tcg on this software KVM).
timeout 60 "$VFSVM" run --memory 64M "$hello" </dev/null >"$out" 2>"$err"
if grep -qE '^vfsvm: --accel auto: (kvm \(the in-process VMM\)|tcg \(QEMU\)), because the 40002-instruction calibration guest took [0-9]+\.[0-9]{3} ms under KVM, (under|over) the 5 ms threshold' "$err"; then
    ok "--accel auto names the path, the reason and the figure: $(grep -o 'auto: .*' "$err" | head -1)"
else
    bad "--accel auto names the path, the reason and the figure" "stderr: $(head -c 300 "$err")"
fi

summary vmm-test
