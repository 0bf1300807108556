#!/bin/sh
# /sbin/vfsvm-init (and /sbin/init) of the vfsvm Debian root file system
# (out/rootfs.img, out/rootfs/), run by Debian's dash after the initramfs
# switched into the root (root=/dev/vda, or rootfstype=virtiofs root=TAG).
# It takes the same vfsvm.* arguments and prints the same end marker as the
# initramfs (init-lib.sh), so one harness drives both. Modules are loaded by
# the initramfs before the switch; the root has none of its own.
# poweroff and cttyhack come from the busybox in /usr/lib/vfsvm/bin (Debian's
# minbase has no init system, hence no poweroff); that directory is last in
# PATH so Debian's own programs win everywhere else.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/vfsvm/bin
export HOME=/root TERM=linux
umask 022
. /lib/vfsvm/init-lib.sh
login_shell=/bin/bash   # vfsvm.shell=1: Debian's bash, with line editing

early_mounts
# nothing else would set it: minbase has no init system
[ -r /etc/hostname ] && read -r h < /etc/hostname && echo "$h" > /proc/sys/kernel/hostname
parse_cmdline || finish 120
run_guest
