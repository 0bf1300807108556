#!/bin/sh
# /init of the vfsvm guest initramfs (busybox sh). The vfsvm.* arguments, the
# mounts, the command and the end marker are in init-lib.sh (shared with the
# root file system's init). This script adds, from the kernel command line:
#   root=/dev/NAME [rootfstype=TYPE]  mount the block device (TYPE default
#                                     ext4) as the new root and switch_root
#                                     into its init
#   rootfstype=virtiofs root=TAG      the same with virtio-fs TAG as the root
#   ro / rw                           the new root read-only / read-write
#                                     (default read-write)
#   init=PATH                         the new root's init (default /sbin/init)
# Without root= the guest runs from the initramfs. Status 122: the root file
# system could not be mounted, or has no init.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=linux
umask 022
. /lib/vfsvm/init-lib.sh

early_mounts
parse_cmdline || finish 120

# Modules, dependencies first; a module already present (builtin) is skipped.
while read -r m; do
    [ -n "$m" ] || continue
    [ -d "/sys/module/$m" ] && continue
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done < /lib/modules/load-order

# Mounts root on /newroot, moves the early mounts into it and execs
# switch_root (which empties the initramfs); returns only through finish.
switch_to_root() {
    mkdir -p /newroot
    ropt="" how=rw
    [ "$root_ro" -eq 0 ] || { ropt="-o ro"; how=ro; }
    case $rootfstype in
        virtiofs)
            [ -n "$root" ] || { log "rootfstype=virtiofs needs root=TAG"; finish 120; }
            type=virtiofs ;;
        *)
            case $root in
                /dev/?*) ;;
                *) log "root=$root: want root=/dev/NAME, or rootfstype=virtiofs root=TAG"; finish 120 ;;
            esac
            type=${rootfstype:-ext4}
            # virtio_blk probes asynchronously: wait up to about 5 s for the node.
            i=0
            while [ ! -b "$root" ]; do
                i=$((i + 1))
                [ $i -lt 50 ] || { log "root device $root did not appear"; finish 122; }
                sleep 0.1
            done ;;
    esac
    mount_retry "$type" "$ropt" "$root" /newroot || finish 122
    if [ ! -e "/newroot$init" ] && [ ! -L "/newroot$init" ]; then
        log "the root file system ($type $root) has no $init"
        umount /newroot
        finish 122
    fi
    for d in /dev /proc /sys /run /tmp; do
        mount -o move "$d" "/newroot$d" || { log "cannot move $d into the new root"; finish 122; }
    done
    log "root $type $root ($how), switching to $init"
    exec switch_root /newroot "$init"
}
[ -z "$root" ] || switch_to_root

run_guest
