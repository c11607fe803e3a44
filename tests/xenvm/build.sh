#!/usr/bin/env bash
# Build the real Xen test host from Debian packages (root, apt access), into
# $XEN_DISKS_CACHE/xenvm/<release>/ (default ~/.cache/xen-disks/xenvm/bookworm):
#   xen                  the hypervisor, gunzipped (QEMU's multiboot -kernel loads it)
#   vmlinuz              the release's kernel: dom0 and the PV guests
#   initrd-dom0.cpio.gz  busybox: loads dom0's modules, mounts the root and payload disks, switch_root
#   initrd-guest.cpio.gz busybox + xen-blkfront + ext4 + IDE cdrom + xenstore-read/-write/-watch: the test guest
#   vmlinuz-5.10, initrd-guest-5.10.cpio.gz   the same guest on Debian 11's 5.10 kernel
#   rootfs.ext4          dom0's root: debootstrap minbase + xen-utils, python3-pyxs, qemu-utils,
#                        qemu-system-xen (qdisk), openssh-server; attached read-only by vm.py
#   versions.txt         what was built from which package versions
# A stamp (sha256 of this script and of the files that go into the images) decides a rebuild; a
# build that stops half-way leaves no stamp. Usage: build.sh [--force]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
release=${XENVM_RELEASE:-bookworm}
case $release in
  bookworm) xen_series=4.17; old_release=bullseye ;;
  *) echo "build.sh: unknown release $release (bookworm)" >&2; exit 2 ;;
esac
out=${XEN_DISKS_CACHE:-$HOME/.cache/xen-disks}/xenvm/$release
work=$out.work
force=0
[ "${1:-}" = --force ] && force=1

stamp_inputs=("$here/build.sh" "$here/initrd-init.sh" "$here/guest-agent.sh")
want_stamp=$(cat "${stamp_inputs[@]}" | sha256sum | cut -c1-16)
outputs=(xen vmlinuz initrd-dom0.cpio.gz initrd-guest.cpio.gz vmlinuz-5.10 initrd-guest-5.10.cpio.gz rootfs.ext4)
up_to_date() {
  [ "$(cat "$out/stamp" 2>/dev/null)" = "$want_stamp" ] || return 1
  local f; for f in "${outputs[@]}"; do [ -s "$out/$f" ] || return 1; done
}
if [ "$force" = 0 ] && up_to_date; then
  echo "build.sh: $out is up to date (stamp $want_stamp)" >&2
  echo "$out"; exit 0
fi

t0=$SECONDS
log() { echo "[xenvm build $(date +%T) +$((SECONDS - t0))s] $*" >&2; }
# apt's URI of a suite in this host's sources (deb822 or one-line), e.g. apt_uri bookworm-security
apt_uri() {
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    awk -v want="$1" '
      /^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) { print u; exit } }
      /^deb / { for (i = 1; i <= NF; i++) if ($i == want) { print $(i - 1); exit } }' || true
}
mirror=${XENVM_MIRROR:-$(apt_uri "$release")}
security=${XENVM_SECURITY_MIRROR:-$(apt_uri "$release-security")}
mirror=${mirror:-http://deb.debian.org/debian}
security=${security:-http://deb.debian.org/debian-security}

# host tools
missing=()
for t in debootstrap:debootstrap depmod:kmod modprobe:kmod cpio:cpio mkfs.ext4:e2fsprogs ssh-keygen:openssh-client \
         gzip:gzip; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t##*:}")
done
if ((${#missing[@]})); then
  log "installing host tools: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$(id -u)" -eq 0 ] || { echo "build.sh: debootstrap and chroot need root" >&2; exit 1; }

root=$work/rootfs
umount_chroot() {
  local m; for m in dev/pts dev sys proc; do mountpoint -q "$root/$m" && umount -l "$root/$m"; done; return 0
}
remove_tree() {  # never rm -rf a tree that still has the host's /dev or /proc mounted in it
  umount_chroot
  if awk -v r="$1/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    echo "build.sh: something is still mounted under $1; not removing it" >&2; exit 1
  fi
  rm -rf "$1"
}
trap umount_chroot EXIT
remove_tree "$work"
mkdir -p "$work/debs" "$work/x" "$work/x510" "$out"
rm -f "$out/stamp"
quiet_apt() { grep -v -e '^W: Download is performed unsandboxed' -e '^$' || true; }
sandbox=(); [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)

# ---- packages: hypervisor, kernel, busybox (this host's apt: the release's suites)
log "apt-get download: xen-hypervisor-$xen_series-amd64, the $release kernel, busybox-static"
(cd "$work/debs" && apt-get download -qq "${sandbox[@]}" linux-image-amd64 "xen-hypervisor-$xen_series-amd64" busybox-static 2>&1 | quiet_apt)
# linux-image-amd64 only depends on the versioned image package
kpkg=$(dpkg-deb -f "$work"/debs/linux-image-amd64_*.deb Depends | sed 's/[ ,].*//')
(cd "$work/debs" && apt-get download -qq "${sandbox[@]}" "$kpkg" 2>&1 | quiet_apt)
for f in "$work"/debs/xen-hypervisor-*.deb "$work/debs/${kpkg}"_*.deb "$work"/debs/busybox-static_*.deb; do
  dpkg-deb -x "$f" "$work/x"
done
kver=$(ls "$work/x/lib/modules")
depmod -b "$work/x" "$kver"
gunzip -c "$work/x/boot/xen-$xen_series-amd64.gz" > "$work/xen"
cp "$work/x/boot/vmlinuz-$kver" "$work/vmlinuz"
xen_version=$(dpkg-deb -f "$work"/debs/xen-hypervisor-*.deb Version)

# ---- Debian 11's 5.10 kernel (a guest whose blkfront refuses to close a disk in use): a private
# apt configuration for the older suite, this host's keyring
log "apt-get download: the $old_release kernel (private apt lists)"
a=$work/apt-$old_release
mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
printf 'deb %s %s main\ndeb %s %s-security main\n' "$mirror" "$old_release" "$security" "$old_release" > "$a/sources.list"
old_apt=(-o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/dev/null
         -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" "${sandbox[@]}")
apt-get "${old_apt[@]}" update -qq 2>&1 | quiet_apt
(cd "$work/debs" && rm -f linux-image-amd64_*.deb && apt-get "${old_apt[@]}" download -qq linux-image-amd64 2>&1 | quiet_apt)
old_kpkg=$(dpkg-deb -f "$work"/debs/linux-image-amd64_*.deb Depends | sed 's/[ ,].*//')
(cd "$work/debs" && apt-get "${old_apt[@]}" download -qq "$old_kpkg" 2>&1 | quiet_apt)
dpkg-deb -x "$work/debs/${old_kpkg}"_*.deb "$work/x510"
old_kver=$(ls "$work/x510/lib/modules")
depmod -b "$work/x510" "$old_kver"
cp "$work/x510/boot/vmlinuz-$old_kver" "$work/vmlinuz-5.10"

# ---- dom0's root file system
log "debootstrap --variant=minbase $release ($mirror)"
debootstrap --variant=minbase --include=ca-certificates "$release" "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
mount -t proc proc "$root/proc"; mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"; mount --bind /dev/pts "$root/dev/pts"
# the hypervisor above comes from the security suite: the tools must come from the same
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
  "$mirror" "$release" "$mirror" "$release" "$security" "$release" > "$root/etc/apt/sources.list"
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod 0755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
dom0_packages=("xen-utils-$xen_series" xenstore-utils python3 python3-pyxs qemu-utils qemu-system-xen
               openssh-server iproute2 kmod procps util-linux e2fsprogs)
log "apt-get install in dom0's root: ${dom0_packages[*]}"
chroot "$root" /bin/sh -c "export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
  apt-get update -qq && apt-get install -y -qq --no-install-recommends ${dom0_packages[*]} && apt-get clean" \
  > "$work/apt.log" 2>&1 || { tail -n 40 "$work/apt.log" >&2; exit 1; }
rm -f "$root/usr/sbin/policy-rc.d"
# shellcheck disable=SC2016  # dpkg-query's format, not the shell's
tools_version=$(chroot "$root" dpkg-query -W -f '${Version}' "xen-utils-$xen_series")
[ "$tools_version" = "$xen_version" ] ||
  { echo "build.sh: hypervisor $xen_version but tools $tools_version: they must match" >&2; exit 1; }
# sshd: host keys made once per image; root logs in with the key each run puts on its payload disk
chroot "$root" ssh-keygen -A >/dev/null
cat > "$root/etc/ssh/sshd_config.d/xenvm.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
AcceptEnv LANG LC_*
SSHD

# ---- the guest's xenstore client (from dom0's xenstore-utils) and its libraries, found by ldd
guest_bin=$work/guest-bin
mkdir -p "$guest_bin"
cp "$root/usr/bin/xenstore" "$guest_bin/"
chroot "$root" ldd /usr/bin/xenstore | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' > "$guest_bin/libs"
umount_chroot

# ---- initramfs images
# modlist ROOT KVER MODULE...: the .ko files to insmod, dependencies first
modlist() {
  local r=$1 v=$2 m; shift 2
  for m in "$@"; do modprobe -S "$v" -d "$r" --show-depends "$m"; done |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }'
}
# make_initrd OUTPUT ROOT KVER LISTNAME:MODULES... [-- guest]
make_initrd() {
  local output=$1 r=$2 v=$3 d; shift 3
  d=$(mktemp -d "$work/initrd.XXXXXX")
  mkdir -p "$d"/{bin,dev,proc,sys,mnt,newroot,tmp,lib/modules}
  cp "$work/x/bin/busybox" "$d/bin/busybox"
  ln -s busybox "$d/bin/sh"
  install -m 0755 "$here/initrd-init.sh" "$d/init"
  local spec name f
  for spec in "$@"; do
    name=${spec%%:*}
    : > "$d/lib/modules/$name.list"
    # shellcheck disable=SC2086
    for f in $(modlist "$r" "$v" ${spec#*:}); do
      cp "$f" "$d/lib/modules/"; basename "$f" >> "$d/lib/modules/$name.list"
    done
  done
  if [ -n "${GUEST:-}" ]; then
    install -m 0755 "$here/guest-agent.sh" "$d/bin/guest-agent"
    cp "$guest_bin/xenstore" "$d/bin/xenstore"
    for f in read write watch rm ls list exists; do ln -s xenstore "$d/bin/xenstore-$f"; done
    while read -r f; do mkdir -p "$d$(dirname "$f")"; cp -L "$root$f" "$d$f"; done < "$guest_bin/libs"
  fi
  (cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) > "$output"
  rm -rf "$d"
}
log "initramfs: dom0, guest ($kver), guest ($old_kver)"
make_initrd "$work/initrd-dom0.cpio.gz" "$work/x" "$kver" \
  "dom0:xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-blkback loop virtio_pci virtio_blk virtio_net ext4"
# ata_piix + sr_mod: an HVM guest's emulated IDE cdrom (QEMU's), whose medium a media change swaps
guest_mods="guest:xen-blkfront ext4 ata_piix sr_mod"
GUEST=1 make_initrd "$work/initrd-guest.cpio.gz" "$work/x" "$kver" "$guest_mods"
GUEST=1 make_initrd "$work/initrd-guest-5.10.cpio.gz" "$work/x510" "$old_kver" "$guest_mods"

# ---- dom0's root image; vm.py mounts the per-run payload disk on /payload
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/* \
       "$root"/usr/share/locale/*
echo xenvm-dom0 > "$root/etc/hostname"
mkdir -p "$root/payload"
log "mkfs.ext4 -d: dom0's root ($(du -sh "$root" | cut -f1) of files)"
mkfs.ext4 -q -L xenvm-root -d "$root" "$work/rootfs.ext4" 2G

{
  echo "release $release"
  echo "xen-hypervisor-$xen_series-amd64 $xen_version"
  echo "xen-utils-$xen_series $tools_version"
  echo "kernel $kver"
  echo "guest-kernel-5.10 $old_kver"
  # shellcheck disable=SC2016
  chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' python3 python3-pyxs qemu-utils qemu-system-xen openssh-server
} > "$work/versions.txt"
for f in "${outputs[@]}" versions.txt; do mv "$work/$f" "$out/$f"; done
remove_tree "$work"
echo "$want_stamp" > "$out/stamp"
log "done: $(du -sh "$out" | cut -f1) in $out"
sed 's/^/  /' "$out/versions.txt" >&2
echo "$out"
