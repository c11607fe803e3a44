#!/bin/sh
# /init of the test host's busybox initramfs images (build.sh). Kernel command line xenvm=:
#   dom0   load dom0's modules, mount /dev/vda (root) and /dev/vdb (the run's payload) and
#          switch_root into /payload/dom0-init.sh
#   guest  a PV test guest: load xen-blkfront and ext4, report block devices on the console when
#          they change, and serve dom0's requests through xenstore (/bin/guest-agent)
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mode=dom0
# shellcheck disable=SC2013  # the command line's words
for a in $(cat /proc/cmdline); do case $a in xenvm=*) mode=${a#xenvm=} ;; esac; done
say() { echo "XENVM[$mode t=$(cut -d' ' -f1 /proc/uptime)] $*"; }
load() {  # a module built in or already loaded is not an error
  while read -r m; do insmod "/lib/modules/$m" 2>/dev/null || say "insmod $m failed (built in?)"; done < "$1"
}
die() { say "FATAL: $*"; sleep 2; reboot -f; }

case $mode in
dom0)
  load /lib/modules/dom0.list
  i=0
  until [ -b /dev/vda ] && [ -b /dev/vdb ]; do
    i=$((i + 1)); [ $i -gt 600 ] && die "no /dev/vda and /dev/vdb after 60 s"; usleep 100000
  done
  mount -t ext4 /dev/vda /newroot || die "mount /dev/vda"
  mount -t ext4 /dev/vdb /newroot/payload || die "mount /dev/vdb"
  umount /proc /sys
  mount --move /dev /newroot/dev
  exec switch_root /newroot /payload/dom0-init.sh
  ;;
guest)
  load /lib/modules/guest.list
  mkdir -p /mnt /tmp
  say "GUEST-UP $(uname -r)"
  guest-agent &
  last=
  while :; do
    now=
    for b in /sys/block/xvd*; do
      [ -e "$b" ] && now="$now ${b##*/}:$(cat "$b/size")s:ro=$(cat "$b/ro")"
    done
    [ "$now" != "$last" ] && say "DISKS [${now# }]"
    last=$now
    sleep 1
  done
  ;;
*) die "unknown xenvm=$mode" ;;
esac
