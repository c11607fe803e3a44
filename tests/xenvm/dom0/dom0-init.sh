#!/bin/sh
# PID 1 of the test dom0 (the initramfs switch_roots into it from the run's payload disk):
# mounts, the device links udev would make, the network QEMU's user mode gives (10.0.2.15, sshd
# reached through a forwarded host port), Debian's own /etc/init.d/xen (xenstored, xen-init-dom0,
# xenconsoled, the disk-backend QEMU), then "XENVM-DOM0-READY" on the serial console. vm.py
# powers the host off over SSH (/payload/poweroff.sh).
# Kernel command line: xenvm.xenstored=oxenstored|xenstored (default: Debian's choice, oxenstored).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root TERM=dumb
say() { echo "XENVM[dom0 t=$(cut -d' ' -f1 /proc/uptime)] $*"; }
fatal() { say "XENVM-DOM0-FAILED $*"; sync; echo b > /proc/sysrq-trigger; sleep 600; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
# /etc/xen/scripts/locking.sh stats /dev/stdin: without these links it spins until libxl (or
# the module) gives up on the block script
ln -sfn /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin; ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/lock /run/sshd /var/log/xen/console /var/lib/xenvm
mount -o remount,rw / || say "remount rw failed"
hostname xenvm-dom0
say "DOM0-USERSPACE $(uname -r)"

ip link set lo up
if ! { ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2; }; then
  say "network setup failed: $(ip -o link 2>&1 | tr '\n' ' ')"
fi
mkdir -p /root/.ssh && chmod 0700 /root/.ssh
install -m 0600 /payload/authorized_keys /root/.ssh/authorized_keys

xenstored=
# shellcheck disable=SC2013  # the command line's words
for a in $(cat /proc/cmdline); do
  case $a in xenvm.xenstored=*) xenstored=${a#*=} ;; esac
done
[ -n "$xenstored" ] && echo "XENSTORED=/usr/lib/xen-4.17/bin/$xenstored" >> /etc/default/xen
# xenconsoled keeps each guest's console in /var/log/xen/console/guest-<name>.log
echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> /etc/default/xen
/etc/init.d/xen start || fatal "/etc/init.d/xen start failed"
# libxl waits 60 s for a guest's QEMU to start (its environment can say longer): not enough
# under TCG on a loaded machine. Every SSH session (xl, the tests, Ansible) gets the longer wait.
echo "SetEnv LIBXL_DEVICE_MODEL_START_TIMEOUT=600" >> /etc/ssh/sshd_config.d/xenvm.conf
/usr/sbin/sshd || fatal "sshd did not start"
say "XENVM-DOM0-READY xenstored=$(cat /proc/"$(cat /run/xenstore.pid 2>/dev/null)"/comm 2>/dev/null)"
while :; do sleep 3600; done
